"""Teacher relabelling: add soft labels to a dataset from a teacher (or an ensemble).

The recipe of "A Label is Worth a Thousand Images" (Qin et al., NeurIPS 2024): soft labels
are computed once, on un-augmented images, as ``softmax(expert logits / T)``, optionally from an ensemble of experts
(averaged logits) and from an early-stopped training checkpoint ("expert epoch").
:func:`relabel` does this batched on any device, storing dense ``soft_label`` or sparse
top-k ``soft_label_topk_values``/``soft_label_topk_indices`` columns, and returns the
updated :class:`~gift_hf.data.distilled.DistilledInfo` alongside the dataset.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict, List, Value
from torch import nn

from gift_hf.data.distilled import (
    IMAGE_COLUMN,
    LABEL_COLUMN,
    PIXEL_COLUMN,
    SOFT_LABEL_COLUMN,
    TOPK_INDICES_COLUMN,
    TOPK_VALUES_COLUMN,
    DistilledInfo,
    quiet_datasets,
)
from gift_hf.data.images import SoftLabelCollator
from gift_hf.data.soft_labels import check_soft_labels
from gift_hf.engine.checkpoints import list_checkpoints
from gift_hf.models.modeling import image_transform_for, load_teacher, model_spec, num_classes_of, teacher_logits

__all__ = [
    "add_soft_labels",
    "compute_teacher_logits",
    "describe_teacher",
    "ensemble_logits",
    "fixed_size_list",
    "relabel",
    "resolve_expert_checkpoint",
    "resolve_teachers",
    "topk_sparsify",
]

TeacherLike = Union[str, os.PathLike, nn.Module]
OUTPUTS = ("logits", "probabilities")
SOFT_DTYPES = ("float32", "float16")


# --------------------------------------------------------------------------- teachers
def resolve_expert_checkpoint(run_dir: str | os.PathLike, epoch: float) -> Path:
    """The complete ``checkpoint-*`` folder of a ``Trainer`` run saved at ``epoch``.

    Teachers trained with ``save_strategy="epoch"`` (``gift-hf train-teacher``) keep one
    checkpoint per epoch, so an early "expert epoch" can be chosen after training.
    Checkpoints come from :func:`gift_hf.engine.checkpoints.list_checkpoints` (complete ones only).
    """
    found: dict[float, Path] = {}
    for checkpoint in list_checkpoints(run_dir):
        found.setdefault(checkpoint.epoch, Path(checkpoint.path))
    if not found:
        raise ValueError(
            f"expert_epoch={epoch}: {os.fspath(run_dir)!r} has no complete checkpoint-* folder; expected "
            "a teacher run trained by gift_hf with save_strategy='epoch' (gift-hf train-teacher)"
        )
    match = found.get(round(float(epoch), 6))
    if match is None:
        available = ", ".join(f"{e:g} ({p.name})" for e, p in sorted(found.items()))
        raise ValueError(
            f"expert_epoch={epoch}: no checkpoint of that epoch in {os.fspath(run_dir)!r}; expected one "
            f"of the saved epochs: {available}"
        )
    return match


def describe_teacher(model: nn.Module, source: TeacherLike) -> tuple[str, str | None]:
    """(id, architecture) of a teacher for the dataset card."""
    config = getattr(model, "config", None)
    arch = model_spec(model)["arch"] if config is not None else None
    if isinstance(source, nn.Module):
        name = getattr(config, "_name_or_path", None) or type(model).__name__
    else:
        name = os.fspath(source)
    return name, arch or type(model).__name__


def resolve_teachers(
    teacher: TeacherLike | Sequence[TeacherLike], expert_epoch: float | None, teacher_kwargs: dict[str, Any] | None
) -> list[tuple[TeacherLike, nn.Module, str | None]]:
    """[(source, model, checkpoint name)] for one teacher or an ensemble."""
    sources = list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]
    if not sources:
        raise ValueError("teacher: got an empty list; expected a teacher or a list of teachers (an ensemble)")
    out = []
    for source in sources:
        checkpoint = None
        if isinstance(source, nn.Module):
            if expert_epoch is not None:
                raise ValueError(
                    "expert_epoch needs teachers given as Trainer output directories, not model "
                    f"instances (got {type(source).__name__})"
                )
            out.append((source, source, None))
            continue
        path = source
        if expert_epoch is not None:
            if not os.path.isdir(source):
                raise ValueError(
                    f"expert_epoch={expert_epoch}: teacher {os.fspath(source)!r} is not a directory; "
                    "expected a Trainer output_dir with checkpoint-* folders"
                )
            path = resolve_expert_checkpoint(source, expert_epoch)
            checkpoint = path.name
        out.append((source, load_teacher(path, **(teacher_kwargs or {})), checkpoint))
    return out


# --------------------------------------------------------------------------- logits
def _default_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _image_column(dataset: Dataset) -> str:
    if IMAGE_COLUMN in dataset.column_names:
        return IMAGE_COLUMN
    if PIXEL_COLUMN in dataset.column_names:
        return PIXEL_COLUMN
    raise ValueError(
        f"dataset has no image column: expected {IMAGE_COLUMN!r} or {PIXEL_COLUMN!r}; it has "
        f"columns {dataset.column_names}"
    )


@torch.no_grad()
def _logits_of(
    model: nn.Module,
    dataset: Dataset,
    transform: Callable,
    batch_size: int,
    device: torch.device,
    progress: bool,
    desc: str,
    num_workers: int,
) -> torch.Tensor:
    from tqdm.auto import tqdm

    column = _image_column(dataset)
    rows = dataset.select_columns([column]).with_transform(transform)
    loader = torch.utils.data.DataLoader(
        rows, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=SoftLabelCollator()
    )
    first_param = next(iter(model.parameters()), None)
    original_device = first_param.device if first_param is not None else None
    was_training = model.training
    model.eval()
    model.to(device)
    try:
        chunks = []
        for batch in tqdm(loader, desc=desc, disable=not progress, unit="batch"):
            pixels = batch["pixel_values"]
            try:
                chunks.append(teacher_logits(model, pixels.to(device)).float().cpu())
            except torch.cuda.OutOfMemoryError:
                raise
            except (RuntimeError, ValueError) as err:  # shape errors from deep inside the model
                raise ValueError(_input_mismatch(model, desc, column, tuple(pixels.shape), err)) from None
    finally:
        # A model instance passed in by the caller is given back where and as it was.
        if original_device is not None:
            model.to(original_device)
        model.train(was_training)
    return torch.cat(chunks)


def _input_mismatch(model: nn.Module, who: str, column: str, shape: tuple[int, ...], err: Exception) -> str:
    spec = model_spec(model) if getattr(model, "config", None) is not None else {}
    channels, size = spec.get("in_chans"), spec.get("img_size")
    expects = ", ".join(
        part
        for part in (
            f"{channels} channels" if channels else "",
            f"{size}×{size} pixels" if isinstance(size, int) else "",
        )
        if part
    )
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (
        f"{who}: cannot take the images of column {column!r}: a batch of shape {shape} (batch, channels, height, "
        f"width) failed ({reason}); expected images the teacher accepts"
        + (f" ({expects})" if expects else "")
        + ". Stored float pixel_values are fed as they are: relabel images made for this teacher, or pass a "
        "transform that produces its input"
    )


def compute_teacher_logits(
    dataset: Dataset,
    teacher: TeacherLike | Sequence[TeacherLike],
    *,
    expert_epoch: float | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    transform: Callable | None = None,
    progress: bool = True,
    num_workers: int = 0,
    teacher_kwargs: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Teacher logits ``(N, C)`` float32 for every row of ``dataset``, on un-augmented images.

    ``teacher`` is a model, a directory saved by ``save_pretrained`` (or a Trainer
    output_dir with ``expert_epoch``), a Hub id, or a list of these (an ensemble: logits
    averaged). ``transform`` defaults to :func:`~gift_hf.models.modeling.image_transform_for` of each teacher.
    """
    return ensemble_logits(
        dataset,
        resolve_teachers(teacher, expert_epoch, teacher_kwargs),
        batch_size=batch_size,
        device=device,
        transform=transform,
        progress=progress,
        num_workers=num_workers,
    )


def ensemble_logits(dataset, teachers, *, batch_size, device, transform, progress, num_workers) -> torch.Tensor:
    """The mean logits ``(N, C)`` of ``teachers`` (from :func:`resolve_teachers`) over ``dataset``'s rows, on CPU."""
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset: expected a datasets.Dataset, got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError("dataset is empty (0 rows); expected at least one row to relabel")
    if batch_size < 1:
        raise ValueError(f"batch_size: got {batch_size}; expected >= 1")
    device = _default_device(device)
    _image_column(dataset)
    total = None
    for i, (source, model, _) in enumerate(teachers):
        fn = transform or image_transform_for(model)
        logits = _logits_of(
            model,
            dataset,
            fn,
            batch_size,
            device,
            progress,
            f"teacher {i + 1}/{len(teachers)} ({describe_teacher(model, source)[0]})",
            num_workers,
        )
        if total is not None and logits.shape != total.shape:
            raise ValueError(
                f"teacher {i + 1} ({describe_teacher(model, source)[0]}) outputs {logits.shape[1]} "
                f"classes but teacher 1 outputs {total.shape[1]}; an ensemble needs one label set"
            )
        total = logits if total is None else total + logits
    return total / len(teachers)


# --------------------------------------------------------------------------- soft labels
def topk_sparsify(soft: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the ``k`` largest entries (descending) and their class indices."""
    if soft.dim() != 2:
        raise ValueError(f"soft labels must have shape (N, C), got {tuple(soft.shape)}")
    if not 1 <= k <= soft.shape[1]:
        raise ValueError(f"topk: got {k}; expected 1 <= k <= {soft.shape[1]} (the number of classes)")
    values, indices = torch.topk(soft, k, dim=1, largest=True, sorted=True)
    return values, indices


def fixed_size_list(matrix: np.ndarray, dtype: str):
    """An ``(N, K)`` matrix as a pyarrow fixed-size-list column (``List(Value(dtype), length=K)``)."""
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(matrix, dtype=dtype).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])


def add_soft_labels(ds: Dataset, soft: torch.Tensor, topk: int | None = None, dtype: str = "float32") -> Dataset:
    """``ds`` with ``soft`` ``(N, C)`` stored as ``soft_label``, or as top-k columns with ``topk``.

    Any previous soft-label columns are replaced; indices are int16 when C ≤ 32768.
    """
    if dtype not in SOFT_DTYPES:
        raise ValueError(f"dtype: got {dtype!r}; expected one of {SOFT_DTYPES}")
    soft = torch.as_tensor(soft).detach().float().cpu()
    if soft.dim() != 2 or soft.shape[0] != len(ds):
        raise ValueError(
            f"soft labels have shape {tuple(soft.shape)}; expected ({len(ds)}, C), one row per row of the dataset"
        )
    ds = ds.remove_columns(
        [c for c in (SOFT_LABEL_COLUMN, TOPK_VALUES_COLUMN, TOPK_INDICES_COLUMN) if c in ds.column_names]
    )
    num_classes = soft.shape[1]
    if topk is None:
        return ds.add_column(
            SOFT_LABEL_COLUMN, fixed_size_list(soft.numpy(), dtype), feature=List(Value(dtype), length=num_classes)
        )
    values, indices = topk_sparsify(soft, topk)
    index_dtype = "int16" if num_classes <= np.iinfo(np.int16).max + 1 else "int32"
    ds = ds.add_column(
        TOPK_VALUES_COLUMN, fixed_size_list(values.numpy(), dtype), feature=List(Value(dtype), length=topk)
    )
    return ds.add_column(
        TOPK_INDICES_COLUMN,
        fixed_size_list(indices.numpy(), index_dtype),
        feature=List(Value(index_dtype), length=topk),
    )


def relabel(
    dataset: Dataset | DatasetDict,
    teacher: TeacherLike | Sequence[TeacherLike],
    *,
    info: DistilledInfo | None = None,
    output: str = "probabilities",
    temperature: float | None = None,
    topk: int | None = None,
    expert_epoch: float | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    dtype: str = "float32",
    transform: Callable | None = None,
    progress: bool = True,
    num_workers: int = 0,
    teacher_kwargs: dict[str, Any] | None = None,
) -> tuple[Dataset | DatasetDict, DistilledInfo]:
    """Add teacher soft labels to a dataset (every split of a ``DatasetDict``).

    Args:
        dataset: rows with an ``image`` (or float ``pixel_values``) and a ``ClassLabel`` ``label``.
        teacher: a model, a saved directory, a Hub id, or a list of these (an ensemble: the
            logits are averaged before any softmax).
        info: provenance to update (teacher, checkpoint, kind, temperature, k); a new one if None.
        output: ``"probabilities"`` (``softmax(logits / T)``, the label paper's labels) or
            ``"logits"`` (raw averaged logits, what GIFT consumes).
        temperature: T of ``output="probabilities"`` (default 1); not used with logits.
        topk: store only the k largest entries per row, sparsely (``soft_label_topk_*``);
            ``None`` stores the dense ``soft_label``. Meant for probabilities: training
            densifies the rows with 0 in the missing entries (``SoftLabelCollator.topk_fill``),
            which is the label paper's keep-top-k; for top-k logits choose that fill yourself.
        expert_epoch: use the teacher's training checkpoint of this epoch (teachers given
            as Trainer output directories; see :func:`resolve_expert_checkpoint`).
        batch_size, device, num_workers: inference settings (device: CUDA when available).
        dtype: ``"float32"`` or ``"float16"`` storage of the soft labels.
        transform: images → ``pixel_values``; default: the teacher's
            :func:`~gift_hf.models.modeling.image_transform_for`.
        progress: show a progress bar.
        teacher_kwargs: keyword arguments for :func:`gift_hf.load_teacher`.

    Returns:
        ``(dataset, info)``: the dataset with its previous soft labels replaced.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output: got {output!r}; expected one of {OUTPUTS}")
    if dtype not in SOFT_DTYPES:
        raise ValueError(f"dtype: got {dtype!r}; expected one of {SOFT_DTYPES}")
    if output == "logits" and temperature not in (None, 1, 1.0):
        raise ValueError(
            f"temperature: got {temperature} with output='logits'; a temperature applies to "
            "output='probabilities' (softmax(logits / T)); losses apply their own"
        )
    if output == "probabilities":
        temperature = 1.0 if temperature is None else float(temperature)
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature: got {temperature}; expected a positive number")
    if topk is not None and (isinstance(topk, bool) or not isinstance(topk, int) or topk < 1):
        raise ValueError(f"topk: got {topk!r}; expected a positive integer or None")
    splits = dict(dataset) if isinstance(dataset, DatasetDict) else {"train": dataset}
    for name, ds in splits.items():
        if not isinstance(ds, Dataset):
            raise TypeError(f"dataset: expected a datasets.Dataset or DatasetDict, got {type(ds).__name__}")
        label = ds.features.get(LABEL_COLUMN)
        if not isinstance(label, ClassLabel):
            raise ValueError(
                f"column {LABEL_COLUMN!r} (split {name!r}) has feature {label}; expected a ClassLabel "
                "(the teacher's classes must be named)"
            )
    teachers = resolve_teachers(teacher, expert_epoch, teacher_kwargs)
    num_classes = next(iter(splits.values())).features[LABEL_COLUMN].num_classes
    for source, model, _ in teachers:
        teacher_classes = num_classes_of(model)
        if teacher_classes is not None and teacher_classes != num_classes:
            raise ValueError(
                f"teacher {describe_teacher(model, source)[0]!r} has {teacher_classes} classes but "
                f"column {LABEL_COLUMN!r} has {num_classes}; expected the same label set"
            )
    if topk is not None and topk > num_classes:
        raise ValueError(f"topk: got {topk}; expected 1 <= k <= {num_classes} (the number of classes)")

    out: dict[str, Dataset] = {}
    for name, ds in splits.items():
        logits = ensemble_logits(
            ds.with_format(None),
            teachers,
            batch_size=batch_size,
            device=device,
            transform=transform,
            progress=progress,
            num_workers=num_workers,
        )
        if logits.shape[1] != num_classes:
            raise ValueError(
                f"teacher outputs {logits.shape[1]} classes but column {LABEL_COLUMN!r} has "
                f"{num_classes}; expected the same label set"
            )
        soft = torch.softmax(logits / temperature, dim=1) if output == "probabilities" else logits
        # the check every reader of the stored labels runs: a teacher's NaN is named here, not at training
        check_soft_labels(soft, output, num_classes=num_classes, where=f" (split {name!r}, the teacher's output)")
        with quiet_datasets():
            out[name] = add_soft_labels(ds, soft, topk, dtype)

    ids = [describe_teacher(model, source) for source, model, _ in teachers]
    checkpoints = [c for _, _, c in teachers if c is not None]
    first_model = teachers[0][1]
    spec = model_spec(first_model) if getattr(first_model, "config", None) is not None else {}
    mean, std = spec.get("image_mean"), spec.get("image_std")
    info = info or DistilledInfo()
    has_pixels = PIXEL_COLUMN in next(iter(splits.values())).column_names
    fill_norm = info.image_mean is None and mean and std and not has_pixels
    info = info.replace(
        teacher_id=ids[0][0] if len(ids) == 1 else [i for i, _ in ids],
        teacher_architecture=ids[0][1] if len({a for _, a in ids}) == 1 else ", ".join(a for _, a in ids),
        teacher_checkpoint=(checkpoints[0] if len(checkpoints) == 1 else checkpoints) if checkpoints else None,
        teacher_epoch=expert_epoch,
        soft_label_kind=output,
        temperature=temperature if output == "probabilities" else None,
        topk=topk,
        num_classes=num_classes,
        # the normalisation the labels were made with, for students trained on them
        **({"image_mean": list(mean), "image_std": list(std)} if fill_norm else {}),
    )
    result = DatasetDict(out) if isinstance(dataset, DatasetDict) else out["train"]
    return result, info
