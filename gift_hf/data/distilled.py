"""Distilled datasets as Hub datasets: schema, validation, card, save/load/push.

A distilled dataset is a ``datasets.Dataset`` (saved as split ``train``) or
``DatasetDict`` with

- ``image`` (``Image``) — or ``pixel_values`` (``Array3D`` float) for synthetic images that
  are not representable as 8-bit (normalised or ZCA data);
- ``label``: a ``ClassLabel`` with class names;
- optionally soft labels: dense ``soft_label`` (float16/float32, width C), or sparse top-k
  ``soft_label_topk_values`` (float) + ``soft_label_topk_indices`` (int, in ``[0, C)``).

On disk it is the Hub's layout, so ``datasets.load_dataset(dir_or_repo)`` reads it::

    README.md                              # dataset card: YAML (configs, dataset_info, gift_hf, …) + body
    data/train-00000-of-00001.parquet      # one or more shards per split

Its provenance (:class:`DistilledInfo`) lives under the card's ``gift_hf`` YAML key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import re
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Union

import numpy as np

from datasets import (
    Array3D,
    ClassLabel,
    Dataset,
    DatasetDict,
    DatasetInfo,
    Features,
    Image,
    LargeList,
    List,
    SplitDict,
    SplitInfo,
    Value,
)

__all__ = [
    "CARD_KEY",
    "DistilledInfo",
    "SOFT_LABEL_COLUMN",
    "TOPK_INDICES_COLUMN",
    "TOPK_VALUES_COLUMN",
    "card_license",
    "check_local_path",
    "distilled_card_info",
    "load_distilled",
    "push_distilled",
    "quiet_datasets",
    "read_distilled_info",
    "recover_leftovers",
    "render_card",
    "resolve_soft_label_kind",
    "save_distilled",
    "soft_label_columns",
    "stored_soft_label_kind",
    "validate_distilled",
]

# Column names of the schema (the collator, `SoftLabelCollator`, reads the same names).
IMAGE_COLUMN = "image"
PIXEL_COLUMN = "pixel_values"
LABEL_COLUMN = "label"
SOFT_LABEL_COLUMN = "soft_label"
TOPK_VALUES_COLUMN = f"{SOFT_LABEL_COLUMN}_topk_values"
TOPK_INDICES_COLUMN = f"{SOFT_LABEL_COLUMN}_topk_indices"
# YAML key of the card that holds the DistilledInfo mapping.
CARD_KEY = "gift_hf"
SOFT_LABEL_KINDS = ("logits", "probabilities")
DEFAULT_TAGS = ("dataset-distillation", "soft-labels", "gift_hf")

DatasetLike = Union[Dataset, DatasetDict]


# --------------------------------------------------------------------------- metadata
@dataclass
class DistilledInfo:
    """Provenance of a distilled dataset, stored under ``gift_hf:`` in its card's YAML.

    Args:
        source_dataset: the real dataset it was distilled from (Hub id or name).
        method: how the images were made/chosen (``random``, ``difficulty``, ``sre2l``, …).
        ipc: images per class.
        num_classes: number of classes (filled from the ``label`` column when saved).
        teacher_id: the teacher that made the soft labels (Hub id or path; a list for an
            ensemble whose logits were averaged).
        teacher_checkpoint: which training checkpoint(s) of the teacher (e.g. ``checkpoint-40``).
        teacher_epoch: the teacher's training epoch at that checkpoint ("expert epoch").
        teacher_architecture: the teacher's architecture (e.g. ``gift_convnet_d3``).
        soft_label_kind: ``logits`` or ``probabilities`` (``softmax(logits / T)``); None when
            the dataset has no soft labels.
        temperature: the softmax temperature of probability soft labels.
        topk: k of sparse top-k soft labels (``soft_label_topk_*`` columns).
        image_mean, image_std: per-channel normalisation (of the teacher for ``image``
            columns; already applied for ``pixel_values`` columns).
        image_size: ``[height, width]`` of the images.
        seed: the seed of a random selection.
        library_version: the gift_hf version that wrote the dataset.
        extra: any further free-form metadata (and keys written by newer versions).
    """

    source_dataset: str | None = None
    method: str | None = None
    ipc: int | None = None
    num_classes: int | None = None
    teacher_id: str | list[str] | None = None
    teacher_checkpoint: str | list[str] | None = None
    teacher_epoch: float | None = None
    teacher_architecture: str | None = None
    soft_label_kind: str | None = None
    temperature: float | None = None
    topk: int | None = None
    image_mean: list[float] | None = None
    image_std: list[float] | None = None
    image_size: list[int] | None = None
    seed: int | None = None
    library_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.library_version is None:
            from gift_hf import __version__

            self.library_version = __version__
        if self.soft_label_kind is not None and self.soft_label_kind not in SOFT_LABEL_KINDS:
            raise ValueError(f"DistilledInfo.soft_label_kind: got {self.soft_label_kind!r}; expected one of "
                             f"{SOFT_LABEL_KINDS} or None")
        for name in ("ipc", "num_classes", "topk"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"DistilledInfo.{name}: got {value!r}; expected a positive integer or None")
        if self.temperature is not None and (isinstance(self.temperature, bool) or not isinstance(
                self.temperature, (int, float)) or not (math.isfinite(self.temperature) and self.temperature > 0)):
            raise ValueError(f"DistilledInfo.temperature: got {self.temperature!r}; expected a positive number")
        for name in ("image_mean", "image_std", "image_size"):
            value = getattr(self, name)
            if value is not None:
                try:
                    setattr(self, name, [int(v) if name == "image_size" else float(v) for v in value])
                except (TypeError, ValueError):
                    raise ValueError(f"DistilledInfo.{name}: got {value!r}; expected a list of numbers") from None
        if self.image_size is not None and len(self.image_size) != 2:
            raise ValueError(f"DistilledInfo.image_size: got {self.image_size}; expected [height, width]")
        if self.image_mean is not None and self.image_std is not None and len(self.image_mean) != len(self.image_std):
            raise ValueError(f"DistilledInfo.image_mean has {len(self.image_mean)} values but image_std has "
                             f"{len(self.image_std)}; expected one per channel in both")
        if self.teacher_epoch is not None:
            if isinstance(self.teacher_epoch, bool) or not isinstance(self.teacher_epoch, (int, float)):
                raise ValueError(f"DistilledInfo.teacher_epoch: got {self.teacher_epoch!r}; expected a number")
            self.teacher_epoch = float(self.teacher_epoch)
        if not isinstance(self.extra, dict):
            raise ValueError(f"DistilledInfo.extra: got {type(self.extra).__name__}; expected a mapping")

    def to_dict(self) -> dict[str, Any]:
        """The YAML mapping (fields that are None or empty are left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and v != {}}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "DistilledInfo":
        """Inverse of :meth:`to_dict`; unknown keys (from newer versions) go to ``extra``."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError(f"card key {CARD_KEY!r}: got {type(data).__name__}; expected a mapping of DistilledInfo "
                             "fields")
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        unknown = {k: v for k, v in data.items() if k not in names}
        if unknown:
            known["extra"] = {**dict(known.get("extra") or {}), **unknown}
        return cls(**known)

    def replace(self, **changes: Any) -> "DistilledInfo":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def training_kwargs(self) -> dict[str, Any]:
        """``GIFTConfig`` keyword arguments to train from the stored soft labels."""
        if self.soft_label_kind is None:
            return {"soft_label_source": "teacher"}
        return {"soft_label_source": "dataset", "soft_label_kind": self.soft_label_kind}


# --------------------------------------------------------------------------- validation
def soft_label_columns(features: Features) -> str | None:
    """``"dense"``, ``"topk"`` or None: which soft-label columns ``features`` has."""
    if SOFT_LABEL_COLUMN in features:
        return "dense"
    if TOPK_VALUES_COLUMN in features or TOPK_INDICES_COLUMN in features:
        return "topk"
    return None


def _as_splits(dataset: DatasetLike) -> dict[str, Dataset]:
    # with_format(None) drops any set_transform: we validate and write the stored data.
    if isinstance(dataset, DatasetDict):
        return {name: ds.with_format(None) for name, ds in dataset.items()}
    if isinstance(dataset, Dataset):
        return {"train": dataset.with_format(None)}
    raise TypeError(f"expected a datasets.Dataset or DatasetDict, got {type(dataset).__name__}")


def _list_width(feature: Any) -> tuple[Any, int | None] | None:
    """(item feature, fixed length or None) of a list-like feature, else None."""
    if isinstance(feature, (List, LargeList)):
        return feature.feature, getattr(feature, "length", -1) if getattr(feature, "length", -1) != -1 else None
    return None


def _column_matrix(ds: Dataset, column: str, split: str) -> np.ndarray:
    """A list column as a 2-D numpy array (rows of equal width), read straight from Arrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    array = ds.select_columns([column]).with_format("arrow")[:][column].combine_chunks()
    if array.null_count:
        row = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"column {column!r} (split {split!r}), row {row}: is missing (null); expected a value")
    if isinstance(array.type, pa.FixedSizeListType):
        width = array.type.list_size
    else:
        lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
        width = int(lengths[0]) if len(lengths) else 0
        if len(lengths) and (lengths != width).any():
            row = int(np.flatnonzero(lengths != width)[0])
            raise ValueError(f"column {column!r} (split {split!r}), row {row}: has width {int(lengths[row])} but "
                             f"row 0 has {width}; expected every row to have the same width")
    values = array.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(array), width)


def _check_finite(matrix: np.ndarray, column: str, split: str) -> None:
    finite = np.isfinite(matrix)
    if not finite.all():
        row, col = (int(i[0]) for i in np.nonzero(~finite))
        raise ValueError(f"column {column!r} (split {split!r}), row {row}: entry {col} is {matrix[row, col]}; "
                         "expected finite values (no NaN/inf)")


def _stored_images(ds: Dataset) -> Iterator[tuple[int, dict | None]]:
    """(row, {"bytes", "path"}) of every stored image, read in chunks: a large set's encoded
    images need not all sit in memory at once."""
    column = ds.select_columns([IMAGE_COLUMN]).with_format("arrow")
    for start in range(0, len(ds), 1024):
        for i, item in enumerate(column[start:start + 1024][IMAGE_COLUMN].to_pylist()):
            yield start + i, item


def _common_image_size(ds: Dataset) -> list[int] | None:
    """[height, width] when every image has that size (read from the headers), else None."""
    from PIL import Image as PILImage

    sizes = set()
    for _, item in _stored_images(ds):
        try:
            data = item["bytes"] if item["bytes"] is not None else Path(item["path"]).read_bytes()
            with PILImage.open(io.BytesIO(data)) as img:
                sizes.add((img.height, img.width))
        except Exception:  # an unreadable image records no size; validation reports it
            return None
        if len(sizes) > 1:
            return None
    return list(sizes.pop()) if sizes else None


def _check_images(ds: Dataset, split: str) -> None:
    """Decode every stored image so corrupt bytes fail here, naming the row."""
    from PIL import Image as PILImage

    for row, item in _stored_images(ds):
        if item is None:
            raise ValueError(f"column {IMAGE_COLUMN!r} (split {split!r}), row {row}: is missing (null); expected an "
                             "image")
        data, path = item.get("bytes"), item.get("path")
        try:
            if data is None:
                with open(path, "rb") as f:
                    data = f.read()
            with PILImage.open(io.BytesIO(data)) as img:
                img.load()
        except Exception as err:  # PIL raises many types for bad data
            where = f" (file {path!r})" if path else ""
            raise ValueError(f"column {IMAGE_COLUMN!r} (split {split!r}), row {row}{where}: cannot decode the "
                             f"image bytes ({type(err).__name__}: {err}); expected an encoded image "
                             "(PNG, JPEG, …)") from None


def _validate_split(ds: Dataset, split: str, info: DistilledInfo | None, check_images: bool) -> int:
    """Validate one split; returns its number of classes."""
    features = ds.features
    columns = sorted(features)
    if len(ds) == 0:
        raise ValueError(f"split {split!r} is empty (0 rows); expected at least one row")
    # ---- images
    if IMAGE_COLUMN in features:
        if not isinstance(features[IMAGE_COLUMN], Image):
            raise ValueError(f"column {IMAGE_COLUMN!r} (split {split!r}) has feature {features[IMAGE_COLUMN]}; "
                             "expected datasets.Image()")
        if check_images:
            _check_images(ds, split)
    elif PIXEL_COLUMN in features:
        feature = features[PIXEL_COLUMN]
        if not isinstance(feature, Array3D) or not np.issubdtype(np.dtype(feature.dtype), np.floating):
            raise ValueError(f"column {PIXEL_COLUMN!r} (split {split!r}) has feature {feature}; expected "
                             "Array3D(shape=(C, H, W), dtype='float32') (or float16/float64)")
        pixels = np.asarray(ds.select_columns([PIXEL_COLUMN]).with_format("numpy")[:][PIXEL_COLUMN])
        _check_finite(pixels.reshape(len(ds), -1), PIXEL_COLUMN, split)
    else:
        raise ValueError(f"split {split!r} has no image column: expected {IMAGE_COLUMN!r} (datasets.Image) or "
                         f"{PIXEL_COLUMN!r} (Array3D float); it has columns {columns}")
    # ---- hard labels
    if LABEL_COLUMN not in features:
        raise ValueError(f"split {split!r} has no {LABEL_COLUMN!r} column; it has columns {columns}; expected a "
                         "ClassLabel column of class ids")
    label_feature = features[LABEL_COLUMN]
    if not isinstance(label_feature, ClassLabel):
        raise ValueError(f"column {LABEL_COLUMN!r} (split {split!r}) has feature {label_feature}; expected a "
                         "ClassLabel with class names (ds.cast_column('label', ClassLabel(names=[...])))")
    num_classes = label_feature.num_classes
    labels = np.asarray(ds.select_columns([LABEL_COLUMN]).with_format("numpy")[:][LABEL_COLUMN])
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"column {LABEL_COLUMN!r} (split {split!r}), row {row}: class id {int(labels[row])} is "
                         f"out of range; expected an id in [0, {num_classes - 1}]")
    # ---- soft labels
    kind = soft_label_columns(features)
    if kind is not None and SOFT_LABEL_COLUMN in features and (
        TOPK_VALUES_COLUMN in features or TOPK_INDICES_COLUMN in features
    ):
        raise ValueError(f"split {split!r} has both dense {SOFT_LABEL_COLUMN!r} and top-k soft-label columns; "
                         "expected one of the two")
    if kind is not None and info is not None and info.soft_label_kind is None:
        raise ValueError(f"split {split!r} has soft labels but DistilledInfo.soft_label_kind is None; expected "
                         f"one of {SOFT_LABEL_KINDS}")
    probabilities = info is not None and info.soft_label_kind == "probabilities"
    if kind == "dense":
        item = _list_width(features[SOFT_LABEL_COLUMN])
        if item is None or not isinstance(item[0], Value) or item[0].dtype not in ("float16", "float32", "float64"):
            raise ValueError(f"column {SOFT_LABEL_COLUMN!r} (split {split!r}) has feature "
                             f"{features[SOFT_LABEL_COLUMN]}; expected List(Value('float16'|'float32'), "
                             f"length={num_classes})")
        soft = _column_matrix(ds, SOFT_LABEL_COLUMN, split)
        if soft.shape[1] != num_classes:
            raise ValueError(f"column {SOFT_LABEL_COLUMN!r} (split {split!r}) has width {soft.shape[1]}; expected "
                             f"{num_classes}, the number of classes of {LABEL_COLUMN!r}")
        _check_finite(soft, SOFT_LABEL_COLUMN, split)
        if probabilities and (soft < 0).any():
            row = int(np.flatnonzero((soft < 0).any(1))[0])
            raise ValueError(f"column {SOFT_LABEL_COLUMN!r} (split {split!r}), row {row}: has negative entries but "
                             "soft_label_kind is 'probabilities'; expected values >= 0")
    elif kind == "topk":
        for column, other in ((TOPK_VALUES_COLUMN, TOPK_INDICES_COLUMN), (TOPK_INDICES_COLUMN, TOPK_VALUES_COLUMN)):
            if column not in features:
                raise ValueError(f"split {split!r} has {other!r} but no {column!r} column; expected both top-k columns")
        value_item = _list_width(features[TOPK_VALUES_COLUMN])
        index_item = _list_width(features[TOPK_INDICES_COLUMN])
        if value_item is None or not isinstance(value_item[0], Value) or not value_item[0].dtype.startswith("float"):
            raise ValueError(f"column {TOPK_VALUES_COLUMN!r} (split {split!r}) has feature "
                             f"{features[TOPK_VALUES_COLUMN]}; expected List(Value('float16'|'float32'), length=k)")
        if index_item is None or not isinstance(index_item[0], Value) or "int" not in index_item[0].dtype:
            raise ValueError(f"column {TOPK_INDICES_COLUMN!r} (split {split!r}) has feature "
                             f"{features[TOPK_INDICES_COLUMN]}; expected List(Value('int16'|'int32'), length=k)")
        values = _column_matrix(ds, TOPK_VALUES_COLUMN, split)
        indices = _column_matrix(ds, TOPK_INDICES_COLUMN, split)
        if values.shape != indices.shape:
            raise ValueError(f"column {TOPK_VALUES_COLUMN!r} has width {values.shape[1]} but "
                             f"{TOPK_INDICES_COLUMN!r} has {indices.shape[1]} (split {split!r}); expected equal k")
        k = values.shape[1]
        if not 1 <= k <= num_classes:
            raise ValueError(f"column {TOPK_VALUES_COLUMN!r} (split {split!r}) has k={k}; expected 1 <= k <= "
                             f"{num_classes} (the number of classes)")
        if info is not None and info.topk is not None and info.topk != k:
            raise ValueError(f"DistilledInfo.topk is {info.topk} but column {TOPK_VALUES_COLUMN!r} (split "
                             f"{split!r}) has k={k}; expected them to agree")
        _check_finite(values, TOPK_VALUES_COLUMN, split)
        bad = (indices < 0) | (indices >= num_classes)
        if bad.any():
            row = int(np.flatnonzero(bad.any(1))[0])
            raise ValueError(f"column {TOPK_INDICES_COLUMN!r} (split {split!r}), row {row}: has class index "
                             f"{int(indices[row][bad[row]][0])}; expected indices in [0, {num_classes - 1}]")
        sorted_rows = np.sort(indices, axis=1)
        dup = (sorted_rows[:, 1:] == sorted_rows[:, :-1]).any(1) if k > 1 else np.zeros(len(indices), bool)
        if dup.any():
            row = int(np.flatnonzero(dup)[0])
            raise ValueError(f"column {TOPK_INDICES_COLUMN!r} (split {split!r}), row {row}: repeats a class index "
                             f"({indices[row].tolist()}); expected k distinct classes")
        if probabilities and (values < 0).any():
            row = int(np.flatnonzero((values < 0).any(1))[0])
            raise ValueError(f"column {TOPK_VALUES_COLUMN!r} (split {split!r}), row {row}: has negative entries "
                             "but soft_label_kind is 'probabilities'; expected values >= 0")
    if info is not None and info.num_classes is not None and info.num_classes != num_classes:
        raise ValueError(f"DistilledInfo.num_classes is {info.num_classes} but column {LABEL_COLUMN!r} (split "
                         f"{split!r}) has {num_classes} classes; expected them to agree")
    return num_classes


def validate_distilled(
    dataset: DatasetLike, info: DistilledInfo | None = None, *, check_images: bool = True
) -> None:
    """Raise a ``ValueError`` naming the split, column, value and expectation on any schema problem.

    Checks: an ``image`` (``Image``) or float ``pixel_values`` (``Array3D``) column; a
    ``ClassLabel`` ``label`` with ids in range; soft labels of width C (dense) or k ≤ C
    distinct in-range indices (top-k), finite, non-negative for probabilities; the same
    features in every split; agreement with ``info``. ``check_images`` decodes every image.
    """
    splits = _as_splits(dataset)
    if not splits:
        raise ValueError("the DatasetDict has no splits; expected at least one (e.g. 'train')")
    first_split, first = next(iter(splits.items()))
    for split, ds in splits.items():
        if not re.fullmatch(r"\w+(\.\w+)*", split) or "-" in split:
            raise ValueError(f"split name {split!r} is not valid; expected letters, digits, '_' or '.' (the shard "
                             "file names use '-')")
        if ds.features != first.features:
            raise ValueError(f"split {split!r} has features {ds.features} but split {first_split!r} has "
                             f"{first.features}; expected the same features in every split")
        _validate_split(ds, split, info, check_images)


def _complete_info(splits: dict[str, Dataset], info: DistilledInfo | None) -> DistilledInfo:
    """Fill the fields that can be read off the data (num_classes, image_size, topk)."""
    info = info if info is not None else DistilledInfo()
    first = next(iter(splits.values()))
    changes: dict[str, Any] = {}
    if info.num_classes is None:
        changes["num_classes"] = first.features[LABEL_COLUMN].num_classes
    if info.image_size is None:
        if PIXEL_COLUMN in first.features:
            changes["image_size"] = list(first.features[PIXEL_COLUMN].shape[1:])
        elif IMAGE_COLUMN in first.features and len(first):
            size = _common_image_size(first)  # a set of mixed sizes records none
            if size is not None:
                changes["image_size"] = size
    if info.topk is None and TOPK_VALUES_COLUMN in first.features:
        changes["topk"] = int(_column_matrix(first.select([0]), TOPK_VALUES_COLUMN, "train").shape[1])
    return info.replace(**changes) if changes else info


# --------------------------------------------------------------------------- card
def _nbytes(ds: Dataset) -> int:
    """Arrow bytes of the rows ``ds`` selects (its table may hold more rows behind an index)."""
    rows = ds.data.num_rows
    return int(ds.data.nbytes * len(ds) / rows) if rows else 0


def _size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < bound:
            return name
    return "1M<n<10M"


def _describe(info: DistilledInfo, splits: dict[str, Dataset]) -> list[str]:
    rows = {name: len(ds) for name, ds in splits.items()}
    lines = [f"- **Source dataset:** {info.source_dataset or 'not recorded'}",
             f"- **Method:** {info.method or 'not recorded'}",
             f"- **Images per class (IPC):** {info.ipc if info.ipc is not None else 'not recorded'}",
             f"- **Classes:** {info.num_classes}",
             "- **Rows:** " + ", ".join(f"{k}: {v}" for k, v in rows.items())]
    if info.image_size:
        lines.append(f"- **Image size:** {info.image_size[0]}×{info.image_size[1]}")
    first = next(iter(splits.values()))
    if PIXEL_COLUMN in first.features:
        lines.append("- **Images:** float `pixel_values` (already normalised"
                     + (f" with mean {info.image_mean}, std {info.image_std}" if info.image_mean else "") + ")")
    kind = soft_label_columns(first.features)
    if kind is None:
        lines.append("- **Soft labels:** none stored (hard labels only; train with a teacher online)")
    else:
        what = info.soft_label_kind
        if what == "probabilities":
            what = f"probabilities softmax(logits / T) with T = {info.temperature if info.temperature else 1}"
        storage = "dense `soft_label`" if kind == "dense" else f"sparse top-{info.topk} `soft_label_topk_*`"
        lines.append(f"- **Soft labels:** {what}, stored as {storage}")
        teacher = info.teacher_id if not isinstance(info.teacher_id, list) else f"ensemble of {info.teacher_id}"
        lines.append(f"- **Teacher:** {teacher or 'not recorded'}"
                     + (f" ({info.teacher_architecture})" if info.teacher_architecture else "")
                     + (f", checkpoint `{info.teacher_checkpoint}`" if info.teacher_checkpoint else "")
                     + (f", expert epoch {info.teacher_epoch:g}" if info.teacher_epoch is not None else ""))
    return lines


def _channels(ds: Dataset) -> int:
    """Channels of the stored images (1 for grayscale, else 3 as ImageTransform converts)."""
    if PIXEL_COLUMN in ds.features:
        return int(ds.features[PIXEL_COLUMN].shape[0])
    return 1 if ds[0][IMAGE_COLUMN].mode in ("L", "I", "I;16", "F", "1") else 3


def _training_snippet(info: DistilledInfo, ds: Dataset, repo: str) -> str:
    channels, size = _channels(ds), (info.image_size[0] if info.image_size else 32)
    norm = (f", image_mean={list(info.image_mean)}, image_std={list(info.image_std)}"
            if info.image_mean and info.image_std else "")
    kwargs = info.training_kwargs()
    config_args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    stored = kwargs["soft_label_source"] == "dataset"
    teacher = "" if stored else ', teacher_model_name_or_path="<teacher>"'
    labels = (f"--soft_label_source dataset --soft_label_kind {kwargs['soft_label_kind']} --student_arch gift_convnet_d3"
              if stored else "--teacher_model_name_or_path <teacher>")
    return (
        "Score it the GIFT paper's way (3 students, 1000 epochs, mean ± std on the real test split of"
        " `--dataset_name`, here the source dataset):\n\n"
        "```bash\n"
        f"gift-hf evaluate --distilled {repo} --dataset_name <source dataset> {labels}\n"
        "```\n\n"
        "or train one student in Python (GIFTConfig's defaults are the GIFT paper's protocol: AdamW, learning rate"
        " 1e-3, weight decay 1e-4, ×0.2 at 2/3 and 5/6 of training, no gradient clipping):\n\n"
        "```python\n"
        "from gift_hf import GIFTConfig, GIFTTrainer, create_model, image_transform_for, load_distilled\n\n"
        f'ds, info = load_distilled("{repo}")\n'
        "# the input is stated once, here; the saved student carries it (config.json)\n"
        f'model = create_model("gift_convnet_d3", num_classes=info.num_classes, in_chans={channels}, '
        f"img_size={size}{norm})\n"
        'train = ds["train"].with_transform(image_transform_for(model))\n'
        f'args = GIFTConfig(output_dir="student", loss="gift", num_train_epochs=1000, {config_args}{teacher})\n'
        "GIFTTrainer(model=model, args=args, train_dataset=train).train()\n"
        "```"
    )


def _source_license(splits: dict[str, Dataset], info: DistilledInfo) -> str:
    """The source dataset's license: its ``DatasetInfo.license``, else its card's, else ``unknown``."""
    for ds in splits.values():
        if ds.info.license:
            return ds.info.license
    source = info.source_dataset
    if source and (os.path.isdir(source) or re.fullmatch(r"[\w.-]+/[\w.-]+", source)):
        from huggingface_hub.errors import HfHubHTTPError

        try:
            return card_license(source) or "unknown"
        except (OSError, ValueError, HfHubHTTPError):  # no card, offline, private, …
            return "unknown"
    return "unknown"


def render_card(
    dataset: DatasetLike,
    info: DistilledInfo,
    *,
    repo_id: str | None = None,
    license: str | None = None,
    tags: list[str] | None = None,
    shard_counts: dict[str, int] | None = None,
    shard_bytes: dict[str, int] | None = None,
) -> str:
    """The dataset card (``README.md``): YAML metadata the Hub and ``datasets`` read, then a body.

    ``license`` defaults to the source's (:func:`_source_license`): the images' license
    travels with any subset of them.
    """
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard, DatasetCardData

    splits = _as_splits(dataset)
    first = next(iter(splits.values()))
    split_dict = SplitDict()
    for name, ds in splits.items():
        split_dict.add(SplitInfo(name=name, num_bytes=_nbytes(ds), num_examples=len(ds)))
    download_size = sum((shard_bytes or {}).values())
    dataset_size = sum(_nbytes(ds) for ds in splits.values())
    ds_info = DatasetInfo(features=first.features, splits=split_dict, download_size=download_size,
                          dataset_size=dataset_size)
    card_data = DatasetCardData(
        license=license or _source_license(splits, info),
        task_categories=["image-classification"],
        size_categories=[_size_category(sum(len(ds) for ds in splits.values()))],
        tags=sorted({*DEFAULT_TAGS, *(tags or []), *([info.method] if info.method else [])}),
        pretty_name=(f"{info.source_dataset} distilled ({info.method}, IPC {info.ipc})" if info.source_dataset
                     else None),
        # The Hub's data-files configuration: every split's shards under data/.
        configs=[{"config_name": "default",
                  "data_files": [{"split": name, "path": f"data/{name}-*"} for name in splits]}],
    )
    DatasetInfosDict({"default": ds_info}).to_dataset_card_data(card_data)
    setattr(card_data, CARD_KEY, info.to_dict())
    title = card_data.pretty_name or (repo_id or "Distilled dataset")
    repo = repo_id or "<repo_id or local directory>"
    body = "\n".join([
        f"# {title}",
        "",
        "A distilled image-classification dataset in the Hugging Face Hub layout, written by "
        "gift_hf (`save_distilled`). `datasets.load_dataset` reads it as is; "
        "`gift_hf.load_distilled` also returns its provenance (the `gift_hf` block of this card's metadata).",
        "",
        "## How it was made",
        "",
        *_describe(info, splits),
        "",
        "## Train on it with gift_hf",
        "",
        _training_snippet(info, first, repo),
        "",
        "## Columns",
        "",
        "| column | feature |",
        "| --- | --- |",
        *[f"| `{name}` | `{feature}` |" for name, feature in first.features.items()],
        "",
    ])
    return str(DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}"))


# --------------------------------------------------------------------------- save / load
@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Silence datasets' progress bars (parquet writing, map) inside library calls."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def _parse_size(value: int | str) -> int:
    """Bytes of a size given as an int or a string such as ``"500MB"`` or ``"1GiB"``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    if match is None or match.group(2).upper() not in _SIZE_UNITS or float(match.group(1)) <= 0:
        raise ValueError(f"max_shard_size: got {value!r}; expected a positive number of bytes or a size such as "
                         "'500MB' or '1GiB'")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


def _embed_images(ds: Dataset) -> Dataset:
    """Images given as file paths read into the rows, so a parquet shard is self-contained.

    As ``push_to_hub`` stores them: the file's bytes, and its base name as ``path``.
    """
    if IMAGE_COLUMN not in ds.features:
        return ds
    feature = ds.features[IMAGE_COLUMN]

    def embed(batch: dict[str, list]) -> dict[str, list]:
        items = []
        for item in batch[IMAGE_COLUMN]:
            if item is not None:
                data, path = item.get("bytes"), item.get("path")
                if data is None and path:
                    with open(path, "rb") as f:
                        data = f.read()
                item = {"bytes": data, "path": os.path.basename(path) if path else None}
            items.append(item)
        return {IMAGE_COLUMN: items}

    raw = ds.cast_column(IMAGE_COLUMN, Image(decode=False))
    return raw.map(embed, batched=True, keep_in_memory=True).cast_column(IMAGE_COLUMN, feature)


def _write_shards(ds: Dataset, data_dir: Path, split: str, max_shard_size: int | str, num_shards: int | None) -> int:
    """Write ``ds`` as ``data/<split>-0000i-of-0000n.parquet``; returns the bytes written.

    The file names are those ``DatasetDict.push_to_hub`` gives the same shards on the Hub.
    """
    if num_shards is None:
        num_shards = max(1, math.ceil(_nbytes(ds) / _parse_size(max_shard_size)))
    num_shards = min(num_shards, len(ds))
    written = 0
    for index in range(num_shards):
        shard = _embed_images(ds.shard(num_shards=num_shards, index=index, contiguous=True))
        path = data_dir / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
        shard.with_format(None).to_parquet(str(path))
        written += path.stat().st_size
    return written


def _written_by_gift_hf(path: Path) -> str | None:
    """None when ``path`` holds only what :func:`save_distilled` writes (a ``README.md`` card
    with a ``gift_hf`` block, ``data/*.parquet``); else the reason it does not."""
    from huggingface_hub import DatasetCard

    names = sorted(entry.name for entry in path.iterdir())
    foreign = [name for name in names if name not in ("README.md", "data")]
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        return f"it holds {foreign[0]!r}{more}, which save_distilled does not write"
    if "README.md" not in names or not (path / "README.md").is_file():
        return "it has no README.md dataset card"
    try:
        has_block = DatasetCard((path / "README.md").read_text(encoding="utf-8")).data.to_dict().get(CARD_KEY)
    except Exception:  # not a card at all
        has_block = None
    if not has_block:
        return f"its README.md has no {CARD_KEY!r} block"
    data = path / "data"
    if data.exists():
        if data.is_symlink() or not data.is_dir():
            return "its 'data' is not a folder"
        other = sorted(p.name for p in data.iterdir() if p.suffix != ".parquet" or not p.is_file() or p.is_symlink())
        if other:
            return f"data/ holds {other[0]!r}, which save_distilled does not write"
    return None


def _soft_names(features: Features) -> str:
    return ", ".join(repr(c) for c in (SOFT_LABEL_COLUMN, TOPK_VALUES_COLUMN, TOPK_INDICES_COLUMN) if c in features)


def _check_target(output_dir: Path, overwrite: bool) -> None:
    """Refuse an ``output_dir`` that is not new, empty or (with ``overwrite``) a gift_hf dataset."""
    if output_dir.is_symlink():
        raise FileExistsError(f"output_dir {str(output_dir)!r} is a symbolic link; expected a real directory path "
                              f"(pass the link's target {os.path.realpath(output_dir)!r} instead)")
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"output_dir {str(output_dir)!r} exists and is not a directory; expected a new "
                              "directory path")
    if not output_dir.is_dir() or not any(output_dir.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(f"output_dir {str(output_dir)!r} exists and is not empty; pass overwrite=True "
                              "(--overwrite) to replace the dataset it holds")
    reason = _written_by_gift_hf(output_dir)
    if reason is not None:
        raise FileExistsError(f"output_dir {str(output_dir)!r}: overwrite only replaces a dataset written by gift_hf "
                              f"(README.md with a {CARD_KEY!r} block + data/*.parquet), but {reason}; nothing was "
                              "changed. Choose a new or empty directory")


# Staging folders beside output_dir: ".<name>.tmp-<pid>-<hex>" (being written) and
# ".<name>.old-<pid>-<hex>" (the replaced dataset, while it is swapped out).
_STAGING = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}")


def _staging_path(output_dir: Path, kind: str) -> Path:
    return output_dir.parent / f".{output_dir.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill(pid, 0) would terminate the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or we cannot tell: leave its folders alone
    return True


def recover_leftovers(output_dir: str | os.PathLike) -> list[Path]:
    """Clean up after saves to ``output_dir`` that were killed, and return what was removed.

    A save stages into hidden sibling folders (``.NAME.tmp-<pid>-*``, ``.NAME.old-<pid>-*``).
    When their process is gone they are leftovers: if ``output_dir`` itself is missing (a kill
    between the two renames of a system without an atomic swap), the replaced dataset is
    moved back; every other leftover is deleted. Folders of live processes are never touched.
    :func:`save_distilled` and :func:`load_distilled` call this first.
    """
    output_dir = Path(output_dir).expanduser().absolute()
    parent = output_dir.parent
    if not parent.is_dir():
        return []
    stale = []
    for entry in parent.iterdir():
        match = _STAGING.fullmatch(entry.name)
        if match and match["name"] == output_dir.name and not _process_alive(int(match["pid"])):
            stale.append((match["kind"] != "old", entry))  # restore an "old" first, then delete
    removed = []
    for _, entry in sorted(stale):
        if entry.name.startswith(f".{output_dir.name}.old-") and not os.path.lexists(output_dir):
            try:
                os.rename(entry, output_dir)
                continue
            except OSError:
                pass
        shutil.rmtree(entry, ignore_errors=True)
        if not os.path.lexists(entry):
            removed.append(entry)
    return removed


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the system or file system cannot do it.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _atomic_replace(staged: Path, output_dir: Path) -> None:
    """Move ``staged`` to ``output_dir``, replacing it, so readers never see a half-written dataset.

    An existing ``output_dir`` is swapped with ``staged`` in one atomic step, so the path
    always holds the old or the new dataset, whenever the process is killed. Without an
    atomic swap it is renamed aside first; a kill between the two renames is undone by
    :func:`recover_leftovers` at the next save or load.
    """
    if not output_dir.exists() or (output_dir.is_dir() and not any(output_dir.iterdir())):
        os.replace(staged, output_dir)  # a new or empty directory
        return
    if _exchange(staged, output_dir):
        shutil.rmtree(staged, ignore_errors=True)  # now holds the old dataset
        return
    backup = _staging_path(output_dir, "old")
    os.replace(output_dir, backup)
    try:
        os.replace(staged, output_dir)
    except BaseException:
        os.replace(backup, output_dir)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def save_distilled(
    dataset: DatasetLike,
    output_dir: str | os.PathLike,
    info: DistilledInfo | None = None,
    *,
    overwrite: bool = False,
    license: str | None = None,
    tags: list[str] | None = None,
    repo_id: str | None = None,
    max_shard_size: int | str = "500MB",
    num_shards: dict[str, int] | None = None,
    check_images: bool = True,
) -> Path:
    """Write a distilled dataset in the Hub layout: ``data/*.parquet`` shards + ``README.md`` card.

    The dataset is validated first (:func:`validate_distilled`). A ``Dataset`` is saved as
    split ``train``. Fields of ``info`` that can be read off the data (``num_classes``,
    ``image_size``, ``topk``) are filled in. The write is atomic: everything goes to a
    hidden folder beside ``output_dir`` that is then swapped into place, so the path always
    holds a complete dataset; leftovers of killed saves are cleaned up (:func:`recover_leftovers`).
    ``overwrite`` replaces only a dataset written by gift_hf: a folder holding anything else
    is refused. Folders and files follow the user's umask.

    Args:
        dataset: a ``Dataset`` or ``DatasetDict`` following the schema (see module docs).
        output_dir: the directory to create; an existing non-empty one is refused unless
            ``overwrite=True`` and it holds a dataset written by gift_hf.
        info: provenance; recorded under ``gift_hf:`` in the card. Required with
            ``soft_label_kind`` set when the dataset has soft labels.
        license: the card's license id; default: the source dataset's (its ``DatasetInfo.license``
            or card), else ``unknown``.
        tags: extra card tags.
        repo_id: the Hub id, used in the card's code example.
        max_shard_size: shard size limit (bytes or a string such as ``"500MB"``).
        num_shards: per split, an exact number of shards (overrides ``max_shard_size``).
        check_images: decode every image to refuse corrupt bytes.

    Returns:
        ``output_dir`` as a ``Path``.
    """
    splits = _as_splits(dataset)
    first = next(iter(splits.values()), None)
    if first is not None and soft_label_columns(first.features) and (info is None or info.soft_label_kind is None):
        raise ValueError(f"info.soft_label_kind: the dataset has soft-label columns ({_soft_names(first.features)}) "
                         "but no kind was given; pass info=DistilledInfo(soft_label_kind='logits' or "
                         "'probabilities') saying what the stored values are, so training reads them correctly")
    validate_distilled(splits_dict := DatasetDict(splits), info, check_images=check_images)
    info = _complete_info(splits, info)
    output_dir = Path(output_dir).expanduser().absolute()
    recover_leftovers(output_dir)
    _check_target(output_dir, overwrite)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = _staging_path(output_dir, "tmp")
    os.mkdir(staged)  # mode 0o777 less the umask, like any folder the user makes (mkdtemp would give 0o700)
    try:
        (staged / "data").mkdir()
        shard_bytes: dict[str, int] = {}
        with quiet_datasets():
            for split, ds in splits.items():
                shard_bytes[split] = _write_shards(ds, staged / "data", split, max_shard_size,
                                                   (num_shards or {}).get(split))
        card = render_card(splits_dict, info, repo_id=repo_id, license=license, tags=tags, shard_bytes=shard_bytes)
        (staged / "README.md").write_text(card, encoding="utf-8")
        _check_target(output_dir, overwrite)  # something may have appeared meanwhile
        _atomic_replace(staged, output_dir)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return output_dir


def read_card_info(card_text: str) -> DistilledInfo:
    """The :class:`DistilledInfo` of a dataset card's text (empty if it has no ``gift_hf`` block)."""
    from huggingface_hub import DatasetCard

    try:
        card = DatasetCard(card_text)
    except Exception as err:
        raise ValueError(f"README.md: cannot parse the card's YAML metadata ({err}); expected a '---' YAML block "
                         "as written by save_distilled") from None
    try:
        return DistilledInfo.from_dict(card.data.to_dict().get(CARD_KEY))
    except (TypeError, ValueError) as err:
        raise ValueError(f"README.md: the card's {CARD_KEY!r} block is invalid: {err}") from None


def check_local_path(path: str | os.PathLike, what: str) -> str:
    """``path`` as a string, after refusing one that is clearly local but does not exist.

    A name that may be a Hub id (``name`` or ``namespace/name``) is let through; anything
    absolute, starting with ``.`` or ``~``, or with more than one ``/`` is a local path, and a
    missing one is a ``FileNotFoundError`` saying "not found" (never a Hub or network error).
    ``what`` names it in the message (``"teacher"``, ``"dataset"``, ``"student"``).
    """
    target = os.fspath(path)
    if os.path.lexists(target):
        return target
    local = (os.path.isabs(target) or target.startswith((".", "~")) or target.count("/") > 1
             or target.endswith("/") or (os.sep != "/" and os.sep in target))
    if local:
        raise FileNotFoundError(f"{what} {target!r} not found: no such local file or directory; expected an existing "
                                "local path (or a Hub id 'namespace/name')")
    return target


def _card_text(repo_id_or_dir: str | os.PathLike, revision: str | None = None, token: str | bool | None = None) -> str:
    target = check_local_path(repo_id_or_dir, "dataset")
    if os.path.isdir(target):
        readme = Path(target) / "README.md"
        if not readme.is_file():
            raise ValueError(f"{target!r} has no README.md; expected a directory written by save_distilled "
                             "(Hub layout: README.md + data/*.parquet)")
        return readme.read_text(encoding="utf-8")
    if os.path.lexists(target):
        raise ValueError(f"dataset {target!r} is a file; expected a directory written by save_distilled (README.md "
                         "+ data/*.parquet) or a Hub dataset id 'namespace/name'")
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(target, "README.md", repo_type="dataset", revision=revision, token=token)
    except Exception as err:  # offline, unknown repo, no access: all end here
        raise ValueError(f"dataset {target!r} not found: there is no local directory of that name, and the Hub "
                         f"dataset {target!r} could not be read ({type(err).__name__}); expected a local directory "
                         "written by save_distilled or an existing Hub dataset id") from None
    return Path(path).read_text(encoding="utf-8")


def read_distilled_info(
    repo_id_or_dir: str | os.PathLike, revision: str | None = None, token: str | bool | None = None
) -> DistilledInfo:
    """The :class:`DistilledInfo` of a distilled dataset's card, without loading its data."""
    return read_card_info(_card_text(repo_id_or_dir, revision, token))


def resolve_soft_label_kind(info: DistilledInfo, requested: str | None = None, *, source: str = "the dataset card"
                            ) -> str:
    """The kind of the stored soft labels to train with: ``requested`` checked against ``info``.

    ``requested`` None takes the card's ``soft_label_kind``; a kind that contradicts the card
    (probabilities trained as logits, or the reverse) is a ``ValueError``, never a silent choice.
    """
    if requested is not None and requested not in SOFT_LABEL_KINDS:
        raise ValueError(f"soft_label_kind: got {requested!r}; expected one of {SOFT_LABEL_KINDS}")
    stored = info.soft_label_kind
    if stored is None and requested is None:
        raise ValueError(f"soft_label_kind: {source} records no soft_label_kind; pass --soft_label_kind logits or "
                         "probabilities (what the stored soft labels are)")
    if stored is not None and requested is not None and requested != stored:
        detail = f" at temperature {info.temperature:g}" if stored == "probabilities" and info.temperature else ""
        raise ValueError(f"soft_label_kind: got {requested!r} but {source} says the stored soft labels are "
                         f"{stored!r}{detail}; drop --soft_label_kind to use the card's kind, or relabel the dataset "
                         f"as {requested}")
    return stored if stored is not None else requested


def distilled_card_info(
    dataset: str | os.PathLike | None, revision: str | None = None, token: str | bool | None = None
) -> DistilledInfo | None:
    """The :class:`DistilledInfo` of a gift_hf set's card; None for any other dataset (no card,
    a card without a ``gift_hf`` block, ``dataset`` None)."""
    from huggingface_hub import DatasetCard

    if dataset is None:
        return None
    target = os.fspath(dataset)
    if os.path.isdir(target) and not (Path(target) / "README.md").is_file():
        return None
    try:
        text = _card_text(target, revision, token)
    except ValueError:  # a Hub dataset without a readable card, or a data file: no gift_hf card
        return None
    try:
        block = DatasetCard(text).data.to_dict().get(CARD_KEY)
    except Exception:  # not a YAML card
        block = None
    return read_card_info(text) if block is not None else None


def stored_soft_label_kind(
    dataset: str | os.PathLike | None, requested: str | None = None, *, revision: str | None = None,
    token: str | bool | None = None,
) -> str:
    """The kind of the soft labels stored in ``dataset`` to train with.

    A gift_hf set (:func:`distilled_card_info`): the card's kind, checked against
    ``requested`` (:func:`resolve_soft_label_kind`: a contradiction is a ``ValueError``). Any
    other dataset: ``requested``, else ``"logits"``.
    """
    info = distilled_card_info(dataset, revision, token)
    if info is None:
        return requested or "logits"
    return resolve_soft_label_kind(info, requested, source=f"the dataset card of {os.fspath(dataset)!r}")


def card_license(repo_id_or_dir: str | os.PathLike, revision: str | None = None) -> str | None:
    """The ``license`` of a distilled dataset's card (None when it has none)."""
    from huggingface_hub import DatasetCard

    license = DatasetCard(_card_text(repo_id_or_dir, revision)).data.license
    return license if isinstance(license, str) else None


def _check_local_shards(path: Path) -> None:
    """Open every parquet footer so a corrupt shard is named before ``datasets`` tries to read it."""
    import pyarrow.parquet as pq

    shards = sorted((path / "data").glob("*.parquet")) if (path / "data").is_dir() else []
    if not shards:
        raise ValueError(f"{str(path)!r} has no data/*.parquet shards; expected a directory written by "
                         "save_distilled (Hub layout)")
    for shard in shards:
        try:
            pq.read_metadata(shard)
        except Exception as err:
            raise ValueError(f"shard {str(shard.relative_to(path))!r} of {str(path)!r} is not a readable parquet "
                             f"file ({type(err).__name__}: {err}); expected parquet written by save_distilled"
                             ) from None


def load_distilled(
    repo_id_or_dir: str | os.PathLike,
    revision: str | None = None,
    *,
    validate: bool = True,
    check_images: bool = True,
    token: str | bool | None = None,
    **load_kwargs: Any,
) -> tuple[DatasetDict, DistilledInfo]:
    """Load a distilled dataset (a Hub repo id or a local directory in Hub layout).

    Reads the data with ``datasets.load_dataset(repo_id_or_dir, revision=...)`` and the
    provenance from the ``gift_hf`` block of its card. ``load_kwargs`` go to
    ``load_dataset`` (e.g. ``cache_dir``).

    Returns:
        ``(dataset_dict, info)``. With ``validate`` the schema is checked as in
        :func:`validate_distilled`; with ``check_images`` too every image is decoded, so a
        corrupt one is named here rather than mid-training.

    A local path that does not exist is a ``FileNotFoundError`` ("not found"); leftovers of
    a killed save are recovered first (:func:`recover_leftovers`).
    """
    import datasets

    target = os.fspath(repo_id_or_dir)
    if not os.path.lexists(target):
        recover_leftovers(target)  # a save killed mid-swap may have left the dataset aside
    card_text = _card_text(target, revision, token)
    if os.path.isdir(target):
        _check_local_shards(Path(target))
    info = read_card_info(card_text)
    kwargs = dict(load_kwargs)
    if revision is not None:
        kwargs["revision"] = revision
    if token is not None:
        kwargs["token"] = token
    try:
        with quiet_datasets():
            dataset = datasets.load_dataset(target, **kwargs)
    except Exception as err:
        raise ValueError(f"datasets.load_dataset({target!r}) failed ({type(err).__name__}: {err}); expected a "
                         "distilled dataset in Hub layout (README.md + data/<split>-*.parquet)") from None
    if not isinstance(dataset, DatasetDict):
        dataset = DatasetDict({"train": dataset}) if isinstance(dataset, Dataset) else dataset
    if validate:
        first = next(iter(dataset.values()), None)
        if first is not None and soft_label_columns(first.features) and info.soft_label_kind is None:
            columns = _soft_names(first.features)
            raise ValueError(f"README.md of {target!r}: the data has soft-label columns ({columns}) "
                             f"but the card's {CARD_KEY!r} block records no soft_label_kind; add "
                             f"'soft_label_kind: logits' or 'soft_label_kind: probabilities' under '{CARD_KEY}:'")
        validate_distilled(dataset, info, check_images=check_images)
    return dataset, info


# --------------------------------------------------------------------------- publish
def push_distilled(
    dataset: DatasetLike | str | os.PathLike,
    repo_id: str,
    info: DistilledInfo | None = None,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
    license: str | None = None,
    tags: list[str] | None = None,
) -> Any:
    """Publish a distilled dataset to the Hub with ``DatasetDict.push_to_hub`` and its card with ``DatasetCard``.

    The set is first staged with :func:`save_distilled` (validated, card rendered); the
    shards are pushed by ``datasets`` under the same names (``data/<split>-0000i-of-0000n.parquet``,
    stale shards of an earlier push are deleted), then the staged ``README.md`` replaces
    the card ``datasets`` wrote. The repo then holds exactly the staged folder.

    ``dataset`` may also be a local directory written by :func:`save_distilled`; it is
    validated with :func:`load_distilled` and published as it is. The token is passed to
    ``huggingface_hub`` only, never printed or stored.

    Returns:
        the ``CommitInfo`` of the data commit (the card follows in a second commit).
    """
    from huggingface_hub import DatasetCard

    if not isinstance(repo_id, str) or repo_id.count("/") > 1 or not repo_id.strip():
        raise ValueError(f"repo_id: got {repo_id!r}; expected 'namespace/name' or 'name'")
    with tempfile.TemporaryDirectory(prefix="gift_hf_push_") as tmp:
        if isinstance(dataset, (str, os.PathLike)):
            folder = Path(dataset)
            if info is not None:
                raise ValueError("info: a saved directory carries its own DistilledInfo in README.md; pass "
                                 "info=None (or the dataset object instead of the directory)")
            splits, _ = load_distilled(folder, cache_dir=os.path.join(tmp, "cache"))  # validates the folder
        else:
            splits = DatasetDict(_as_splits(dataset))
            folder = save_distilled(splits, Path(tmp) / "staged", info, license=license, tags=tags, repo_id=repo_id)
        # The same shard count per split as the staged folder, so the Hub has the same files.
        num_shards = {split: len(list((folder / "data").glob(f"{split}-*.parquet"))) for split in splits}
        with quiet_datasets():
            commit = splits.push_to_hub(
                repo_id, private=private, token=token, revision=revision, num_shards=num_shards,
                commit_message=commit_message or "Upload distilled dataset with gift_hf",
            )
        card = DatasetCard((folder / "README.md").read_text(encoding="utf-8"))
        card.push_to_hub(repo_id, token=token, repo_type="dataset", revision=revision,
                         commit_message="Dataset card with the gift_hf provenance")
    return commit
