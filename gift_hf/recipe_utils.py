"""Building blocks of the training recipes: arguments, data loading and start-up checks.

``recipes/train_student.py`` is assembled from these so that other recipes (and tests)
reuse the same checks: every bad input is refused *before* anything is written, with an
error that names the option, the value and what was expected.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from datasets import ClassLabel, Dataset, DatasetDict

from .data import DIGITS_MEAN, DIGITS_STD, ImageTransform, SoftLabelCollator, load_digits_dataset
from .trainer import last_checkpoint

__all__ = [
    "ROW_INDEX_COLUMN",
    "DataArguments",
    "ModelArguments",
    "ShardRecordingCollator",
    "build_image_transform",
    "check_soft_label_columns",
    "check_model_input",
    "check_output_dir",
    "default_collator",
    "infer_channels_and_size",
    "label_names",
    "load_image_dataset",
    "resolve_resume_checkpoint",
]

ROW_INDEX_COLUMN = "__row_index__"
"""Column added by ``--record_shard_indices``: the row's index in the (selected) split."""


@dataclass
class DataArguments:
    """Which data to train and evaluate on, and how images become ``pixel_values``."""

    dataset_name: Optional[str] = field(
        default=None,
        metadata={"help": "A Hub dataset id or a local directory in the Hub layout, read with "
                  "datasets.load_dataset. Default: the embedded digits (gift_hf.load_digits_dataset)."},
    )
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "Configuration name of the dataset."})
    dataset_revision: Optional[str] = field(default=None, metadata={"help": "Hub revision (branch, tag or commit)."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: Optional[str] = field(default="test", metadata={"help": "Split to evaluate on (empty: none)."})
    image_column: str = field(default="image", metadata={"help": "Column holding the images."})
    label_column: str = field(default="label", metadata={"help": "Column holding the class ids."})
    soft_label_column: str = field(
        default="soft_label", metadata={"help": "Column holding stored soft labels (soft_label_source='dataset')."}
    )
    image_size: Optional[int] = field(
        default=None, metadata={"help": "Resize images to this height/width. Default: keep the dataset's size."}
    )
    channels: Optional[int] = field(
        default=None, metadata={"help": "Convert images to 1 (grayscale) or 3 (RGB) channels. Default: as stored."}
    )
    image_mean: Optional[list[float]] = field(
        default=None, metadata={"help": "Per-channel normalisation mean (default: digits statistics for the "
                                "embedded digits, 0.5 otherwise)."}
    )
    image_std: Optional[list[float]] = field(
        default=None, metadata={"help": "Per-channel normalisation std (default: as image_mean)."}
    )
    max_train_samples: Optional[int] = field(
        default=None, metadata={"help": "Keep only the first N training rows (debugging, quick runs)."}
    )
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Keep only the first N evaluation rows."})
    record_shard_indices: bool = field(
        default=False,
        metadata={"help": "Write the training row indices each process received to "
                  "output_dir/shard_indices/rank<N>.json (checks data-parallel sharding)."},
    )

    def __post_init__(self) -> None:
        if self.eval_split == "":
            self.eval_split = None
        if self.channels is not None and self.channels not in (1, 3):
            raise ValueError(f"channels: got {self.channels}; expected 1 or 3")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size: got {self.image_size}; expected a positive number of pixels")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: got {value}; expected a positive number of rows")


@dataclass
class ModelArguments:
    """The student (the teacher is ``GIFTConfig.teacher_model_name_or_path``)."""

    student_arch: str = field(
        default="gift_convnet_d3",
        metadata={"help": "timm architecture of a freshly initialised student (gift_convnet_d3, resnet18, ...)."},
    )
    student_model_name_or_path: Optional[str] = field(
        default=None, metadata={"help": "Start from a student saved with save_pretrained instead."}
    )
    student_model_kwargs: Optional[str] = field(
        default=None, metadata={"help": "Extra timm.create_model keyword arguments, as a JSON object."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train into an output_dir that already has files (refused otherwise, unless resuming)."},
    )

    def __post_init__(self) -> None:
        if isinstance(self.student_model_kwargs, str):
            try:
                self.student_model_kwargs = json.loads(self.student_model_kwargs)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"student_model_kwargs: got {self.student_model_kwargs!r}; expected a JSON object"
                ) from err
            if not isinstance(self.student_model_kwargs, dict):
                raise ValueError(f"student_model_kwargs: got {self.student_model_kwargs!r}; expected a JSON object")


# ----------------------------------------------------------------------------- output dir
def resolve_resume_checkpoint(resume_from_checkpoint: Optional[str], output_dir: str) -> Optional[str]:
    """``None``/``"false"`` → None; ``"last"``/``"true"`` → the last *complete* checkpoint; else the path.

    Raises a ``FileNotFoundError`` naming the option when there is nothing to resume from.
    """
    if resume_from_checkpoint is None or str(resume_from_checkpoint).lower() in ("", "false", "no"):
        return None
    if str(resume_from_checkpoint).lower() in ("last", "true", "yes"):
        found = last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        if found is None:
            raise FileNotFoundError(
                f"resume_from_checkpoint: got {resume_from_checkpoint!r} but output_dir {output_dir!r} has no "
                "complete checkpoint-<step> folder; expected a checkpoint saved by a previous run"
            )
        return found
    if not os.path.isfile(os.path.join(resume_from_checkpoint, "trainer_state.json")):
        raise FileNotFoundError(
            f"resume_from_checkpoint: got {resume_from_checkpoint!r}; expected a checkpoint folder holding "
            "trainer_state.json (or 'last')"
        )
    return resume_from_checkpoint


def check_output_dir(output_dir: str, overwrite: bool, resume_from_checkpoint: Optional[str]) -> None:
    """Refuse to train into a non-empty ``output_dir`` unless overwriting or resuming.

    A second run into the same folder would silently mix its checkpoints and results with
    the first run's; this makes that an explicit choice.
    """
    if overwrite or resume_from_checkpoint is not None:
        return
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise FileExistsError(
            f"output_dir: {output_dir!r} exists and is not empty; expected a new or empty folder. Pass "
            "--overwrite_output_dir to train into it anyway, or --resume_from_checkpoint last to continue"
        )
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise FileExistsError(f"output_dir: {output_dir!r} exists and is a file; expected a folder")


# -------------------------------------------------------------------------------- data
def _check_columns(split_name: str, split: Dataset, args: DataArguments) -> None:
    columns = split.column_names
    if args.image_column not in columns and "pixel_values" not in columns:
        raise ValueError(
            f"image_column: column {args.image_column!r} is missing from split {split_name!r}; "
            f"expected one of its columns {columns} (or a 'pixel_values' column)"
        )
    if args.label_column not in columns:
        raise ValueError(
            f"label_column: column {args.label_column!r} is missing from split {split_name!r}; "
            f"expected one of its columns {columns}"
        )


def check_soft_label_columns(split: Dataset, args: DataArguments) -> None:
    """For ``soft_label_source='dataset'``: the dense column or its top-k pair must exist."""
    column = args.soft_label_column
    topk = (f"{column}_topk_values", f"{column}_topk_indices")
    if column not in split.column_names and not all(c in split.column_names for c in topk):
        raise ValueError(
            f"soft_label_column: column {column!r} (or its top-k pair {list(topk)}) is missing from split "
            f"{args.train_split!r}, which soft_label_source='dataset' reads; expected one of its columns "
            f"{split.column_names} (see gift_hf.relabel to store soft labels)"
        )


def _load_split(args: DataArguments, option: str, split_name: str) -> Dataset:
    """One split of ``args.dataset_name``, with datasets' errors restated for the option."""
    import datasets

    try:
        split = datasets.load_dataset(
            args.dataset_name, args.dataset_config_name, split=split_name, revision=args.dataset_revision
        )
    except ValueError as err:
        message = str(err)
        if "corresponds to no data" in message:  # an empty parquet shard
            raise ValueError(
                f"{option}: split {split_name!r} of {args.dataset_name!r} is empty (0 rows); "
                "expected at least one example"
            ) from err
        if "Unknown split" in message:
            raise ValueError(f"{option}: split {split_name!r} not found in {args.dataset_name!r}; {message}") from err
        raise
    if not isinstance(split, Dataset):
        raise ValueError(f"{option}: {split_name!r} of {args.dataset_name!r} did not load as one split")
    return split


def load_image_dataset(args: DataArguments) -> DatasetDict:
    """Load the train (and eval) split, checked: splits exist, are non-empty, have the columns.

    Returns a ``DatasetDict`` with keys ``"train"`` and, when ``eval_split`` is set, ``"eval"``.
    """
    digits = load_digits_dataset() if args.dataset_name is None else None
    wanted = {"train": args.train_split}
    if args.eval_split is not None:
        wanted["eval"] = args.eval_split
    out = DatasetDict()
    for key, split_name in wanted.items():
        option = f"{key}_split"
        if digits is not None:
            if split_name not in digits:
                raise ValueError(f"{option}: split {split_name!r} not found; expected one of {sorted(digits)}")
            split = digits[split_name]
        else:
            split = _load_split(args, option, split_name)
        if len(split) == 0:
            raise ValueError(f"{option}: split {split_name!r} is empty (0 rows); expected at least one example")
        _check_columns(split_name, split, args)
        limit = args.max_train_samples if key == "train" else args.max_eval_samples
        if limit is not None and limit < len(split):
            split = split.select(range(limit))
        if key == "train" and args.record_shard_indices:
            split = split.add_column(ROW_INDEX_COLUMN, list(range(len(split))))
        out[key] = split
    return out


def label_names(split: Dataset, label_column: str) -> list[str]:
    """Class names from a ``ClassLabel`` column, else ``"0"…"C-1"`` from the largest label."""
    feature = split.features[label_column]
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    labels = split[label_column]
    if not labels:
        raise ValueError(f"label_column: column {label_column!r} has no labels")
    bad = [x for x in labels if not isinstance(x, int) or x < 0]
    if bad:
        raise ValueError(f"label_column: got label {bad[0]!r}; expected non-negative integer class ids")
    return [str(i) for i in range(max(labels) + 1)]


def infer_channels_and_size(split: Dataset, args: DataArguments) -> tuple[int, int]:
    """``(channels, size)`` the transform produces: the options, or read off the first image."""
    channels, size = args.channels, args.image_size
    if channels is not None and size is not None:
        return channels, size
    first = split[0]
    if args.image_column in first:
        image = first[args.image_column]
        channels = channels or (1 if image.mode in ("L", "1", "I", "F") else 3)
        width, height = image.size
        if size is None and width != height:
            raise ValueError(f"image_size: images are {width}×{height}; pass --image_size to make them square")
        size = size or width
    else:
        pixels = torch.as_tensor(first["pixel_values"])
        channels = channels or int(pixels.shape[0])
        size = size or int(pixels.shape[-1])
    return channels, size


def build_image_transform(args: DataArguments, channels: int) -> ImageTransform:
    """The ``set_transform`` that turns the image column into normalised ``pixel_values``."""
    digits = args.dataset_name is None
    mean = tuple(args.image_mean) if args.image_mean is not None else (DIGITS_MEAN if digits else (0.5,))
    std = tuple(args.image_std) if args.image_std is not None else (DIGITS_STD if digits else (0.5,))
    return ImageTransform(
        image_size=args.image_size, channels=channels, mean=mean, std=std, image_column=args.image_column
    )


def check_model_input(model: torch.nn.Module, role: str, channels: int, size: int, num_classes: int) -> None:
    """Refuse a student/teacher whose input or class count does not match the data."""
    config = getattr(model, "config", None)
    num_labels = getattr(config, "num_labels", None)
    if num_labels is not None and num_labels != num_classes:
        raise ValueError(
            f"{role}: the model predicts {num_labels} classes but the data has {num_classes}; expected equal"
        )
    in_chans = getattr(config, "in_chans", None) or getattr(config, "num_channels", None)
    if in_chans is not None and in_chans != channels:
        raise ValueError(
            f"{role}: the model takes {in_chans}-channel images but the data gives {channels}; "
            "set --channels or use a matching model"
        )
    img_size = getattr(config, "img_size", None)
    arch = getattr(config, "arch", "")
    if img_size is not None and arch.startswith("gift_") and img_size != size:
        raise ValueError(
            f"{role}: the model takes {img_size}×{img_size} images but the data gives {size}×{size}; "
            "set --image_size or use a matching model"
        )


# ---------------------------------------------------------------------------- sharding
@dataclass
class ShardRecordingCollator:
    """Wrap a collator; remember the ``ROW_INDEX_COLUMN`` of every row this process collates.

    Collation happens in the process that trains on the batch (with
    ``dataloader_num_workers=0``), so ``indices`` is exactly this rank's shard.
    """

    collator: Any
    indices: list[int] = field(default_factory=list)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if rows and ROW_INDEX_COLUMN in rows[0]:
            self.indices.extend(int(r[ROW_INDEX_COLUMN]) for r in rows)
        return self.collator(rows)

    def dump(self, output_dir: str, process_index: int) -> str:
        """Write ``output_dir/shard_indices/rank<N>.json`` atomically; return its path."""
        folder = os.path.join(output_dir, "shard_indices")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"rank{process_index}.json")
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.indices, f)
        os.replace(tmp, path)
        return path


def default_collator(args: DataArguments, num_classes: int, record: bool = False) -> Any:
    """The ``SoftLabelCollator`` for these columns, wrapped to record shards if asked."""
    collator = SoftLabelCollator(
        label_column=args.label_column, soft_label_column=args.soft_label_column, num_classes=num_classes
    )
    return ShardRecordingCollator(collator) if record else collator
