"""Helpers for the tests that run the ``gift-hf train`` script (in process or launched)."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
# `python RECIPE ...` / `accelerate launch RECIPE ...` run the train script as a module.
RECIPE = ["-m", "gift_hf.scripts.train"]
CPU_2PROC_CONFIG = REPO / "recipes" / "accelerate" / "cpu_2proc.yaml"
ACCELERATE = Path(sys.executable).with_name("accelerate")

# Tiny, quick settings shared by the recipe runs: 8×8 digits, ConvNet-D3, no progress bars.
QUIET = ["--use_cpu", "--disable_tqdm", "true", "--logging_steps", "1000", "--save_strategy", "no"]


def load_recipe():
    """The ``gift-hf train`` script module (``main(argv)`` returns its metrics)."""
    from gift_hf.scripts import train

    return train


def subprocess_env() -> dict[str, str]:
    """Offline, and one thread per process: the test machine has two cores shared by all."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def one_thread():
    """Run torch single-threaded (as the launched processes are), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_teacher(output_dir: Path, steps: int = 40) -> Path:
    """A real, briefly trained (hard-label CE) ConvNet-D3 teacher on digits, saved with save_pretrained.

    Batch norm rather than the default instance norm: on 8×8 inputs the third block's
    instance norm sees 2×2 maps and learns far slower, and a teacher needs to be good.
    """
    recipe = load_recipe()
    with one_thread():
        metrics = recipe.main(
            [
                "--output_dir",
                str(output_dir),
                "--loss",
                "ce",
                "--soft_label_source",
                "none",
                "--student_model_kwargs",
                '{"norm": "batchnorm"}',
                "--max_steps",
                str(steps),
                "--per_device_train_batch_size",
                "32",
                "--learning_rate",
                "3e-3",
                "--seed",
                "0",
                *QUIET,
            ]
        )
    assert metrics["eval_accuracy"] > 0.8, metrics  # a teacher worth distilling from
    return output_dir
