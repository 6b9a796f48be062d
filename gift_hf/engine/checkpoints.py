"""The checkpoints of a training run: which are complete, which run wrote them.

A ``Trainer`` checkpoint folder (``checkpoint-<step>``) is written piece by piece by every
process; a kill mid-save leaves a folder that looks like a checkpoint but cannot be resumed
from. gift_hf marks a checkpoint *complete* by writing :data:`CHECKPOINT_MARKER` into it
after every process has saved its part (a ``TrainerCallback.on_save`` in
:class:`gift_hf.GIFTTrainer`). The marker also holds the identity of the run that wrote it
(loss, seed, dataset fingerprint, schedule), which a resumed run checks against its own.

Every place that looks for checkpoints (resuming, expert epochs, relabelling from an early
checkpoint) uses :func:`list_checkpoints` or :func:`last_checkpoint`, so they all agree
about which folders count.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from gift_hf.files import atomic_write_text

__all__ = [
    "CHECKPOINT_MARKER",
    "RUN_FILE",
    "Checkpoint",
    "current_run_id",
    "dataset_fingerprint",
    "last_checkpoint",
    "list_checkpoints",
    "read_json",
    "write_json",
]

CHECKPOINT_MARKER = "gift_checkpoint.json"
"""Written into ``checkpoint-<step>`` last, once every process has saved: its presence makes the checkpoint complete."""

RUN_FILE = "gift_run.json"
"""Written into ``output_dir`` when a run starts from scratch: the id of the run whose checkpoints ``last`` resumes."""

_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")  # transformers' PREFIX_CHECKPOINT_DIR + "-<step>"


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint folder of a run."""

    step: int
    epoch: float
    path: str

    @property
    def info(self) -> dict[str, Any]:
        """What :data:`CHECKPOINT_MARKER` records: ``run_id``, ``run`` (its identity), ``train_loss_sum``/``count``."""
        return read_json(os.path.join(self.path, CHECKPOINT_MARKER))


def read_json(path: str) -> dict[str, Any]:
    """A JSON object from ``path`` (an empty dict when it is not a readable JSON object)."""
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_json(path: str, value: dict[str, Any]) -> None:
    """Write ``value`` to ``path`` atomically (a reader sees the old file or the whole new one)."""
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True))


def current_run_id(output_dir: str | os.PathLike) -> str | None:
    """The id of the run that last started from scratch in ``output_dir`` (None if gift_hf never trained there)."""
    return read_json(os.path.join(os.fspath(output_dir), RUN_FILE)).get("run_id")


def _step_folders(output_dir: str) -> list[tuple[int, str]]:
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = _CHECKPOINT_DIR.match(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    return sorted(found)


def list_checkpoints(output_dir: str | os.PathLike, run_id: str | None = None) -> list[Checkpoint]:
    """The complete ``checkpoint-<step>`` folders of ``output_dir``, oldest step first.

    A folder counts only when it holds :data:`CHECKPOINT_MARKER` and ``trainer_state.json``;
    one a kill interrupted mid-save has no marker and is skipped.

    Args:
        output_dir: a ``Trainer`` output directory.
        run_id: keep only checkpoints written by this run (see :func:`current_run_id`);
            None keeps every run's.
    """
    out = []
    for step, path in _step_folders(os.fspath(output_dir)):
        marker = read_json(os.path.join(path, CHECKPOINT_MARKER))
        state = read_json(os.path.join(path, "trainer_state.json"))
        if not marker or not state:
            continue
        if run_id is not None and marker.get("run_id") != run_id:
            continue
        out.append(Checkpoint(step=step, epoch=round(float(state.get("epoch") or 0.0), 6), path=path))
    return out


def last_checkpoint(output_dir: str | os.PathLike, run_id: str | None = None) -> Checkpoint | None:
    """The newest complete checkpoint of the current run of ``output_dir``, or None.

    ``run_id`` defaults to :func:`current_run_id`, so after a run restarted from scratch
    (``overwrite_output_dir``) an older run's checkpoints are never picked.
    ``transformers.trainer_utils.get_last_checkpoint`` would pick an incomplete folder or an
    older run's.
    """
    if run_id is None:
        run_id = current_run_id(output_dir)
    found = list_checkpoints(output_dir, run_id=run_id)
    return found[-1] if found else None


def dataset_fingerprint(dataset: Any) -> str | None:
    """A short content hash of a training set: row count, features and its first and last rows.

    Cheap for any size (it reads at most 64 rows), stable across processes, and different
    for another dataset, another subset or another order of the same rows in practice.
    None for a dataset without ``len``.
    """
    if dataset is None or not hasattr(dataset, "__len__"):
        return None
    digest = hashlib.sha256(f"{type(dataset).__name__}:{len(dataset)}".encode())
    if hasattr(dataset, "with_format") and hasattr(dataset, "features"):  # a datasets.Dataset
        digest.update(repr(dataset.features).encode())
        arrow = dataset.with_format("arrow")
        n = len(dataset)
        for start, stop in ((0, min(32, n)), (max(n - 32, 0), n)):
            if stop > start:
                digest.update(repr(arrow[start:stop].to_pydict()).encode())
    return digest.hexdigest()[:16]
