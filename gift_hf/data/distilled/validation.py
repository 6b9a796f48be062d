"""Validation of a distilled dataset's schema and values (:func:`validate_distilled`).

Also the helpers that read facts off the data for the other layers (splits, widths, sizes).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Iterator, Union

import numpy as np
from datasets import Array3D, ClassLabel, Dataset, DatasetDict, Features, Image, LargeList, List, Value

from gift_hf.data.distilled.info import (
    IMAGE_COLUMN,
    LABEL_COLUMN,
    PIXEL_COLUMN,
    SOFT_LABEL_COLUMN,
    SOFT_LABEL_KINDS,
    TOPK_INDICES_COLUMN,
    TOPK_VALUES_COLUMN,
    DistilledInfo,
)
from gift_hf.data.soft_labels import check_soft_labels

__all__ = [
    "DatasetLike",
    "soft_label_columns",
    "validate_distilled",
]


DatasetLike = Union[Dataset, DatasetDict]


def soft_label_columns(features: Features) -> str | None:
    """``"dense"``, ``"topk"`` or None: which soft-label columns ``features`` has."""
    if SOFT_LABEL_COLUMN in features:
        return "dense"
    if TOPK_VALUES_COLUMN in features or TOPK_INDICES_COLUMN in features:
        return "topk"
    return None


def as_splits(dataset: DatasetLike) -> dict[str, Dataset]:
    """``{split: Dataset}`` of a ``Dataset`` (as ``train``) or ``DatasetDict``, any transform dropped."""
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


def column_matrix(ds: Dataset, column: str, split: str) -> np.ndarray:
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
            raise ValueError(
                f"column {column!r} (split {split!r}), row {row}: has width {int(lengths[row])} but "
                f"row 0 has {width}; expected every row to have the same width"
            )
    values = array.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(array), width)


def _check_finite(matrix: np.ndarray, column: str, split: str) -> None:
    finite = np.isfinite(matrix)
    if not finite.all():
        row, col = (int(i[0]) for i in np.nonzero(~finite))
        raise ValueError(
            f"column {column!r} (split {split!r}), row {row}: entry {col} is {matrix[row, col]}; "
            "expected finite values (no NaN/inf)"
        )


def _stored_images(ds: Dataset) -> Iterator[tuple[int, dict | None]]:
    """(row, {"bytes", "path"}) of every stored image, read in chunks: a large set's encoded
    images need not all sit in memory at once."""
    column = ds.select_columns([IMAGE_COLUMN]).with_format("arrow")
    for start in range(0, len(ds), 1024):
        for i, item in enumerate(column[start : start + 1024][IMAGE_COLUMN].to_pylist()):
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
            raise ValueError(
                f"column {IMAGE_COLUMN!r} (split {split!r}), row {row}: is missing (null); expected an image"
            )
        data, path = item.get("bytes"), item.get("path")
        try:
            if data is None:
                with open(path, "rb") as f:
                    data = f.read()
            with PILImage.open(io.BytesIO(data)) as img:
                img.load()
        except Exception as err:  # PIL raises many types for bad data
            where = f" (file {path!r})" if path else ""
            raise ValueError(
                f"column {IMAGE_COLUMN!r} (split {split!r}), row {row}{where}: cannot decode the "
                f"image bytes ({type(err).__name__}: {err}); expected an encoded image "
                "(PNG, JPEG, …)"
            ) from None


def _validate_split(ds: Dataset, split: str, info: DistilledInfo | None, check_images: bool) -> int:
    """Validate one split; returns its number of classes."""
    features = ds.features
    columns = sorted(features)
    if len(ds) == 0:
        raise ValueError(f"split {split!r} is empty (0 rows); expected at least one row")
    # ---- images
    if IMAGE_COLUMN in features:
        if not isinstance(features[IMAGE_COLUMN], Image):
            raise ValueError(
                f"column {IMAGE_COLUMN!r} (split {split!r}) has feature {features[IMAGE_COLUMN]}; "
                "expected datasets.Image()"
            )
        if check_images:
            _check_images(ds, split)
    elif PIXEL_COLUMN in features:
        feature = features[PIXEL_COLUMN]
        if not isinstance(feature, Array3D) or not np.issubdtype(np.dtype(feature.dtype), np.floating):
            raise ValueError(
                f"column {PIXEL_COLUMN!r} (split {split!r}) has feature {feature}; expected "
                "Array3D(shape=(C, H, W), dtype='float32') (or float16/float64)"
            )
        pixels = np.asarray(ds.select_columns([PIXEL_COLUMN]).with_format("numpy")[:][PIXEL_COLUMN])
        _check_finite(pixels.reshape(len(ds), -1), PIXEL_COLUMN, split)
    else:
        raise ValueError(
            f"split {split!r} has no image column: expected {IMAGE_COLUMN!r} (datasets.Image) or "
            f"{PIXEL_COLUMN!r} (Array3D float); it has columns {columns}"
        )
    # ---- hard labels
    if LABEL_COLUMN not in features:
        raise ValueError(
            f"split {split!r} has no {LABEL_COLUMN!r} column; it has columns {columns}; expected a "
            "ClassLabel column of class ids"
        )
    label_feature = features[LABEL_COLUMN]
    if not isinstance(label_feature, ClassLabel):
        raise ValueError(
            f"column {LABEL_COLUMN!r} (split {split!r}) has feature {label_feature}; expected a "
            "ClassLabel with class names (ds.cast_column('label', ClassLabel(names=[...])))"
        )
    num_classes = label_feature.num_classes
    labels = np.asarray(ds.select_columns([LABEL_COLUMN]).with_format("numpy")[:][LABEL_COLUMN])
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"column {LABEL_COLUMN!r} (split {split!r}), row {row}: class id {int(labels[row])} is "
            f"out of range; expected an id in [0, {num_classes - 1}]"
        )
    # ---- soft labels
    kind = soft_label_columns(features)
    if (
        kind is not None
        and SOFT_LABEL_COLUMN in features
        and (TOPK_VALUES_COLUMN in features or TOPK_INDICES_COLUMN in features)
    ):
        raise ValueError(
            f"split {split!r} has both dense {SOFT_LABEL_COLUMN!r} and top-k soft-label columns; "
            "expected one of the two"
        )
    if kind is not None and info is not None and info.soft_label_kind is None:
        raise ValueError(
            f"split {split!r} has soft labels but DistilledInfo.soft_label_kind is None; expected "
            f"one of {SOFT_LABEL_KINDS}"
        )
    kind_of_values = info.soft_label_kind if info is not None else None
    if kind == "dense":
        item = _list_width(features[SOFT_LABEL_COLUMN])
        if item is None or not isinstance(item[0], Value) or item[0].dtype not in ("float16", "float32", "float64"):
            raise ValueError(
                f"column {SOFT_LABEL_COLUMN!r} (split {split!r}) has feature "
                f"{features[SOFT_LABEL_COLUMN]}; expected List(Value('float16'|'float32'), "
                f"length={num_classes})"
            )
        soft = column_matrix(ds, SOFT_LABEL_COLUMN, split)
        # the one check every reader runs (finite, width C; probabilities >= 0 summing to 1)
        check_soft_labels(
            soft, kind_of_values, num_classes=num_classes, column=SOFT_LABEL_COLUMN, where=f" (split {split!r})"
        )
    elif kind == "topk":
        for column, other in ((TOPK_VALUES_COLUMN, TOPK_INDICES_COLUMN), (TOPK_INDICES_COLUMN, TOPK_VALUES_COLUMN)):
            if column not in features:
                raise ValueError(f"split {split!r} has {other!r} but no {column!r} column; expected both top-k columns")
        value_item = _list_width(features[TOPK_VALUES_COLUMN])
        index_item = _list_width(features[TOPK_INDICES_COLUMN])
        if value_item is None or not isinstance(value_item[0], Value) or not value_item[0].dtype.startswith("float"):
            raise ValueError(
                f"column {TOPK_VALUES_COLUMN!r} (split {split!r}) has feature "
                f"{features[TOPK_VALUES_COLUMN]}; expected List(Value('float16'|'float32'), length=k)"
            )
        if index_item is None or not isinstance(index_item[0], Value) or "int" not in index_item[0].dtype:
            raise ValueError(
                f"column {TOPK_INDICES_COLUMN!r} (split {split!r}) has feature "
                f"{features[TOPK_INDICES_COLUMN]}; expected List(Value('int16'|'int32'), length=k)"
            )
        values = column_matrix(ds, TOPK_VALUES_COLUMN, split)
        indices = column_matrix(ds, TOPK_INDICES_COLUMN, split)
        if values.shape != indices.shape:
            raise ValueError(
                f"column {TOPK_VALUES_COLUMN!r} has width {values.shape[1]} but "
                f"{TOPK_INDICES_COLUMN!r} has {indices.shape[1]} (split {split!r}); expected equal k"
            )
        k = values.shape[1]
        if not 1 <= k <= num_classes:
            raise ValueError(
                f"column {TOPK_VALUES_COLUMN!r} (split {split!r}) has k={k}; expected 1 <= k <= "
                f"{num_classes} (the number of classes)"
            )
        if info is not None and info.topk is not None and info.topk != k:
            raise ValueError(
                f"DistilledInfo.topk is {info.topk} but column {TOPK_VALUES_COLUMN!r} (split "
                f"{split!r}) has k={k}; expected them to agree"
            )
        check_soft_labels(values, kind_of_values, column=TOPK_VALUES_COLUMN, where=f" (split {split!r})", topk=True)
        bad = (indices < 0) | (indices >= num_classes)
        if bad.any():
            row = int(np.flatnonzero(bad.any(1))[0])
            raise ValueError(
                f"column {TOPK_INDICES_COLUMN!r} (split {split!r}), row {row}: has class index "
                f"{int(indices[row][bad[row]][0])}; expected indices in [0, {num_classes - 1}]"
            )
        sorted_rows = np.sort(indices, axis=1)
        dup = (sorted_rows[:, 1:] == sorted_rows[:, :-1]).any(1) if k > 1 else np.zeros(len(indices), bool)
        if dup.any():
            row = int(np.flatnonzero(dup)[0])
            raise ValueError(
                f"column {TOPK_INDICES_COLUMN!r} (split {split!r}), row {row}: repeats a class index "
                f"({indices[row].tolist()}); expected k distinct classes"
            )
    if info is not None and info.num_classes is not None and info.num_classes != num_classes:
        raise ValueError(
            f"DistilledInfo.num_classes is {info.num_classes} but column {LABEL_COLUMN!r} (split "
            f"{split!r}) has {num_classes} classes; expected them to agree"
        )
    return num_classes


def validate_distilled(dataset: DatasetLike, info: DistilledInfo | None = None, *, check_images: bool = True) -> None:
    """Raise a ``ValueError`` naming the split, column, value and expectation on any schema problem.

    Checks: an ``image`` (``Image``) or float ``pixel_values`` (``Array3D``) column; a
    ``ClassLabel`` ``label`` with ids in range; soft labels of width C (dense) or k ≤ C
    distinct in-range indices (top-k), finite, for probabilities non-negative and summing to 1 (at most 1 for
    top-k; :func:`gift_hf.data.soft_labels.check_soft_labels`); the same
    features in every split; agreement with ``info``. ``check_images`` decodes every image.
    """
    splits = as_splits(dataset)
    if not splits:
        raise ValueError("the DatasetDict has no splits; expected at least one (e.g. 'train')")
    first_split, first = next(iter(splits.items()))
    for split, ds in splits.items():
        if not re.fullmatch(r"\w+(\.\w+)*", split) or "-" in split:
            raise ValueError(
                f"split name {split!r} is not valid; expected letters, digits, '_' or '.' (the shard "
                "file names use '-')"
            )
        if ds.features != first.features:
            raise ValueError(
                f"split {split!r} has features {ds.features} but split {first_split!r} has "
                f"{first.features}; expected the same features in every split"
            )
        _validate_split(ds, split, info, check_images)


def complete_info(splits: dict[str, Dataset], info: DistilledInfo | None) -> DistilledInfo:
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
        changes["topk"] = int(column_matrix(first.select([0]), TOPK_VALUES_COLUMN, "train").shape[1])
    return info.replace(**changes) if changes else info


def dataset_nbytes(ds: Dataset) -> int:
    """Arrow bytes of the rows ``ds`` selects (its table may hold more rows behind an index)."""
    rows = ds.data.num_rows
    return int(ds.data.nbytes * len(ds) / rows) if rows else 0


def soft_label_names(features: Features) -> str:
    """The soft-label column names ``features`` has, quoted, for error messages."""
    return ", ".join(repr(c) for c in (SOFT_LABEL_COLUMN, TOPK_VALUES_COLUMN, TOPK_INDICES_COLUMN) if c in features)
