"""One progress display per long job: students × steps, with an ETA, whatever trains them.

A job that trains many students (an evaluation, a study, the quickstart, DD-Ranking) opens
one bar with :func:`job_progress`, counted in students. Every ``GIFTTrainer`` run inside it
(:func:`gift_hf.engine.training.train_students`) advances that bar step by step — a
population of K students by K students over its steps — through :class:`StudentProgress`,
and shows nothing of its own: no per-step bar, no metric blocks, no model-shard bars. The
job writes one line per finished student or cell with :func:`progress_line`, then its table.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from typing import Any, Iterator

from transformers import TrainerCallback

__all__ = ["LineHandler", "StudentProgress", "active_progress", "job_progress", "progress_line", "quiet_saving"]

_ACTIVE: contextvars.ContextVar[Any] = contextvars.ContextVar("gift_hf_job_progress", default=None)

_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.0f} {unit} [{elapsed}<{remaining}{postfix}]"


@contextlib.contextmanager
def job_progress(
    total: float, desc: str, unit: str = "students", enabled: bool = True, position: int | None = None
) -> Iterator[Any]:
    """A bar over ``total`` students (fractions as their steps pass), active for the trainings inside;
    ``position``: the line of this process's bar under ``accelerate launch``."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total,
        desc=desc,
        unit=unit,
        bar_format=_BAR_FORMAT,
        disable=not enabled,
        dynamic_ncols=True,
        position=position,
    )
    token = _ACTIVE.set(bar)
    try:
        yield bar
    finally:
        _ACTIVE.reset(token)
        bar.close()


def active_progress() -> Any:
    """The bar of the job running now, or None."""
    return _ACTIVE.get()


def progress_line(text: str) -> None:
    """One line above the job's bar (or printed, outside a job)."""
    bar = active_progress()
    if bar is not None and not bar.disable:
        bar.write(text)
    else:
        print(text, flush=True)


@contextlib.contextmanager
def quiet_saving() -> Iterator[None]:
    """Without transformers' "Writing model shards" bars (a job shows its own progress)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class StudentProgress(TrainerCallback):
    """Advances a job's bar by ``students`` over the run's optimizer steps (no host read)."""

    def __init__(self, bar: Any, students: int) -> None:
        self.bar, self.students = bar, students
        self.start = 0.0
        self.per_step = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = self.bar.n
        self.per_step = self.students / max(state.max_steps, 1)

    def on_step_end(self, args, state, control, **kwargs):
        # never past this run's share (float steps add up to a little more); tqdm limits the redraws
        step = min(self.per_step, self.start + self.students - self.bar.n)
        if step > 0:
            self.bar.update(step)

    def on_train_end(self, args, state, control, **kwargs):
        done = self.start + self.students - self.bar.n  # rounding of the per-step shares
        if done > 0:
            self.bar.update(done)


class LineHandler(logging.Handler):
    """A logging handler that writes each message as one line above the job's bar (or to stderr)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            bar = active_progress()
            if bar is not None and not bar.disable:
                bar.write(text, file=sys.stderr)
            else:
                print(text, file=sys.stderr, flush=True)
        except Exception:  # logging must never raise
            self.handleError(record)
