"""`evaluate` metric modules shipped with gift_hf, loaded by path (works offline)."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

__all__ = ["best_accuracy", "build_compute_metrics", "load_metric", "metric_path"]


def metric_path(name: str) -> str:
    """Path of a shipped metric script, for ``evaluate.load``."""
    path = Path(__file__).parent / name / f"{name}.py"
    if not path.is_file():
        shipped = sorted(p.name for p in Path(__file__).parent.iterdir() if p.is_dir() and not p.name.startswith("_"))
        raise ValueError(f"unknown metric {name!r}; shipped metrics: {shipped}")
    return str(path)


@cache
def load_metric(name: str = "topk_accuracy"):
    """``evaluate.load`` of a shipped metric (cached per process)."""
    import evaluate

    return evaluate.load(metric_path(name))


def build_compute_metrics(num_classes: int) -> Callable:
    """A ``compute_metrics`` for ``Trainer``: top-1, plus top-5 when there are more than 5 classes.

    For K students evaluated together (``(N, K, C)`` logits), student ``k``'s values are
    ``accuracy_s<k>`` …, and ``accuracy`` … their mean.
    """
    ks = (1, 5) if num_classes > 5 else (1,)

    def compute_metrics(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(logits, tuple):
            logits = logits[0]
        logits, labels = np.asarray(logits, dtype=np.float32), np.asarray(labels)
        metric = load_metric("topk_accuracy")
        if logits.ndim == 2:
            return metric.compute(predictions=logits, references=labels, k=list(ks))
        # K students trained together (logits (N, K, C)): each student's metrics as
        # `<name>_s<k>`, and their mean under the plain name.
        per_student = [
            metric.compute(predictions=logits[:, i], references=labels, k=list(ks)) for i in range(logits.shape[1])
        ]
        merged = {name: float(np.mean([m[name] for m in per_student])) for name in per_student[0]}
        for i, m in enumerate(per_student):
            merged.update({f"{name}_s{i}": value for name, value in m.items()})
        return merged

    return compute_metrics


def best_accuracy(accuracies: Sequence[float]) -> float:
    """The best of several evaluations of one student (best-of-k reporting).

    Raises a ``ValueError`` naming the evaluation when any accuracy is NaN or infinite, or
    when there is none: a broken evaluation is never silently picked or skipped.
    """
    values = [float(a) for a in accuracies]
    if not values:
        raise ValueError("accuracies: got no evaluations; expected at least one")
    for index, value in enumerate(values):
        if not math.isfinite(value):
            raise ValueError(
                f"accuracies: evaluation {index} is {value}; expected finite accuracies (a non-finite "
                "accuracy means the evaluation itself failed)"
            )
    return max(values)
