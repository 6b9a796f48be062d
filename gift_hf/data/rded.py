"""RDED's selection: realistic, diverse crops of real images chosen by a teacher, stitched into a set.

"On the Diversity and Realism of Distilled Dataset" (Sun et al., CVPR 2024) builds a
distilled set without any optimisation, from the paper's description:

1. per class, draw candidate real images and ``crops_per_image`` random-resized crops of
   each (torchvision's ``RandomResizedCrop`` box, resized to the input size);
2. score every crop by the teacher's cross-entropy on its class (lower = more realistic
   and representative) and keep each image's best crop;
3. keep the ``factor²·ipc`` images whose best crop scores lowest, best first;
4. stitch them ``factor × factor`` into ``ipc`` images of the input size (each crop
   downsized to ``side / factor``, by area averaging): more, smaller patches per image
   add diversity at a fixed storage budget. ``factor = 1`` keeps the best whole crops.

:func:`build_rded_distilled` does this on any image dataset, the crops made and scored in
batches on the device; the result is saved like every other set with
:func:`~gift_hf.save_distilled` (add soft labels with :func:`~gift_hf.relabel`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Features, Image

from gift_hf.data.augment import resized_crop
from gift_hf.data.distilled import LABEL_COLUMN, DistilledInfo
from gift_hf.data.images import ImageTransform
from gift_hf.data.relabel import TeacherLike, describe_teacher, resolve_teachers
from gift_hf.data.selection import pick_split, selection_labels
from gift_hf.models.modeling import image_transform_for, teacher_logits

__all__ = ["build_rded_distilled", "random_resized_boxes", "score_crops", "select_crops", "stitch_patches"]

#: torchvision RandomResizedCrop's defaults.
DEFAULT_SCALE = (0.08, 1.0)
DEFAULT_RATIO = (3 / 4, 4 / 3)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: got {value!r}; expected a positive integer")
    return int(value)


def _range(name: str, value: Sequence[float], upper: float | None) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: got {value!r}; expected two numbers (low, high)") from None
    if not (0 < low <= high and (upper is None or high <= upper) and math.isfinite(high)):
        bound = f"0 < low <= high <= {upper:g}" if upper is not None else "0 < low <= high"
        raise ValueError(f"{name}: got {tuple(value)}; expected {bound}")
    return low, high


# ------------------------------------------------------------------------------ crops
def random_resized_boxes(
    rng: np.random.Generator,
    count: int,
    height: int,
    width: int,
    scale: Sequence[float] = DEFAULT_SCALE,
    ratio: Sequence[float] = DEFAULT_RATIO,
    attempts: int = 10,
) -> np.ndarray:
    """``count`` crop boxes ``(top, left, height, width)`` of an ``height × width`` image.

    torchvision's ``RandomResizedCrop.get_params``, vectorised: an area fraction uniform in
    ``scale`` and a log-uniform aspect ratio in ``ratio``; of ``attempts`` draws the first
    that fits wins, else the centre crop with the ratio clamped. Drawn from ``rng`` only.
    """
    (s_low, s_high), (r_low, r_high) = scale, ratio
    u = rng.random((count, attempts, 4))
    area = height * width * (s_low + u[..., 0] * (s_high - s_low))
    aspect = np.exp(math.log(r_low) + u[..., 1] * (math.log(r_high) - math.log(r_low)))
    cw, ch = np.round(np.sqrt(area * aspect)), np.round(np.sqrt(area / aspect))
    fits = (cw > 0) & (cw <= width) & (ch > 0) & (ch <= height)
    top, left = np.floor(u[..., 2] * (height - ch + 1)), np.floor(u[..., 3] * (width - cw + 1))
    first = fits.argmax(axis=1)  # 0 when none fits
    rows = np.arange(count)
    in_ratio = width / height
    fw, fh = (
        (width, round(width / r_low))
        if in_ratio < r_low
        else (round(height * r_high), height)
        if in_ratio > r_high
        else (width, height)
    )
    fallback = np.array([(height - fh) // 2, (width - fw) // 2, fh, fw], dtype=np.float64)
    boxes = np.stack([top[rows, first], left[rows, first], ch[rows, first], cw[rows, first]], axis=1)
    return np.where(fits.any(axis=1)[:, None], boxes, fallback).astype(np.int64)


def _crop_group(images: torch.Tensor, owner: np.ndarray, boxes: np.ndarray, size: int, batch_size: int) -> torch.Tensor:
    """uint8 crops ``(M, C, size, size)``: box ``boxes[m]`` of ``images[owner[m]]``, bilinear, in chunks."""
    out = []
    for start in range(0, len(owner), batch_size):
        idx = torch.as_tensor(owner[start : start + batch_size], device=images.device)
        box = torch.as_tensor(boxes[start : start + batch_size], device=images.device)
        crops = resized_crop(images[idx].float(), box[:, 0], box[:, 1], box[:, 2], box[:, 3], (size, size))
        out.append(crops.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


@torch.no_grad()
def score_crops(
    crops: torch.Tensor,
    label: int,
    teachers: Sequence[torch.nn.Module],
    transforms: Sequence[ImageTransform],
    batch_size: int = 256,
) -> torch.Tensor:
    """The teachers' cross-entropy on class ``label`` of each uint8 crop ``(M, C, H, W)``, as ``(M,)`` float32.

    Each teacher sees the crops normalised its own way (``transforms``); an ensemble's
    logits are averaged before the cross-entropy, as in :func:`~gift_hf.relabel`.
    """
    scores = []
    for start in range(0, crops.shape[0], batch_size):
        x = crops[start : start + batch_size].float() / 255.0
        total = None
        for model, transform in zip(teachers, transforms):
            mean = torch.tensor(transform.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(transform.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
            logits = teacher_logits(model, (x - mean) / std).float()
            total = logits if total is None else total + logits
        target = torch.full((x.shape[0],), label, dtype=torch.long, device=x.device)
        scores.append(F.cross_entropy(total / len(teachers), target, reduction="none"))
    return torch.cat(scores)


def select_crops(scores: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RDED's choice from a ``(images, crops_per_image)`` matrix of scores (lower is better).

    Each image keeps its best crop; the ``keep`` images with the lowest best score are
    returned best first, as ``(image indices, crop indices)``. Ties go to the earlier
    crop and the earlier image.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores: got shape {tuple(scores.shape)}; expected (images, crops_per_image)")
    if not 1 <= keep <= scores.shape[0]:
        raise ValueError(f"keep: got {keep}; expected 1 <= keep <= {scores.shape[0]} (the number of images)")
    best, crop = scores.min(dim=1)  # the first minimum on ties
    order = torch.sort(best, stable=True).indices[:keep]
    return order, crop[order]


def stitch_patches(patches: torch.Tensor, factor: int) -> torch.Tensor:
    """Groups of ``factor²`` patches ``(N·factor², C, S, S)`` → ``N`` images ``(N, C, S, S)``.

    Patch ``k`` of a group is downsized to ``S / factor`` by area averaging (the mean of
    each ``factor × factor`` block) and placed at row ``k // factor``, column
    ``k % factor``: for factor 2, top-left, top-right, bottom-left, bottom-right. uint8 in,
    uint8 out (rounded).
    """
    factor = _positive_int("factor", factor)
    n, channels, height, width = patches.shape
    if n % (factor * factor):
        raise ValueError(f"patches: got {n}; expected a multiple of factor² = {factor * factor}")
    if height % factor or width % factor:
        raise ValueError(f"factor: got {factor}; expected a divisor of the image size {height}×{width}")
    if factor == 1:
        return patches
    cell_h, cell_w = height // factor, width // factor
    small = F.interpolate(patches.float(), size=(cell_h, cell_w), mode="area")
    small = small.reshape(n // factor**2, factor, factor, channels, cell_h, cell_w)  # image, row, column
    stitched = small.permute(0, 3, 1, 4, 2, 5).reshape(n // factor**2, channels, height, width)
    return stitched.round().clamp(0, 255).to(patches.dtype) if patches.dtype == torch.uint8 else stitched


# ---------------------------------------------------------------------------- builder
def _teacher_transforms(teachers: list, transform: ImageTransform | None) -> list[ImageTransform]:
    if transform is not None:
        return [transform] * len(teachers)
    out = []
    for source, model, _ in teachers:
        if getattr(model, "config", None) is None:
            raise ValueError(
                f"teacher {describe_teacher(model, source)[0]!r} records no input (channels, size, "
                "normalisation); expected a gift_hf/transformers classifier, or pass transform= (an "
                "ImageTransform) and image_size="
            )
        out.append(image_transform_for(model))
    first = out[0]
    for (source, model, _), other in zip(teachers[1:], out[1:]):
        if (other.channels, other.image_size) != (first.channels, first.image_size):
            raise ValueError(
                f"teacher {describe_teacher(model, source)[0]!r} takes {other.channels}-channel "
                f"{other.image_size}px images but teacher 1 takes {first.channels}-channel "
                f"{first.image_size}px; an ensemble needs one input"
            )
    return out


def build_rded_distilled(
    dataset: Dataset | DatasetDict,
    teacher: TeacherLike | Sequence[TeacherLike],
    ipc: int,
    *,
    factor: int = 1,
    candidates_per_class: int = 300,
    crops_per_image: int = 5,
    scale: Sequence[float] = DEFAULT_SCALE,
    ratio: Sequence[float] = DEFAULT_RATIO,
    image_size: int | None = None,
    seed: int = 0,
    split: str = "train",
    label_column: str = "label",
    image_column: str = "image",
    source_dataset: str | None = None,
    expert_epoch: float | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    transform: ImageTransform | None = None,
    progress: bool = True,
    teacher_kwargs: dict[str, Any] | None = None,
) -> tuple[Dataset, DistilledInfo]:
    """RDED's distilled set: per class, the teacher's lowest-cross-entropy crops, stitched ``factor × factor``.

    Args:
        dataset: a real image dataset (``split`` is taken from a ``DatasetDict``).
        teacher: scores the crops: a model, a saved directory, a Hub id, or a list (an
            ensemble, logits averaged).
        ipc: images per class of the result.
        factor: patches per side of each image (``factor²`` crops per image); 1 keeps
            whole crops. RDED uses 2 on ImageNet-1K, 1 at small resolutions.
        candidates_per_class: real images drawn per class (all of a smaller class); at
            least ``factor²·ipc`` are needed.
        crops_per_image: random-resized crops scored per candidate image.
        scale, ratio: the crops' area fraction and aspect-ratio ranges (``RandomResizedCrop``'s).
        image_size: side of the result; default the teacher's input size. A multiple of ``factor``.
        seed: the same seed (and inputs) gives identical images.
        label_column, image_column: the source's class-id and image columns.
        source_dataset: recorded in the returned info.
        expert_epoch: score with the teacher's checkpoint of this epoch (a Trainer output_dir).
        batch_size: crops per teacher forward pass.
        device: where crops are made and scored (default: CUDA when available).
        transform: the teachers' input (channels, mean, std) when they do not record it.
        progress: show a progress bar over the classes.
        teacher_kwargs: keyword arguments for :func:`gift_hf.load_teacher`.

    Returns:
        ``(dataset, info)``: ``ipc`` images per class (``image`` + ``label``, class by
        class), and ``info`` naming the method (``rded``), seed, teacher and factor.
    """
    from tqdm.auto import tqdm

    ipc, factor = _positive_int("ipc", ipc), _positive_int("factor", factor)
    candidates_per_class = _positive_int("candidates_per_class", candidates_per_class)
    crops_per_image = _positive_int("crops_per_image", crops_per_image)
    batch_size = _positive_int("batch_size", batch_size)
    scale, ratio = _range("scale", scale, 1.0), _range("ratio", ratio, None)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: got {seed!r}; expected a non-negative integer")
    per_class = factor * factor * ipc
    if candidates_per_class < per_class:
        raise ValueError(
            f"candidates_per_class: got {candidates_per_class}; expected at least factor²·ipc = "
            f"{per_class} (one crop of each kept image)"
        )
    ds = pick_split(dataset, split)
    if image_column not in ds.column_names or not isinstance(ds.features[image_column], Image):
        raise ValueError(
            f"image_column: got {image_column!r}; expected a column of images (an Image feature) "
            f"among {ds.column_names}"
        )
    labels, num_classes = selection_labels(ds, label_column, ipc)
    counts = np.bincount(labels, minlength=num_classes)
    if counts.min() < per_class:
        cls = int(np.argmin(counts))
        raise ValueError(
            f"ipc: class {cls} has {int(counts[cls])} images but factor²·ipc = {factor}²·{ipc} = "
            f"{per_class} distinct images are needed; expected a smaller ipc or factor"
        )
    teachers = resolve_teachers(teacher, expert_epoch, teacher_kwargs)
    transforms = _teacher_transforms(teachers, transform)
    size = image_size if image_size is not None else transforms[0].image_size
    if size is None:
        raise ValueError(
            "image_size: got None and the teacher records no input size; expected the side of the distilled images"
        )
    size = _positive_int("image_size", size)
    if size % factor:
        raise ValueError(
            f"factor: got {factor}; expected a divisor of image_size {size} (each patch is image_size / factor pixels)"
        )
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    decode = ImageTransform(image_size=None, channels=transforms[0].channels, image_column=image_column)
    models = [model for _, model, _ in teachers]
    state = [(m, next(iter(m.parameters()), torch.empty(0)).device, m.training) for m in models]
    images_out, labels_out = [], []
    try:
        for model in models:
            model.eval().to(dev)
        for cls in tqdm(range(num_classes), desc="rded classes", disable=not progress, unit="class"):
            # one generator per class: a class's crops do not depend on the other classes
            rng = np.random.default_rng([int(seed), cls])
            rows = np.flatnonzero(labels == cls)
            rows = np.sort(rng.choice(rows, size=min(candidates_per_class, len(rows)), replace=False))
            arrays = [decode.decode(img) for img in ds.select(rows.tolist()).with_format(None)[image_column]]
            crops = torch.empty(len(rows) * crops_per_image, decode.channels, size, size, dtype=torch.uint8, device=dev)
            boxes = {
                i: random_resized_boxes(rng, crops_per_image, a.shape[0], a.shape[1], scale, ratio)
                for i, a in enumerate(arrays)
            }
            # images of one size are cropped together (stacked), whatever the mix of sizes
            for shape in sorted({a.shape for a in arrays}):
                members = [i for i, a in enumerate(arrays) if a.shape == shape]
                stack = torch.from_numpy(np.stack([arrays[i] for i in members])).permute(0, 3, 1, 2).to(dev)
                owner = np.repeat(np.arange(len(members)), crops_per_image)
                group_boxes = np.concatenate([boxes[i] for i in members])
                slots = (np.asarray(members)[:, None] * crops_per_image + np.arange(crops_per_image)).reshape(-1)
                crops[torch.as_tensor(slots, device=dev)] = _crop_group(stack, owner, group_boxes, size, batch_size)
            scores = score_crops(crops, cls, models, transforms, batch_size).view(len(rows), crops_per_image)
            image, crop = select_crops(scores.cpu(), per_class)
            kept = crops[(image * crops_per_image + crop).to(dev)]
            images_out.append(stitch_patches(kept, factor).cpu())
            labels_out += [cls] * ipc
    finally:
        for model, where, training in state:  # a caller's model is given back where and as it was
            model.to(where).train(training)
    pixels = torch.cat(images_out).permute(0, 2, 3, 1).numpy()
    from PIL import Image as PILImage

    mode = "L" if decode.channels == 1 else "RGB"
    pictures = [PILImage.fromarray(p[..., 0] if mode == "L" else p, mode=mode) for p in pixels]
    feature = ds.features[label_column]
    names = feature.names if isinstance(feature, ClassLabel) else [str(i) for i in range(num_classes)]
    features = Features({"image": Image(), LABEL_COLUMN: ClassLabel(names=names)})
    # the source's license travels to the card, as with the real-image selections
    out = Dataset.from_dict(
        {"image": pictures, LABEL_COLUMN: labels_out},
        features=features,
        info=DatasetInfo(description="RDED selection (gift_hf)", license=ds.info.license, features=features),
    )
    ids = [describe_teacher(model, source) for source, model, _ in teachers]
    info = DistilledInfo(
        source_dataset=source_dataset,
        method="rded",
        ipc=ipc,
        seed=int(seed),
        num_classes=num_classes,
        image_size=[size, size],
        # the normalisation the crops were scored with, for students trained on them
        image_mean=list(transforms[0].mean),
        image_std=list(transforms[0].std),
        extra={
            "factor": factor,
            "selection_teacher": ids[0][0] if len(ids) == 1 else [i for i, _ in ids],
            "selection_teacher_architecture": ids[0][1],
            "candidates_per_class": candidates_per_class,
            "crops_per_image": crops_per_image,
            "crop_scale": list(scale),
            "crop_ratio": list(ratio),
            "scored_by": "teacher cross-entropy on the class (lowest kept)",
            **({"selection_expert_epoch": float(expert_epoch)} if expert_epoch is not None else {}),
        },
    )
    return out, info
