"""Run a grid of cells (one trained student each): progress, resume, and process splitting.

A *cell* is one student training of a study — e.g. ``loss=gift, optimizer=sgd, seed=1``.
:func:`run_cells` runs the cells of a grid and returns one record per cell:

- **resume**: every finished cell is written at once to ``<output_dir>/cells/<key>.json``
  (atomically), and the merged ``results.json`` keeps them too; a cell found in either,
  computed under the same settings (its *fingerprint*), is not trained again.
- **processes**: under ``accelerate launch`` (any launcher that sets ``RANK``/``WORLD_SIZE``)
  process ``r`` of ``w`` trains the pending cells ``r, r + w, …``; each process trains its
  students alone (no gradient synchronisation: the cells are independent), and the main
  process waits for every cell file, then merges.
- **progress**: a ``tqdm`` bar per process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from gift_hf.engine.progress import job_progress, progress_line
from gift_hf.files import write_output_text

__all__ = ["Cell", "SweepStats", "detach_from_launcher", "fingerprint_of", "format_value", "run_cells"]

CELLS_DIR = "cells"
RESULTS_FILE = "results.json"

# torchrun and `accelerate launch` describe a distributed job to torch.distributed (its env://
# rendezvous) and to accelerate with these variables; without them a Trainer in this process is
# a single-process one. A study uses the launcher only to start N processes and splits its cells
# among them itself (each cell is a whole, independent student training).
_LAUNCHER_ENV = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "ACCELERATE_USE_FSDP",
    "ACCELERATE_USE_DEEPSPEED",
)


@dataclass(frozen=True)
class Cell:
    """One student training of a grid: ``params`` name the setting, ``seed`` the student."""

    params: dict[str, Any]
    seed: int

    @property
    def key(self) -> str:
        """A stable, file-name-safe id, e.g. ``loss=gift,optimizer=sgd,seed=1``."""
        parts = [f"{k}={format_value(v)}" for k, v in self.params.items()] + [f"seed={self.seed}"]
        return re.sub(r"[^A-Za-z0-9=,._+-]", "_", ",".join(parts))


def format_value(value: Any) -> str:
    """A parameter value as cell keys and table headers show it (floats in %g)."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass
class SweepStats:
    """What a :func:`run_cells` call did: cells trained here, reused, and trained elsewhere."""

    total: int = 0
    trained: int = 0
    reused: int = 0
    rank: int = 0
    world_size: int = 1
    failed: list[str] = field(default_factory=list)


def fingerprint_of(settings: Any) -> str:
    """A short hash of everything besides the grid that a result depends on."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_DETACHED: tuple[int, int] | None = None


def detach_from_launcher() -> tuple[int, int]:
    """``(rank, world_size)`` of this process in its launch; then make it a standalone process.

    Called before any ``Trainer`` or ``GIFTConfig`` exists (a study script calls it before
    parsing its options). With ``world_size > 1`` the launcher's variables are removed from
    the environment (each process trains whole students by itself) and, on GPUs, the
    process keeps only its own device (``CUDA_VISIBLE_DEVICES``). Later calls return the
    same ``(rank, world_size)``.
    """
    global _DETACHED
    if _DETACHED is not None:
        return _DETACHED
    if int(os.environ.get("PMI_SIZE") or os.environ.get("OMPI_COMM_WORLD_SIZE") or 1) > 1:
        raise RuntimeError(
            "a study splits its cells across the processes of `accelerate launch` or `torchrun`; "
            "launch it with one of these, not mpirun"
        )
    rank, world = int(os.environ.get("RANK") or 0), int(os.environ.get("WORLD_SIZE") or 1)
    if world <= 1:
        return 0, 1
    local_rank = int(os.environ.get("LOCAL_RANK") or rank)
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # a process group exists (a GIFTConfig or Trainer was made): its Trainer would sync with the others
        raise RuntimeError(
            "run_cells splits cells across processes and must run before any Trainer/accelerate state is created "
            "in this process"
        )
    for name in _LAUNCHER_ENV:
        os.environ.pop(name, None)
    import torch

    if not torch.cuda.is_initialized():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = [d for d in visible.split(",") if d.strip()] if visible else None
        if devices is None or local_rank < len(devices):
            os.environ["CUDA_VISIBLE_DEVICES"] = devices[local_rank] if devices else str(local_rank)
    _DETACHED = (rank, world)
    return rank, world


def _cell_path(output_dir: str, key: str, suffix: str = ".json") -> str:
    return os.path.join(output_dir, CELLS_DIR, key + suffix)


def load_finished(output_dir: str, fingerprint: str) -> dict[str, dict[str, Any]]:
    """Finished cells (key → record) under ``output_dir`` computed with ``fingerprint``."""
    found: dict[str, dict[str, Any]] = {}
    results = os.path.join(output_dir, RESULTS_FILE)
    if os.path.isfile(results):
        with open(results) as f:
            for record in json.load(f).get("cells", []):
                if record.get("fingerprint") == fingerprint:
                    found[record["key"]] = record
    cells_dir = os.path.join(output_dir, CELLS_DIR)
    if os.path.isdir(cells_dir):
        for name in os.listdir(cells_dir):
            if name.endswith(".json") and not name.startswith(".") and not name.endswith(".error.json"):
                try:
                    with open(os.path.join(cells_dir, name)) as f:
                        record = json.load(f)
                except (OSError, json.JSONDecodeError):
                    continue  # a file another process is replacing; it will be read on the next poll
                if record.get("fingerprint") == fingerprint:
                    found[record["key"]] = record
    return found


def run_cells(
    cells: Iterable[Cell],
    run_one: Callable[[Cell], dict[str, Any]],
    output_dir: str,
    fingerprint: str,
    *,
    desc: str = "cells",
    resume: bool = True,
    poll_seconds: float = 1.0,
    timeout: float | None = None,
    on_share: Callable[[list[Cell]], None] | None = None,
) -> tuple[list[dict[str, Any]] | None, SweepStats]:
    """Run the cells not yet finished; return every cell's record (main process) and stats.

    ``run_one(cell)`` trains one student and returns its record (``accuracy`` …); the
    record is stored with the cell's ``key``, ``params``, ``seed``, the ``fingerprint``
    and the ``rank`` that ran it. Non-main processes return ``(None, stats)`` once their
    share is done; the main process waits (up to ``timeout`` seconds, forever if None)
    for the others' cells and returns all records in grid order. A cell that raised is
    recorded as ``<key>.error.json`` with its traceback; the main process then raises.
    ``on_share`` is told this process's cells before the first is trained (a study trains
    the seeds of one setting together, but only those that are this process's).
    """
    from tqdm.auto import tqdm

    cells = list(cells)
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"cells: duplicate cells {dup[:3]}; every cell must differ in params or seed")
    rank, world = detach_from_launcher()
    stats = SweepStats(total=len(cells), rank=rank, world_size=world)
    os.makedirs(os.path.join(output_dir, CELLS_DIR), exist_ok=True)
    finished = load_finished(output_dir, fingerprint) if resume else {}
    pending = [c for c in cells if c.key not in finished]
    stats.reused = len(cells) - len(pending)
    # Cells are dealt out by their place in the whole grid, not among the pending ones: each
    # process reads `finished` at its own moment, and a share computed from a list another
    # process has already shortened would leave some cell to nobody.
    mine = [c for i, c in enumerate(cells) if i % world == rank and c.key not in finished]
    if on_share is not None:
        on_share(mine)
    label = f"{desc} [process {rank}/{world}]" if world > 1 else desc
    if rank == 0 and stats.reused:
        tqdm.write(f"{desc}: {stats.reused}/{len(cells)} cells already finished in {output_dir}; skipping them")
    # One display: students (cells) as their training steps pass, an ETA, one line per finished cell.
    with job_progress(len(mine), label, enabled=bool(mine), position=rank if world > 1 else None) as bar:
        for index, cell in enumerate(mine):
            _run_cell(cell, run_one, output_dir, fingerprint, rank, world, finished, stats)
            if cell.key in finished:
                accuracy = finished[cell.key].get("accuracy")
                shown = f"{100 * accuracy:.2f}%" if isinstance(accuracy, float) else "failed"
                progress_line(f"{desc}: {_describe_cell(cell)}: {shown}")
            if bar.n < index + 1:  # cells whose students trained together with an earlier one's
                bar.update(index + 1 - bar.n)
    if rank != 0:
        return None, stats

    start = time.monotonic()
    while True:
        finished.update(load_finished(output_dir, fingerprint))
        missing = [k for k in keys if k not in finished]
        errors = [k for k in missing if os.path.exists(_cell_path(output_dir, k, ".error.json"))]
        if len(errors) == len(missing):
            break
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(
                f"{desc}: waited {timeout:.0f}s for {len(missing)} cell(s) of other processes, e.g. {missing[:3]}"
            )
        time.sleep(poll_seconds)
    if errors:
        with open(_cell_path(output_dir, errors[0], ".error.json")) as f:
            first = json.load(f)["traceback"]
        raise RuntimeError(f"{desc}: {len(errors)} cell(s) failed, e.g. {errors[0]}:\n{first}")
    return [finished[k] for k in keys], stats


def _describe_cell(cell: "Cell") -> str:
    params = ", ".join(f"{k}={v}" for k, v in cell.params.items())
    return f"{params}, seed {cell.seed}" if params else f"seed {cell.seed}"


def _run_cell(
    cell: "Cell",
    run_one: Callable[["Cell"], dict[str, Any]],
    output_dir: str,
    fingerprint: str,
    rank: int,
    world: int,
    finished: dict[str, Any],
    stats: "SweepStats",
) -> None:
    """Train one cell and record it (``<key>.json``), or record its error (``<key>.error.json``)."""
    error_path = _cell_path(output_dir, cell.key, ".error.json")
    try:
        record = dict(run_one(cell))
    except Exception:
        write_output_text(error_path, json.dumps({"key": cell.key, "traceback": traceback.format_exc()}))
        stats.failed.append(cell.key)
        if world == 1:
            raise
        return
    record.update(key=cell.key, params=dict(cell.params), seed=cell.seed, fingerprint=fingerprint, rank=rank)
    write_output_text(_cell_path(output_dir, cell.key), json.dumps(record, indent=1))
    if os.path.exists(error_path):
        os.remove(error_path)
    finished[cell.key] = record
    stats.trained += 1
