"""Converters from the research repos' formats to distilled datasets in the Hub layout.

- :func:`from_tensor_file`: a ``torch.save`` file ``{"data": N×C×H×W, "label": N or N×C}``
  (also a ``(data, label)`` pair), the common format of distillation repos. Loaded with
  ``torch.load(weights_only=True)``: files that need arbitrary objects unpickled are refused.
- :func:`from_image_folder`: one sub-folder of images per class (the SRe2L / RDED output
  layout); class names are the folder names in sorted order.
- :func:`convert`: either of these, then :func:`~gift_hf.save_distilled`.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from datasets import Array3D, ClassLabel, Dataset, Features, Image, List, Value

from gift_hf.data.distilled import (
    IMAGE_COLUMN,
    LABEL_COLUMN,
    PIXEL_COLUMN,
    SOFT_LABEL_COLUMN,
    DistilledInfo,
    save_distilled,
)

__all__ = ["IMAGE_EXTENSIONS", "convert", "from_image_folder", "from_tensor_file"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
IMAGE_FORMATS = ("auto", "image", "pixel_values")


def _balanced_ipc(labels: np.ndarray, num_classes: int) -> int | None:
    """IPC when every class has the same number of rows, else None."""
    counts = np.bincount(labels, minlength=num_classes)
    return int(counts[0]) if counts.size and (counts == counts[0]).all() and counts[0] > 0 else None


def _class_names(class_names: Sequence[str] | None, num_classes: int, source: str) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    names = [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(
            f"class_names: got {len(names)} names but {source} has {num_classes} classes; expected one name per class"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"class_names: got duplicate names {names}; expected distinct names")
    return names


def _load_tensor_file(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch wraps the weights-only unpickler's reason in its context
        reason = str(err.__context__ or err).splitlines()[0]
        match = re.search(r"Unsupported global: GLOBAL (\S+)", reason)
        if match:
            raise ValueError(
                f"tensor file {str(path)!r}: refused to load because it needs arbitrary Python objects "
                f"unpickled (it references {match.group(1)}; torch.load(weights_only=True) allows only "
                "tensors and plain containers); expected only tensors in a dict/list, e.g. "
                "{'data': N×C×H×W, 'label': N or N×C}"
            ) from None
        raise ValueError(f"tensor file {str(path)!r} cannot be read ({reason}); expected a torch.save file") from None
    except Exception as err:
        raise ValueError(
            f"tensor file {str(path)!r} cannot be read ({type(err).__name__}: {err}); expected a torch.save file"
        ) from None


def _encode_png(image: np.ndarray) -> bytes:
    """(C, H, W) uint8 → PNG bytes (lossless)."""
    from PIL import Image as PILImage

    pil = (
        PILImage.fromarray(image[0], mode="L")
        if image.shape[0] == 1
        else PILImage.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)), mode="RGB")
    )
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def from_tensor_file(
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    data_key: str = "data",
    label_key: str = "label",
    image_format: str = "auto",
    soft_label_kind: str = "logits",
    source_dataset: str | None = None,
    method: str | None = None,
) -> tuple[Dataset, DistilledInfo]:
    """A tensor file of images and labels → ``(dataset, info)``.

    Args:
        path: a ``torch.save`` file holding ``{data_key: (N, C, H, W), label_key: (N,) or
            (N, K)}`` or a ``(data, label)`` pair.
        class_names: one name per class (default ``"0"``, ``"1"``, …).
        image_format: ``"image"`` (8-bit PNG ``image`` column; float data must lie in
            [0, 1] and is quantised), ``"pixel_values"`` (float ``Array3D``, lossless for
            normalised/ZCA data), or ``"auto"`` (uint8 → image, float → pixel_values).
        soft_label_kind: what ``(N, K)`` labels are, ``"logits"`` or ``"probabilities"``;
            they become ``soft_label`` and ``label`` is their argmax.
        source_dataset, method: recorded in the info.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tensor file {str(path)!r} not found; expected a torch.save file")
    if not path.is_file():
        raise ValueError(f"tensor file {str(path)!r} is not a file; expected a torch.save file")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format: got {image_format!r}; expected one of {IMAGE_FORMATS}")
    if soft_label_kind not in ("logits", "probabilities"):
        raise ValueError(f"soft_label_kind: got {soft_label_kind!r}; expected 'logits' or 'probabilities'")
    obj = _load_tensor_file(path)
    if isinstance(obj, dict):
        missing = [k for k in (data_key, label_key) if k not in obj]
        if missing:
            raise ValueError(
                f"tensor file {str(path)!r} has keys {sorted(map(str, obj))} but no {missing[0]!r}; "
                f"expected {{{data_key!r}: N×C×H×W, {label_key!r}: N or N×C}} (see data_key/label_key)"
            )
        data, label = obj[data_key], obj[label_key]
    elif isinstance(obj, (list, tuple)) and len(obj) == 2:
        data, label = obj
    else:
        raise ValueError(
            f"tensor file {str(path)!r} holds a {type(obj).__name__}; expected a dict "
            f"{{{data_key!r}: ..., {label_key!r}: ...}} or a (data, label) pair"
        )
    if not torch.is_tensor(data) or data.dim() != 4:
        shape = tuple(data.shape) if torch.is_tensor(data) else type(data).__name__
        raise ValueError(f"{data_key!r} in {str(path)!r}: got {shape}; expected a tensor of shape (N, C, H, W)")
    if data.shape[1] > 4 and data.shape[3] <= 4:
        # (N, H, W, C) saved as is would become C-row images of W-pixel-wide "channels"
        raise ValueError(
            f"{data_key!r} in {str(path)!r} has shape {tuple(data.shape)}, which is channels-last "
            f"(N, H, W, C) with C={data.shape[3]}; expected channels-first (N, C, H, W): save "
            "data.permute(0, 3, 1, 2) instead"
        )
    if not torch.is_tensor(label) or label.dim() not in (1, 2):
        shape = tuple(label.shape) if torch.is_tensor(label) else type(label).__name__
        raise ValueError(f"{label_key!r} in {str(path)!r}: got {shape}; expected a tensor of shape (N,) or (N, C)")
    n = data.shape[0]
    if n == 0:
        raise ValueError(f"{data_key!r} in {str(path)!r} has 0 images; expected at least one")
    if label.shape[0] != n:
        raise ValueError(
            f"{label_key!r} in {str(path)!r} has {label.shape[0]} rows but {data_key!r} has {n}; "
            "expected one label per image"
        )

    soft = None
    if label.dim() == 2:
        soft = label.detach().float() if label.dtype == torch.float64 else label.detach()
        if not soft.is_floating_point():
            raise ValueError(
                f"{label_key!r} in {str(path)!r} is (N, C) of dtype {label.dtype}; expected float soft labels"
            )
        hard = soft.float().argmax(1).numpy()
        num_classes = soft.shape[1]
    else:
        if label.is_floating_point():
            if not torch.equal(label, label.round()):
                raise ValueError(
                    f"{label_key!r} in {str(path)!r} holds non-integer values {label[:5].tolist()}; "
                    "expected class ids (N,) or soft labels (N, C)"
                )
        hard = label.long().numpy()
        if hard.min() < 0:
            raise ValueError(f"{label_key!r} in {str(path)!r} has class id {int(hard.min())}; expected ids >= 0")
        num_classes = len(class_names) if class_names is not None else int(hard.max()) + 1
    names = _class_names(class_names, num_classes, f"{label_key!r} in {str(path)!r}")
    if hard.max() >= num_classes:
        raise ValueError(
            f"{label_key!r} in {str(path)!r} has class id {int(hard.max())}; expected ids in "
            f"[0, {num_classes - 1}] for {num_classes} class names"
        )

    fmt = image_format
    if fmt == "auto":
        fmt = "image" if data.dtype == torch.uint8 else "pixel_values"
    columns: dict[str, Any] = {}
    features: dict[str, Any] = {}
    if fmt == "image":
        if data.shape[1] not in (1, 3):
            raise ValueError(
                f"{data_key!r} in {str(path)!r} has {data.shape[1]} channels; image_format='image' "
                "expects 1 or 3 (use image_format='pixel_values')"
            )
        pixels = data
        if data.is_floating_point():
            if not bool(torch.isfinite(data).all()) or float(data.min()) < 0 or float(data.max()) > 1:
                raise ValueError(
                    f"{data_key!r} in {str(path)!r}: float values must lie in [0, 1] to be stored as "
                    "8-bit images (image_format='image'); use image_format='pixel_values' for "
                    "normalised data"
                )
            pixels = (data.float() * 255).round()
        array = pixels.to(torch.uint8).numpy()
        columns[IMAGE_COLUMN] = [{"bytes": _encode_png(img), "path": None} for img in array]
        features[IMAGE_COLUMN] = Image()
    else:
        dtype = "float16" if data.dtype == torch.float16 else "float32"
        array = data.numpy().astype(dtype) if data.is_floating_point() else data.float().div(255).numpy()
        columns[PIXEL_COLUMN] = array
        features[PIXEL_COLUMN] = Array3D(shape=tuple(array.shape[1:]), dtype=dtype)
    columns[LABEL_COLUMN] = hard.tolist()
    features[LABEL_COLUMN] = ClassLabel(names=names)
    if soft is not None:
        dtype = "float16" if soft.dtype == torch.float16 else "float32"
        columns[SOFT_LABEL_COLUMN] = soft.numpy().astype(dtype)
        features[SOFT_LABEL_COLUMN] = List(Value(dtype), length=num_classes)
    ds = Dataset.from_dict(columns, features=Features(features))
    info = DistilledInfo(
        source_dataset=source_dataset,
        method=method,
        ipc=_balanced_ipc(hard, num_classes),
        num_classes=num_classes,
        soft_label_kind=soft_label_kind if soft is not None else None,
        image_size=[int(data.shape[2]), int(data.shape[3])],
    )
    return ds, info


def _refuse_outside_link(entry: Path, inside: Path, root: Path) -> None:
    """Refuse a symbolic link that leads out of the input folder (its files would be embedded)."""
    if entry.is_symlink() and not entry.resolve().is_relative_to(inside):
        raise ValueError(
            f"image folder {str(root)!r}: {str(entry)!r} is a symbolic link to {str(entry.resolve())!r}, "
            "outside the input folder; refused so that no file from elsewhere is embedded in the "
            "dataset. Copy the images into the folder (or remove the link)"
        )


def from_image_folder(
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    source_dataset: str | None = None,
    method: str | None = None,
) -> tuple[Dataset, DistilledInfo]:
    """An image folder with one sub-folder per class → ``(dataset, info)``.

    Classes are the sub-folders in sorted order (``class_names`` may rename them, in that
    order); every file with an image extension is read as is (bytes kept, so JPEGs stay
    JPEGs) and decoded once to refuse corrupt files.
    """
    from PIL import Image as PILImage

    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"image folder {str(root)!r} not found; expected one sub-folder per class")
    if not root.is_dir():
        raise ValueError(f"image folder {str(root)!r} is not a directory; expected one sub-folder per class")
    inside = root.resolve()
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in folders:
        _refuse_outside_link(folder, inside, root)
    if not folders:
        raise ValueError(f"image folder {str(root)!r} has no class sub-folders; expected <root>/<class>/<image>")
    names = _class_names(class_names or [f.name for f in folders], len(folders), f"image folder {str(root)!r}")
    images, labels, sizes = [], [], set()
    for cls, folder in enumerate(folders):
        files = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
        if not files:
            raise ValueError(
                f"class folder {str(folder)!r} has no images; expected files with one of the "
                f"extensions {IMAGE_EXTENSIONS}"
            )
        for file in files:
            _refuse_outside_link(file, inside, root)
            data = file.read_bytes()
            try:
                with PILImage.open(io.BytesIO(data)) as img:
                    img.load()
                    sizes.add((img.height, img.width))
            except Exception as err:
                raise ValueError(
                    f"image file {str(file)!r} cannot be decoded ({type(err).__name__}: {err}); expected a valid image"
                ) from None
            images.append({"bytes": data, "path": file.name})
            labels.append(cls)
    features = Features({IMAGE_COLUMN: Image(), LABEL_COLUMN: ClassLabel(names=names)})
    ds = Dataset.from_dict({IMAGE_COLUMN: images, LABEL_COLUMN: labels}, features=features)
    info = DistilledInfo(
        source_dataset=source_dataset,
        method=method,
        ipc=_balanced_ipc(np.asarray(labels), len(names)),
        num_classes=len(names),
        # one size, or none recorded: a card must not claim the first image's size for all
        image_size=list(next(iter(sizes))) if len(sizes) == 1 else None,
    )
    return ds, info


def convert(
    input_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    input_format: str = "auto",
    overwrite: bool = False,
    license: str | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    **kwargs: Any,
) -> tuple[Path, DistilledInfo]:
    """Convert a tensor file or an image folder and save it in the Hub layout.

    ``input_format`` is ``"tensor"``, ``"folder"`` or ``"auto"`` (a directory is a
    folder); ``kwargs`` go to :func:`from_tensor_file` / :func:`from_image_folder`.
    ``image_mean``/``image_std`` are recorded in the card; ``license`` defaults to the
    source's (:func:`gift_hf.save_distilled`). ``overwrite`` replaces only a dataset gift_hf
    wrote, and an ``output_dir`` that holds the input is refused.

    Returns:
        ``(output_dir, info)``.
    """
    if input_format not in ("auto", "tensor", "folder"):
        raise ValueError(f"input_format: got {input_format!r}; expected 'auto', 'tensor' or 'folder'")
    source, target = Path(input_path).expanduser().resolve(), Path(output_dir).expanduser().resolve()
    if source == target or source.is_relative_to(target):
        raise ValueError(
            f"output_dir {os.fspath(output_dir)!r} holds the input {os.fspath(input_path)!r}; writing the "
            "dataset there would replace the input. Choose an output_dir outside the input"
        )
    if input_format == "auto":
        input_format = "folder" if os.path.isdir(input_path) else "tensor"
    if input_format == "folder":
        ds, info = from_image_folder(input_path, **kwargs)
    else:
        ds, info = from_tensor_file(input_path, **kwargs)
    if image_mean is not None or image_std is not None:
        info = info.replace(
            image_mean=list(image_mean) if image_mean is not None else None,
            image_std=list(image_std) if image_std is not None else None,
        )
    return save_distilled(ds, output_dir, info, overwrite=overwrite, license=license), info
