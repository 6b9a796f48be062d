"""Datasets, transforms and the collator that feed :class:`~gift_hf.GIFTTrainer`.

Kept at module level so recipes, tests and multiprocessing workers can import them.
A batch the trainer sees is a dict with ``pixel_values`` ``(B, C, H, W)`` float32,
``labels`` ``(B,)`` int64 and, when the dataset stores them, ``soft_labels`` ``(B, K)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Features, Image

__all__ = [
    "DIGITS_LICENSE",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "ImageTransform",
    "SoftLabelCollator",
    "class_balanced_indices",
    "load_digits_dataset",
]

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

    def split(idx: np.ndarray) -> Dataset:
        info = DatasetInfo(description="scikit-learn's digits (8×8 grayscale, 10 classes)", license=DIGITS_LICENSE,
                           features=features,
                           homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset")
        return Dataset.from_dict(
            {"image": [PILImage.fromarray(pixels[i], mode="L") for i in idx], "label": digits.target[idx].tolist()},
            features=features, info=info,
        )

    return DatasetDict({"train": split(idx_train), "test": split(idx_test)})


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

    def _to_tensor(self, image: Any) -> torch.Tensor:
        mode = "L" if self.channels == 1 else "RGB"
        if image.mode != mode:
            image = image.convert(mode)
        if self.image_size is not None and image.size != (self.image_size, self.image_size):
            image = image.resize((self.image_size, self.image_size), resample=3)  # bicubic
        array = np.asarray(image, dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array.reshape(array.shape[0], array.shape[1], -1)).permute(2, 0, 1)
        return tensor

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
    batch to width ``num_classes`` with ``topk_fill`` in the missing entries.
    """

    label_column: str = "label"
    soft_label_column: str = "soft_label"
    num_classes: int | None = None
    topk_fill: float = 0.0

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        first = rows[0]
        if "pixel_values" not in first:
            raise KeyError(f"rows have no 'pixel_values'; set an ImageTransform on the dataset (got {sorted(first)})")
        batch = {"pixel_values": torch.stack([torch.as_tensor(r["pixel_values"]) for r in rows])}
        if self.label_column in first:
            batch["labels"] = torch.tensor([int(r[self.label_column]) for r in rows], dtype=torch.long)
        if self.soft_label_column in first:
            batch["soft_labels"] = torch.tensor(
                np.stack([np.asarray(r[self.soft_label_column], dtype=np.float32) for r in rows])
            )
        topk_values, topk_indices = f"{self.soft_label_column}_topk_values", f"{self.soft_label_column}_topk_indices"
        if topk_values in first and topk_indices in first:
            if self.num_classes is None:
                raise ValueError("SoftLabelCollator.num_classes is required to densify top-k soft labels")
            values = torch.tensor(np.stack([np.asarray(r[topk_values], dtype=np.float32) for r in rows]))
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
