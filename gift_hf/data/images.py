"""Datasets, transforms and the collator that feed :class:`~gift_hf.GIFTTrainer`.

Kept at module level so recipes, tests and multiprocessing workers can import them.
A batch the trainer sees is a dict with ``pixel_values`` ``(B, C, H, W)`` float32,
``labels`` ``(B,)`` int64 and, when the dataset stores them, ``soft_labels`` ``(B, K)``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Features, Image

from gift_hf.data.soft_labels import check_soft_labels
from gift_hf.engine.losses import check_class_ids
from gift_hf.files import write_output_text

__all__ = [
    "DIGITS_LICENSE",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "ROW_INDEX_COLUMN",
    "DataArguments",
    "ImageTransform",
    "ShardRecordingCollator",
    "ResizeCenterCropTransform",
    "eval_transform_for",
    "SoftLabelCollator",
    "build_image_transform",
    "open_dataset",
    "check_soft_label_columns",
    "check_stored_soft_labels",
    "default_collator",
    "image_spec",
    "infer_channels_and_size",
    "label_names",
    "load_image_dataset",
    "local_cache_dir",
    "class_balanced_indices",
    "convert_image_mode",
    "load_digits_dataset",
    "load_digit_pairs_dataset",
    "embedded_dataset",
    "EMBEDDED_DATASETS",
    "DIGIT_PAIRS_MEAN",
    "DIGIT_PAIRS_STD",
    "preprocessing_identity",
]

logger = logging.getLogger(__name__)

# Statistics of the digits training images after scaling to [0, 1].
DIGITS_MEAN = (0.3056,)
DIGITS_STD = (0.3760,)
# scikit-learn distributes the digits (UCI optical recognition of handwritten digits) under
# its own BSD-3-Clause license; cards of sets made from them carry it.
DIGITS_LICENSE = "bsd-3-clause"


def load_digits_dataset(test_size: float = 0.3, seed: int = 0) -> DatasetDict:
    """scikit-learn's bundled digits (1,797 real 8×8 grayscale images, 10 classes).

    Returned as a ``DatasetDict`` with stratified ``train``/``test`` splits, an ``image``
    column (``Image``) and a ``label`` column (``ClassLabel`` named ``"0"`` … ``"9"``),
    the same shape a Hub image-classification dataset has; ``info.license`` is
    ``bsd-3-clause``, scikit-learn's. Nothing is downloaded.
    """
    from PIL import Image as PILImage
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # The raw values are 0..16; scale to 8-bit so they are ordinary grayscale images.
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    idx_train, idx_test = train_test_split(
        np.arange(len(pixels)), test_size=test_size, random_state=seed, stratify=digits.target
    )
    features = Features({"image": Image(), "label": ClassLabel(names=[str(i) for i in range(10)])})

    def split(idx: np.ndarray, name: str) -> Dataset:
        # builder_name and split name the data where it is reported (model cards, results)
        info = DatasetInfo(
            description="scikit-learn's digits (8×8 grayscale, 10 classes)",
            license=DIGITS_LICENSE,
            features=features,
            builder_name="digits",
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
        )
        return Dataset.from_dict(
            {"image": [PILImage.fromarray(pixels[i], mode="L") for i in idx], "label": digits.target[idx].tolist()},
            features=features,
            info=info,
            split=name,
        )

    return DatasetDict({"train": split(idx_train, "train"), "test": split(idx_test, "test")})


# Statistics of the digit-pair training images (default arguments) after scaling to [0, 1].
DIGIT_PAIRS_MEAN = (0.1528,)
DIGIT_PAIRS_STD = (0.3068,)


def load_digit_pairs_dataset(train_per_class: int = 30, test_per_class: int = 10, seed: int = 0) -> DatasetDict:
    """100 classes of digit pairs made from scikit-learn's digits: a harder embedded benchmark.

    Each image is 16×16 grayscale: two 8×8 digits ``a`` (left) and ``b`` (right) side by
    side, centred vertically; the label is ``10·a + b`` (class names ``"00"`` … ``"99"``).
    Training pairs are drawn only from the train rows of :func:`load_digits_dataset` and
    test pairs only from its test rows, so no digit image is in both splits. Every class
    has ``train_per_class`` / ``test_per_class`` pairs, drawn with ``seed`` (same arguments,
    same images). ``info.license`` is scikit-learn's ``bsd-3-clause``. Nothing is downloaded.
    """
    from PIL import Image as PILImage

    for name, value in (("train_per_class", train_per_class), ("test_per_class", test_per_class)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: got {value!r}; expected a positive number of pairs per class")
    digits = load_digits_dataset()
    features = Features({"image": Image(), "label": ClassLabel(names=[f"{i:02d}" for i in range(100)])})

    def split(source: Dataset, per_class: int, name: str, offset: int) -> Dataset:
        pixels = np.stack([np.asarray(img) for img in source["image"]])
        rows_of = [np.flatnonzero(np.asarray(source["label"]) == d) for d in range(10)]
        rng = np.random.default_rng([seed, offset])  # one stream per split: test does not move when train grows
        labels = np.repeat(np.arange(100), per_class)
        canvas = np.zeros((len(labels), 16, 16), dtype=np.uint8)
        for i, label in enumerate(labels):
            left, right = rng.choice(rows_of[label // 10]), rng.choice(rows_of[label % 10])
            canvas[i, 4:12, :8], canvas[i, 4:12, 8:] = pixels[left], pixels[right]
        info = DatasetInfo(
            description="digit pairs from scikit-learn's digits (16×16 grayscale, 100 classes)",
            license=DIGITS_LICENSE,
            features=features,
            builder_name="digit_pairs",
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
        )
        return Dataset.from_dict(
            {"image": [PILImage.fromarray(c, mode="L") for c in canvas], "label": labels.tolist()},
            features=features,
            info=info,
            split=name,
        )

    return DatasetDict(
        {
            "train": split(digits["train"], train_per_class, "train", 0),
            "test": split(digits["test"], test_per_class, "test", 1),
        }
    )


#: Datasets that ship with gift_hf, accepted by name wherever a dataset name is: loader, mean, std.
EMBEDDED_DATASETS: dict[str, tuple[Any, tuple[float, ...], tuple[float, ...]]] = {
    "digits": (load_digits_dataset, DIGITS_MEAN, DIGITS_STD),
    "digit_pairs": (load_digit_pairs_dataset, DIGIT_PAIRS_MEAN, DIGIT_PAIRS_STD),
}


def embedded_dataset(name: str | None) -> DatasetDict | None:
    """The embedded dataset ``name`` (None: digits, the default), or None for any other name."""
    entry = EMBEDDED_DATASETS.get("digits" if name is None else name)
    return entry[0]() if entry is not None else None


def class_balanced_indices(labels: Sequence[int], per_class: int, seed: int = 0) -> list[int]:
    """``per_class`` random row indices of every class, reproducible by ``seed``.

    Raises a ``ValueError`` naming the class when it has fewer than ``per_class`` rows.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        if len(rows) < per_class:
            raise ValueError(f"class {cls} has {len(rows)} images but IPC={per_class} were requested")
        picked.extend(rng.choice(rows, size=per_class, replace=False).tolist())
    return sorted(picked)


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA = ("LA", "La", "PA", "RGBA", "RGBa")


def open_image(value: Any, where: str = "image") -> Any:
    """A fully loaded PIL image from a PIL image or a ``datasets`` ``Image(decode=False)`` value
    (``{"bytes", "path"}``, or a path).

    Every way an image file can be bad (truncated, corrupt, not an image, larger than
    Pillow's decompression-bomb limit) is one ``ValueError`` naming ``where`` (the row) and
    the file, never PIL's own exception from deep inside the decoder.
    """
    import io

    from PIL import Image as PILImage

    source = value
    if isinstance(value, dict):
        source = value.get("path") if value.get("bytes") is None else value["bytes"]
    name = value.get("path") if isinstance(value, dict) and value.get("path") else None
    label = f"{where}{f' ({name})' if name else ''}"
    if not isinstance(source, (bytes, bytearray, str, os.PathLike)) and not hasattr(value, "load"):
        raise ValueError(f"{where}: got {type(value).__name__}; expected an image (PIL image, or bytes/path)")
    try:
        if isinstance(source, (bytes, bytearray)):
            image = PILImage.open(io.BytesIO(source))
        elif isinstance(source, (str, os.PathLike)):
            image = PILImage.open(source)
        else:
            image = value
        image.load()  # PIL opens lazily: decode now, so a truncated file fails here, named
    except PILImage.DecompressionBombError as err:
        raise ValueError(
            f"{label}: the image is larger than Pillow's decompression-bomb limit "
            f"({PILImage.MAX_IMAGE_PIXELS} pixels; {err}); if the file is trusted, raise "
            "PIL.Image.MAX_IMAGE_PIXELS, else remove it"
        ) from None
    except Exception as err:  # PIL's decoders raise OSError, SyntaxError, struct.error, ValueError …
        first = (str(err).strip().splitlines() or [type(err).__name__])[0].split(" <_io.")[0]
        raise ValueError(
            f"{label}: the image file is truncated or corrupt ({type(err).__name__}: {first}); replace or remove it"
        ) from None
    return image


def convert_image_mode(image: Any, target: str) -> tuple[Any, tuple[str, str] | None]:
    """``image`` converted to the 8-bit ``target`` mode (``"L"`` or ``"RGB"``), and what was lost.

    Returns ``(image, None)`` for a conversion that keeps every value (``1``, ``L``, ``P``,
    ``RGB``, ``YCbCr``, alpha that is fully opaque, 16-bit or integer/float images whose values
    are exact 8-bit ones) and for the model's own channel change (colour → ``L`` is what
    ``channels=1`` asks for); ``(image, (mode, what is lost))`` for a lossy one: real
    transparency dropped, 16-bit precision rounded to 8 bits (``value / 257``), CMYK's or LAB's
    conversion without a colour profile. A 32-bit integer (``I``) or float (``F``) image with
    values beyond 8 bits has no defined 8-bit scale, and a mode PIL cannot convert: a
    ``ValueError`` naming the mode.
    """
    from PIL import Image as PILImage

    mode, lost = image.mode, None
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        values = np.asarray(image)
        if mode in _SIXTEEN_BIT:
            values = values.astype(np.int64)
            if (values % 257).any():
                lost = (mode, "16-bit values rounded to 8 bits (value / 257)")
            values = np.rint(values / 257.0)
        elif not (
            np.isfinite(values).all()
            and values.min(initial=0) >= 0
            and values.max(initial=0) <= 255
            and (values == np.rint(values)).all()
        ):
            finite = values[np.isfinite(values)] if mode == "F" else values
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (float("nan"),) * 2
            raise ValueError(
                f"image: mode {mode!r} ({'32-bit float' if mode == 'F' else '32-bit integer'}) with values in "
                f"[{low:g}, {high:g}]{'' if finite.size == values.size else ' and NaN/inf'} has no defined 8-bit "
                "scale; expected 8-bit images (L, RGB), 16-bit ones (I;16), or 0..255 values: scale them "
                "yourself, or store float pixel_values"
            )
        image = PILImage.fromarray(values.astype(np.uint8), mode="L")
    elif mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif mode in ("CMYK", "LAB"):
        lost = (mode, f"{mode} converted by a formula without a colour profile (colours are approximate)")
        image = image.convert("RGB")
    if image.mode in _ALPHA:
        alpha = np.asarray(image.getchannel(image.getbands()[-1]))  # "A", or "a" when premultiplied
        if (alpha != 255).any():
            lost = (mode, "transparency dropped (transparent pixels show the colour stored under them)")
        image = image.convert("LA" if image.mode in ("LA", "La") else "RGBA")
        image = image.convert("L" if image.mode == "LA" else "RGB")
    if image.mode != target:
        try:
            image = image.convert(target)
        except (ValueError, OSError) as err:
            raise ValueError(
                f"image: mode {mode!r} cannot be converted to {target} ({err}); expected 8-bit images (L, RGB, P, …)"
            ) from None
    return image, lost


@dataclass
class ImageTransform:
    """``set_transform`` function: images → normalised ``pixel_values`` tensors.

    Args:
        image_size: output height/width (images are resized if they differ); None keeps size.
        channels: 1 (grayscale) or 3 (RGB); images are converted to match the model.
        mean, std: per-channel normalisation.
        image_column: the column holding PIL images (or a float ``pixel_values`` column,
            used as is).
    """

    image_size: int | None = None
    channels: int = 3
    mean: Sequence[float] = (0.5,)
    std: Sequence[float] = (0.5,)
    image_column: str = "image"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) not in (1, self.channels):
                raise ValueError(f"{name} must have 1 or {self.channels} values, got {list(value)}")

    def _convert(self, image: Any) -> Any:
        """``image`` as 8-bit L or RGB (the model's channels), by :func:`convert_image_mode`:
        a conversion that loses information warns once per transform (one per dataset)."""
        target = "L" if self.channels == 1 else "RGB"
        if image.mode == target:
            return image
        image, lost = convert_image_mode(image, target)
        if lost is not None:
            warned = self.__dict__.setdefault("_warned_modes", set())
            if lost[0] not in warned:
                warned.add(lost[0])
                logger.warning(
                    "images of mode %s converted to %s lose information: %s (said once per dataset)",
                    lost[0],
                    target,
                    lost[1],
                )
        return image

    def decode(self, image: Any) -> np.ndarray:
        """A PIL image → the ``(H, W, C)`` uint8 array this transform normalises.

        The device-resident training set stores exactly these arrays, so its batches equal
        this transform's output. Modes are converted by :func:`convert_image_mode`; an empty
        image, or one whose mode has no faithful 8-bit form, is a ``ValueError``.
        """
        image = open_image(image)  # a truncated or corrupt file: one error naming it
        if image.width < 1 or image.height < 1:
            raise ValueError(f"image: got an image of {image.width}×{image.height} pixels; expected at least 1×1")
        image = self._convert(image)
        if self.image_size is not None and image.size != (self.image_size, self.image_size):
            image = image.resize((self.image_size, self.image_size), resample=3)  # bicubic
        array = np.asarray(image, dtype=np.uint8)
        return array.reshape(array.shape[0], array.shape[1], -1)

    def _to_tensor(self, image: Any) -> torch.Tensor:
        array = self.decode(image).astype(np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        out = {k: v for k, v in batch.items() if k != self.image_column}
        if "pixel_values" in batch and self.image_column not in batch:
            # Synthetic float images (e.g. ZCA data) are stored already normalised.
            out["pixel_values"] = [torch.as_tensor(np.asarray(x, dtype=np.float32)) for x in batch["pixel_values"]]
            return out
        if self.image_column not in batch:
            raise KeyError(f"missing column {self.image_column!r}; the batch has {sorted(batch)}")
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        out["pixel_values"] = [(self._to_tensor(img) - mean) / std for img in batch[self.image_column]]
        return out


@dataclass
class SoftLabelCollator:
    """Stack transformed rows into a training batch.

    ``label`` → ``labels``; a stored dense ``soft_label`` column → ``soft_labels``; a sparse
    top-k pair (``soft_label_topk_values``/``soft_label_topk_indices``) is densified per
    batch to width ``num_classes`` with ``topk_fill`` in the missing entries. The soft labels
    of every batch pass :func:`~gift_hf.data.soft_labels.check_soft_labels` for
    ``soft_label_kind`` (None: finite and ``num_classes`` wide only).
    """

    label_column: str = "label"
    soft_label_column: str = "soft_label"
    num_classes: int | None = None
    topk_fill: float = 0.0
    soft_label_kind: str | None = None

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        first = rows[0]
        if "pixel_values" not in first:
            raise KeyError(f"rows have no 'pixel_values'; set an ImageTransform on the dataset (got {sorted(first)})")
        pixels = [torch.as_tensor(r["pixel_values"]) for r in rows]
        odd = next((i for i, p in enumerate(pixels) if p.shape != pixels[0].shape), None)
        if odd is not None:
            raise ValueError(
                f"pixel_values: row {odd} of the batch has shape {tuple(pixels[odd].shape)} but row 0 has "
                f"{tuple(pixels[0].shape)}; the images of the dataset differ in size, expected one size. "
                "Resize them with ImageTransform(image_size=...) (--image_size in the recipes)"
            )
        batch = {"pixel_values": torch.stack(pixels)}
        # Values are checked here, on the host, so the training step never has to read them back.
        if self.label_column in first:
            batch["labels"] = torch.tensor([int(r[self.label_column]) for r in rows], dtype=torch.long)
            if self.num_classes is not None:
                check_class_ids(f"column {self.label_column!r}", batch["labels"], self.num_classes)
        if self.soft_label_column in first:
            soft = np.stack([np.asarray(r[self.soft_label_column], dtype=np.float32) for r in rows])
            check_soft_labels(
                soft,
                self.soft_label_kind,
                num_classes=self.num_classes,
                column=self.soft_label_column,
                row_word="batch row",
            )
            batch["soft_labels"] = torch.from_numpy(soft)
        topk_values, topk_indices = f"{self.soft_label_column}_topk_values", f"{self.soft_label_column}_topk_indices"
        if topk_values in first and topk_indices in first:
            if self.num_classes is None:
                raise ValueError("SoftLabelCollator.num_classes is required to densify top-k soft labels")
            values = np.stack([np.asarray(r[topk_values], dtype=np.float32) for r in rows])
            check_soft_labels(values, self.soft_label_kind, column=topk_values, row_word="batch row", topk=True)
            values = torch.from_numpy(values)
            indices = torch.tensor(np.stack([np.asarray(r[topk_indices], dtype=np.int64) for r in rows]))
            batch["soft_labels"] = densify_topk(values, indices, self.num_classes, self.topk_fill)
        return batch


def densify_topk(values: torch.Tensor, indices: torch.Tensor, num_classes: int, fill: float = 0.0) -> torch.Tensor:
    """Scatter sparse top-k ``values`` at ``indices`` into a dense ``(N, num_classes)`` tensor."""
    if values.shape != indices.shape:
        raise ValueError(f"top-k values shape {tuple(values.shape)} != indices shape {tuple(indices.shape)}")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= num_classes):
        raise ValueError(f"top-k indices must be in [0, {num_classes - 1}], got max {int(indices.max())}")
    dense = torch.full((values.shape[0], num_classes), fill, dtype=values.dtype)
    return dense.scatter_(1, indices.long(), values)


# ------------------------------------------------------------------ datasets of a training run
ROW_INDEX_COLUMN = "__row_index__"
"""Column added by ``--record_shard_indices``: the row's index in the (selected) split."""


@dataclass
class DataArguments:
    """Which data to train and evaluate on, and how images become ``pixel_values``."""

    dataset_name: Optional[str] = field(
        default=None,
        metadata={
            "help": "A Hub dataset id or a local directory in the Hub layout, read with "
            "datasets.load_dataset, or an embedded dataset: 'digits' (the default, gift_hf.load_digits_dataset) "
            "or 'digit_pairs' (gift_hf.load_digit_pairs_dataset)."
        },
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
        default=None,
        metadata={
            "help": "Per-channel normalisation mean (default: the statistics of an embedded dataset, 0.5 otherwise)."
        },
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
        metadata={
            "help": "Write the training row indices each process received to "
            "output_dir/shard_indices/rank<N>.json (checks data-parallel sharding)."
        },
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
            f"{split.column_names} (see gift_hf.data.relabel to store soft labels)"
        )


def check_stored_soft_labels(split: Dataset, args: DataArguments, kind: str | None, num_classes: int) -> None:
    """For ``soft_label_source='dataset'``: every stored soft label of ``split``, checked once before
    training by :func:`~gift_hf.data.soft_labels.check_soft_labels` (the check ``load_distilled``
    runs), so a set of any origin is refused the same way, naming the column and the row."""
    from gift_hf.data.distilled.validation import column_matrix

    plain = split.with_format(None)
    topk = args.soft_label_column not in plain.column_names
    column = f"{args.soft_label_column}_topk_values" if topk else args.soft_label_column
    if column not in plain.column_names:
        return
    chunk = 1 << 16  # rows read at a time: a large relabelled set is never held whole
    for start in range(0, len(plain), chunk):
        part = plain.select(range(start, min(len(plain), start + chunk)))
        check_soft_labels(
            column_matrix(part, column, args.train_split),
            kind,
            num_classes=num_classes,
            column=column,
            where=f" (split {args.train_split!r})",
            topk=topk,
            first_row=start,
        )


def _unreadable_data_file(folder: str) -> tuple[str, BaseException] | None:
    """The first parquet/arrow file under ``folder`` that cannot be read, with its error."""
    import pyarrow.parquet as pq

    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file in sorted(files):
            path = os.path.join(root, file)
            try:
                if file.endswith(".parquet"):
                    pq.ParquetFile(path).read()
            except Exception as err:  # pyarrow raises OSError/ArrowInvalid with no file name
                return path, err
    return None


def local_cache_dir(path: str | os.PathLike) -> str:
    """The ``datasets`` cache folder for the local dataset folder ``path`` in its present state.

    ``datasets`` caches a local folder whose card lists its configs (every set ``save_distilled``
    writes) under the folder's *name* alone: a second ``…/set`` elsewhere, or a set rewritten
    in place, would silently read the first one's cache. Keyed here by the absolute path and
    every file's relative path, size and modification time, a changed folder gets a fresh cache.
    """
    import hashlib

    from datasets import config

    root = os.path.abspath(os.fspath(path))
    entries = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # not .git, not a staging folder
        for file in sorted(files):
            stat = os.stat(os.path.join(folder, file))
            entries.append([os.path.relpath(os.path.join(folder, file), root), stat.st_size, stat.st_mtime_ns])
    digest = hashlib.sha256(json.dumps([root, entries]).encode()).hexdigest()[:20]
    return os.path.join(str(config.HF_DATASETS_CACHE), "gift_hf", "local", digest)


def open_dataset(
    name: str,
    option: str = "dataset_name",
    config_name: str | None = None,
    split: str | None = None,
    revision: str | None = None,
) -> Any:
    """``datasets.load_dataset(name, config_name, split=…, revision=…)``: the one place gift_hf
    opens a real dataset, with its errors restated as one line naming ``option``.

    A path-looking ``name`` that does not exist is "not found" (never a Hub lookup); a name
    that is neither a local folder nor a readable Hub dataset says both; a corrupt or
    truncated data file of a local folder is named, with what to do.
    """
    import datasets

    from gift_hf.files import check_local_path

    name = check_local_path(name, option)  # a missing local path is "not found"
    try:
        # a local folder: its own cache per state (local_cache_dir), never another folder's of its name
        cache = {"cache_dir": local_cache_dir(name)} if os.path.isdir(name) else {}
        return datasets.load_dataset(name, config_name, split=split, revision=revision, **cache)
    except (ConnectionError, FileNotFoundError) as err:  # also datasets' DatasetNotFoundError
        if os.path.exists(name):
            raise
        raise ValueError(
            f"{option}: {name!r} not found: there is no local directory of that name, and the Hub dataset "
            f"{name!r} could not be read ({type(err).__name__}); expected a local directory or an existing Hub "
            "dataset id"
        ) from None
    except Exception as err:
        bad = _unreadable_data_file(name) if os.path.isdir(name) else None
        if bad is None:
            raise
        path, cause = bad
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise ValueError(
            f"{option}: data file {path} of {name!r} is corrupt or truncated ({type(cause).__name__}: "
            f"{first}); restore it, or write the dataset again"
        ) from err


def _load_split(args: DataArguments, option: str, split_name: str) -> Dataset:
    """One split of ``args.dataset_name``, with datasets' errors restated for the option."""
    try:
        split = open_dataset(
            args.dataset_name,
            "dataset_name",
            args.dataset_config_name,
            split=split_name,
            revision=args.dataset_revision,
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
    digits = embedded_dataset(args.dataset_name)
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
        channels = channels or (1 if image.mode in ("L", "1", "I", "F", "LA", "La", *_SIXTEEN_BIT) else 3)
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
    _, own_mean, own_std = EMBEDDED_DATASETS.get(args.dataset_name or "digits", (None, (0.5,), (0.5,)))
    mean = tuple(args.image_mean) if args.image_mean is not None else own_mean
    std = tuple(args.image_std) if args.image_std is not None else own_std
    return ImageTransform(
        image_size=args.image_size, channels=channels, mean=mean, std=std, image_column=args.image_column
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
        path = os.path.join(output_dir, "shard_indices", f"rank{process_index}.json")
        return write_output_text(path, json.dumps(self.indices))


def default_collator(
    args: DataArguments, num_classes: int, record: bool = False, soft_label_kind: str | None = None
) -> Any:
    """The ``SoftLabelCollator`` for these columns (checking soft labels of ``soft_label_kind``),
    wrapped to record shards if asked."""
    collator = SoftLabelCollator(
        label_column=args.label_column,
        soft_label_column=args.soft_label_column,
        num_classes=num_classes,
        soft_label_kind=soft_label_kind,
    )
    return ShardRecordingCollator(collator) if record else collator


def image_spec(split: Dataset, args: DataArguments) -> tuple[list[str], int, int, ImageTransform]:
    """What a model trained on ``split`` sees: ``(class names, channels, size, transform)``."""
    names = label_names(split, args.label_column)
    channels, size = infer_channels_and_size(split, args)
    return names, channels, size, build_image_transform(args, channels)


@dataclass
class ResizeCenterCropTransform(ImageTransform):
    """The RDED/SRe2L validation transform: resize, then centre-crop ``image_size``.

    The shorter side is resized (bilinear, PIL) to ``image_size // 7 * 8`` — 256 for 224 px,
    72 for 64 px, 32 for 32 px — keeping the aspect ratio, then the centre
    ``image_size × image_size`` is cut out, as torchvision's ``Resize`` + ``CenterCrop`` in
    the reference evaluation code. Then converted and normalised like :class:`ImageTransform`.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.image_size, int) or self.image_size < 1:
            raise ValueError(f"image_size: got {self.image_size!r}; ResizeCenterCropTransform needs an integer >= 1")

    @property
    def resize_size(self) -> int:
        return self.image_size // 7 * 8

    def decode(self, image: Any) -> np.ndarray:
        from PIL import Image as PILImage

        image = self._convert(image)
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        size = (new_short, new_long) if width <= height else (new_long, new_short)
        if size != image.size:
            image = image.resize(size, resample=PILImage.BILINEAR)
        width, height = image.size
        top, left = int(round((height - self.image_size) / 2.0)), int(round((width - self.image_size) / 2.0))
        image = image.crop((left, top, left + self.image_size, top + self.image_size))
        array = np.asarray(image, dtype=np.uint8)
        return array.reshape(array.shape[0], array.shape[1], -1)


def preprocessing_identity(transform: ImageTransform | None) -> dict[str, Any] | None:
    """What a dataset's ``transform`` makes of its images, as plain JSON values: the transform's
    class, ``image_size``, ``channels``, per-channel ``mean``/``std`` (one value stands for every
    channel, so ``(0.5,)`` and ``(0.5, 0.5, 0.5)`` are one identity) and the ``resize`` rule.

    A run's identity includes it: a resume with another ``--image_mean``/``--image_std``,
    ``--image_size`` or ``--channels`` trains on other inputs and is refused. None for None.
    """
    if transform is None:
        return None

    def per_channel(values: Sequence[float]) -> list[float]:
        values = [float(v) for v in values]
        return values * transform.channels if len(values) == 1 else values

    resize = "bicubic to image_size" if transform.image_size is not None else "none (stored size)"
    if isinstance(transform, ResizeCenterCropTransform):
        resize = f"bilinear shorter side to {transform.resize_size}, centre crop {transform.image_size}"
    return {
        "transform": f"{type(transform).__module__}.{type(transform).__qualname__}",
        "image_size": transform.image_size,
        "channels": transform.channels,
        "mean": per_channel(transform.mean),
        "std": per_channel(transform.std),
        "resize": resize,
        "image_column": transform.image_column,
    }


def eval_transform_for(transform: ImageTransform, kind: str = "resize") -> ImageTransform:
    """The evaluation split's transform for ``GIFTConfig.eval_transform``: ``transform`` itself
    (``"resize"``), or the same size, channels and normalisation as a
    :class:`ResizeCenterCropTransform` (``"resize_center_crop"``, the RDED/SRe2L validation)."""
    if kind == "resize":
        return transform
    if kind == "resize_center_crop":
        if transform.image_size is None:
            raise ValueError("eval_transform: 'resize_center_crop' needs the input size; set image_size")
        return ResizeCenterCropTransform(
            image_size=transform.image_size,
            channels=transform.channels,
            mean=transform.mean,
            std=transform.std,
            image_column=transform.image_column,
        )
    raise ValueError(f"eval_transform: got {kind!r}; expected 'resize' or 'resize_center_crop'")
