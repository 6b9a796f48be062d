"""Selection baselines: distilled sets made of real images.

- :func:`build_random_distilled`: a class-balanced random subset with ``ipc`` images per
  class, reproducible by seed — the label paper's strong baseline once relabelled.
- :func:`build_difficulty_distilled`: per class, rank images by the teacher's
  cross-entropy (easiest first) and pick ``ipc`` at random from a quantile band.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict

from gift_hf.data.distilled import LABEL_COLUMN, DistilledInfo
from gift_hf.data.images import class_balanced_indices
from gift_hf.data.relabel import TeacherLike, describe_teacher, ensemble_logits, resolve_teachers

__all__ = [
    "build_difficulty_distilled",
    "build_random_distilled",
    "pick_split",
    "selection_labels",
    "teacher_cross_entropy",
]


def pick_split(dataset: Dataset | DatasetDict, split: str) -> Dataset:
    """``dataset`` itself, or its split ``split`` (a clear error naming the splits it has)."""
    if isinstance(dataset, DatasetDict):
        if split not in dataset:
            raise ValueError(f"split: got {split!r}; the DatasetDict has splits {sorted(dataset)}")
        return dataset[split]
    if isinstance(dataset, Dataset):
        return dataset
    raise TypeError(f"dataset: expected a datasets.Dataset or DatasetDict, got {type(dataset).__name__}")


def selection_labels(ds: Dataset, label_column: str, ipc: int) -> tuple[np.ndarray, int]:
    """The label ids of ``ds`` and its number of classes, after checking every class has ``ipc`` rows."""
    if isinstance(ipc, bool) or not isinstance(ipc, int) or ipc < 1:
        raise ValueError(f"ipc: got {ipc!r}; expected a positive integer (images per class)")
    if len(ds) == 0:
        raise ValueError("dataset is empty (0 rows); expected a real dataset to select from")
    if label_column not in ds.column_names:
        raise ValueError(f"dataset has no {label_column!r} column (label_column); it has columns {ds.column_names}")
    labels = np.asarray(ds.with_format(None)[label_column])
    if labels.dtype.kind not in "iu":
        raise ValueError(
            f"column {label_column!r} (label_column) holds {labels.dtype} values (row 0: "
            f"{labels[0].item()!r}); expected integer class ids (cast it to a ClassLabel: "
            "ds.class_encode_column(...))"
        )
    if labels.min() < 0:
        row = int(np.argmin(labels))
        raise ValueError(
            f"column {label_column!r} (label_column), row {row}: class id {int(labels[row])}; expected class ids >= 0"
        )
    feature = ds.features[label_column]
    num_classes = feature.num_classes if isinstance(feature, ClassLabel) else int(labels.max()) + 1
    counts = np.bincount(labels, minlength=num_classes)
    if counts.min() < ipc:
        cls = int(np.argmin(counts))  # the smallest class bounds ipc
        name = f" ({feature.int2str(cls)!r})" if isinstance(feature, ClassLabel) else ""
        raise ValueError(
            f"ipc: class {cls}{name} has {int(counts[cls])} images but ipc={ipc} were requested; "
            f"expected ipc <= {int(counts.min())}, the smallest class size"
        )
    return labels, num_classes


def _as_schema(ds: Dataset, label_column: str) -> Dataset:
    return ds if label_column == LABEL_COLUMN else ds.rename_column(label_column, LABEL_COLUMN)


def build_random_distilled(
    dataset: Dataset | DatasetDict,
    ipc: int,
    *,
    seed: int = 0,
    split: str = "train",
    label_column: str = "label",
    source_dataset: str | None = None,
) -> tuple[Dataset, DistilledInfo]:
    """A class-balanced random subset: ``ipc`` real images per class, reproducible by ``seed``.

    Args:
        dataset: a real dataset (``split`` is taken from a ``DatasetDict``).
        ipc: images per class; every class must have at least that many.
        seed: selection seed (same seed, same rows).
        label_column: the class-id column; renamed to ``label`` in the result.
        source_dataset: recorded in the returned info.

    Returns:
        ``(subset, info)``; rows keep their original order. Relabel it with
        :func:`gift_hf.data.relabel` and save it with :func:`gift_hf.save_distilled`.
    """
    ds = pick_split(dataset, split)
    labels, num_classes = selection_labels(ds, label_column, ipc)
    picked = class_balanced_indices(labels, ipc, seed=seed)
    info = DistilledInfo(source_dataset=source_dataset, method="random", ipc=ipc, seed=seed, num_classes=num_classes)
    return _as_schema(ds.select(picked), label_column), info


def teacher_cross_entropy(
    dataset: Dataset,
    teacher: TeacherLike | Sequence[TeacherLike],
    *,
    label_column: str = "label",
    expert_epoch: float | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    transform: Callable | None = None,
    progress: bool = True,
    teacher_kwargs: dict[str, Any] | None = None,
) -> np.ndarray:
    """Per-row cross-entropy of the teacher (ensemble: of its averaged logits) on the true label."""
    teachers = resolve_teachers(teacher, expert_epoch, teacher_kwargs)
    logits = ensemble_logits(
        dataset, teachers, batch_size=batch_size, device=device, transform=transform, progress=progress, num_workers=0
    )
    labels = torch.as_tensor(np.asarray(dataset.with_format(None)[label_column]), dtype=torch.long)
    if int(labels.max()) >= logits.shape[1]:
        raise ValueError(
            f"column {label_column!r} has class id {int(labels.max())} but the teacher outputs "
            f"{logits.shape[1]} classes; expected the same label set"
        )
    return torch.nn.functional.cross_entropy(logits, labels, reduction="none").numpy()


def build_difficulty_distilled(
    dataset: Dataset | DatasetDict,
    ipc: int,
    teacher: TeacherLike | Sequence[TeacherLike],
    *,
    band: tuple[float, float] = (0.0, 0.5),
    seed: int = 0,
    split: str = "train",
    label_column: str = "label",
    source_dataset: str | None = None,
    expert_epoch: float | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    transform: Callable | None = None,
    progress: bool = True,
    teacher_kwargs: dict[str, Any] | None = None,
) -> tuple[Dataset, DistilledInfo]:
    """Difficulty-based selection: per class, ``ipc`` random images from a band of teacher CE quantiles.

    Each class's images are ranked by the teacher's cross-entropy, easiest first; ``band =
    (low, high)`` (fractions in ``[0, 1]``) keeps ranks ``floor(low·n) … ceil(high·n) - 1``
    and ``ipc`` of them are drawn with ``seed``. ``(0, 0.2)`` = the easiest fifth,
    ``(0.8, 1)`` the hardest.

    Returns:
        ``(subset, info)``; ``info.extra`` records the band and the teacher.
    """
    low, high = (float(b) for b in band)
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"band: got {tuple(band)}; expected (low, high) with 0 <= low < high <= 1")
    ds = pick_split(dataset, split)
    labels, num_classes = selection_labels(ds, label_column, ipc)
    teachers = resolve_teachers(teacher, expert_epoch, teacher_kwargs)
    logits = ensemble_logits(
        ds, teachers, batch_size=batch_size, device=device, transform=transform, progress=progress, num_workers=0
    )
    if logits.shape[1] != num_classes:
        raise ValueError(
            f"teacher outputs {logits.shape[1]} classes but column {label_column!r} has {num_classes}; "
            "expected the same label set"
        )
    ce = torch.nn.functional.cross_entropy(logits, torch.as_tensor(labels, dtype=torch.long), reduction="none").numpy()
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for cls in range(num_classes):
        rows = np.flatnonzero(labels == cls)
        ranked = rows[np.argsort(ce[rows], kind="stable")]
        start, stop = math.floor(low * len(ranked)), math.ceil(high * len(ranked))
        candidates = ranked[start:stop]
        if len(candidates) < ipc:
            raise ValueError(
                f"band: class {cls} has {len(candidates)} images in quantile band {(low, high)} "
                f"(of {len(ranked)}) but ipc={ipc} were requested; expected a wider band or a "
                "smaller ipc"
            )
        picked.extend(rng.choice(candidates, size=ipc, replace=False).tolist())
    ids = [describe_teacher(model, source)[0] for source, model, _ in teachers]
    info = DistilledInfo(
        source_dataset=source_dataset,
        method="difficulty",
        ipc=ipc,
        seed=seed,
        num_classes=num_classes,
        extra={
            "band": [low, high],
            "ranked_by": "teacher cross-entropy (easiest first)",
            "selection_teacher": ids[0] if len(ids) == 1 else ids,
            **({"selection_expert_epoch": float(expert_epoch)} if expert_epoch is not None else {}),
        },
    )
    return _as_schema(ds.select(sorted(picked)), label_column), info
