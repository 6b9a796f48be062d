"""Helpers of the distilled-dataset tests: tiny datasets and teachers made in the test."""

from __future__ import annotations

import io

import numpy as np
import torch
from datasets import Array3D, ClassLabel, Dataset, Features, Image, List, Value
from PIL import Image as PILImage

from gift_hf import create_model
from gift_hf.data.images import DIGITS_MEAN, DIGITS_STD

NAMES = ["cat", "dog", "owl"]


def png_bytes(array: np.ndarray) -> bytes:
    """(H, W) or (H, W, 3) uint8 → PNG bytes."""
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def rgb_dataset(
    n: int = 6, size: int = 4, seed: int = 0, soft: str | None = "dense", dtype: str = "float32", k: int = 2
) -> Dataset:
    """``n`` random RGB images of 3 classes with dense or top-k soft labels (probabilities)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    columns = {"image": [{"bytes": png_bytes(p), "path": None} for p in pixels], "label": [i % 3 for i in range(n)]}
    features = {"image": Image(), "label": ClassLabel(names=NAMES)}
    probs = rng.dirichlet(np.ones(3), size=n).astype(dtype)
    if soft == "dense":
        columns["soft_label"] = probs
        features["soft_label"] = List(Value(dtype), length=3)
    elif soft == "topk":
        idx = np.argsort(-probs, axis=1)[:, :k]
        columns["soft_label_topk_values"] = np.take_along_axis(probs, idx, 1)
        columns["soft_label_topk_indices"] = idx.astype("int16")
        features["soft_label_topk_values"] = List(Value(dtype), length=k)
        features["soft_label_topk_indices"] = List(Value("int16"), length=k)
    return Dataset.from_dict(columns, features=Features(features))


def pixel_dataset(n: int = 6, seed: int = 0, size: int = 8) -> Dataset:
    """Synthetic float images (normalised, negative values) in a ``pixel_values`` column."""
    rng = np.random.default_rng(seed)
    return Dataset.from_dict(
        {"pixel_values": rng.normal(size=(n, 1, size, size)).astype("float32"), "label": [i % 3 for i in range(n)]},
        features=Features({"pixel_values": Array3D((1, size, size), "float32"), "label": ClassLabel(names=NAMES)}),
    )


def digits_teacher(seed: int = 0):
    """A fresh ConvNet-D3 for 8×8 grayscale digits that records the digits normalisation."""
    torch.manual_seed(seed)
    return create_model(
        "gift_convnet_d3", num_classes=10, in_chans=1, img_size=8, image_mean=DIGITS_MEAN, image_std=DIGITS_STD
    )


def digits_pixels(split) -> torch.Tensor:
    """The normalised (N, 1, 8, 8) tensor of a digits split, computed by hand."""
    arrays = np.stack([np.asarray(img, dtype=np.float32) / 255.0 for img in split["image"]])
    return (torch.from_numpy(arrays)[:, None] - DIGITS_MEAN[0]) / DIGITS_STD[0]
