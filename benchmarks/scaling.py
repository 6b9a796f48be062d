#!/usr/bin/env python
"""Data-parallel scaling on this machine's CPU: step time with 1 and with 2 processes.

Runs ``gift-hf train`` (``gift_hf/scripts/train.py``) (GIFT loss, an online ConvNet-D3 teacher, ConvNet-D3
student, 8×8 digits) twice, one after the other in one invocation so that both see the
same machine load:

- ``1 process``: ``python -m gift_hf.scripts.train``;
- ``2 processes``: ``accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml``
  (gloo DDP), the same per-process batch, so every step trains on twice the images.

Each process gets ``--threads`` torch threads (default 1, so that two processes do not
oversubscribe two cores). Step time is the Trainer's ``train_runtime / max_steps`` (the
process start-up and the data loading before training are not counted). Prints the step
time, images per second, and the ratios: ``throughput(2) / throughput(1)`` (2.0 is linear
scaling) and ``step_time(2) / step_time(1)`` (1.0 is free gradient synchronisation).

Usage: ``python benchmarks/scaling.py [--steps 100] [--batch_size 32] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = ["-m", "gift_hf.scripts.train"]
CPU_2PROC = REPO / "recipes" / "accelerate" / "cpu_2proc.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        OMP_NUM_THREADS=str(threads),
    )
    return env


def _run(cmd: list[str], threads: int, output_dir: Path) -> dict[str, float]:
    proc = subprocess.run(cmd, env=_env(threads), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"benchmark run failed ({' '.join(cmd[:4])} ...):\n{(proc.stdout + proc.stderr)[-4000:]}")
    return json.loads((output_dir / "train_results.json").read_text())


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per run")
    parser.add_argument("--batch_size", type=int, default=32, help="images per process per step")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="gift_hf_scaling_") as tmp:
        tmp = Path(tmp)
        # A teacher of the right shape; its weights do not matter for timing.
        teacher = tmp / "teacher"
        _run(
            [
                sys.executable,
                *SCRIPT,
                "--output_dir",
                str(teacher),
                "--loss",
                "ce",
                "--soft_label_source",
                "none",
                "--max_steps",
                "1",
                "--eval_split",
                "",
                "--use_cpu",
                "--save_strategy",
                "no",
            ],
            args.threads,
            teacher,
        )
        common = [
            "--teacher_model_name_or_path",
            str(teacher),
            "--loss",
            "gift",
            "--max_steps",
            str(args.steps),
            "--per_device_train_batch_size",
            str(args.batch_size),
            "--eval_split",
            "",
            "--use_cpu",
            "--save_strategy",
            "no",
            "--disable_tqdm",
            "true",
            "--logging_steps",
            str(10 * args.steps),
            "--dataloader_drop_last",
            "true",
        ]
        one_dir, two_dir = tmp / "one", tmp / "two"
        one = _run([sys.executable, *SCRIPT, "--output_dir", str(one_dir), *common], args.threads, one_dir)
        two = _run(
            [
                str(Path(sys.executable).with_name("accelerate")),
                "launch",
                "--config_file",
                str(CPU_2PROC),
                "--main_process_port",
                str(_free_port()),
                *SCRIPT,
                "--output_dir",
                str(two_dir),
                *common,
            ],
            args.threads,
            two_dir,
        )

    assert one["world_size"] == 1 and two["world_size"] == 2
    step = {n: r["train_runtime"] / args.steps for n, r in ((1, one), (2, two))}
    images = {n: n * args.batch_size / step[n] for n in (1, 2)}
    results = {
        "step_time_1proc_s": step[1],
        "step_time_2proc_s": step[2],
        "images_per_s_1proc": images[1],
        "images_per_s_2proc": images[2],
        "throughput_ratio_2_over_1": images[2] / images[1],
        "step_time_ratio_2_over_1": step[2] / step[1],
    }
    print(
        f"gift_hf data-parallel scaling — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {args.threads} thread(s)/process, batch {args.batch_size}/process, "
        f"{args.steps} steps, GIFT + online teacher, ConvNet-D3 on 8×8 digits"
    )
    print(f"{'processes':>10} {'step time (ms)':>15} {'images/s':>10}")
    for n in (1, 2):
        print(f"{n:>10} {1000 * step[n]:>15.1f} {images[n]:>10.0f}")
    print(f"throughput ratio 2/1: {results['throughput_ratio_2_over_1']:.2f}× (2.00× = linear)")
    print(f"step time ratio 2/1:  {results['step_time_ratio_2_over_1']:.2f} (1.00 = free gradient all-reduce)")
    return results


if __name__ == "__main__":
    main()
