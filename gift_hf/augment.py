"""Batch augmentation inside the training step, on the batch's device: DSA, CutMix/MixUp, ZCA.

:class:`~gift_hf.GIFTTrainer` calls the augmenter on every *training* batch after
collation and device placement and *before* the student and the teacher see it, so an
online teacher relabels exactly the (augmented, mixed) images the student learns from.

- **DSA** (Zhao & Bilen, "Dataset Condensation with Differentiable Siamese Augmentation",
  2021): ``color``, ``crop``, ``cutout``, ``flip``, ``scale``, ``rotate`` with the reference
  ranges (:class:`DSAParams`), chosen by a strategy string such as
  ``"color_crop_cutout_flip_scale_rotate"``. As in the reference evaluation code
  (``ParamDiffAug.aug_mode = "S"``) one op is drawn per batch by default
  (``augmentation_mode="single"``) and its parameters are drawn per image;
  ``augmentation_mode="all"`` applies every op in the order written.
- **MixUp / CutMix** through timm's :class:`~timm.data.Mixup` (one ``λ ~ Beta(β, β)`` per
  batch, image ``i`` mixed with image ``B−1−i``, CutMix ``λ`` corrected to the pasted area).
  Hard labels become mixed one-hot distributions ``(B, C)``; stored soft labels are mixed
  with the same coefficients.
- **ZCA whitening** (:class:`ZCA`) fitted on training images,
  saved next to the model as ``zca.safetensors`` and applied by the trainer to every batch
  it prepares: training (student *and* teacher input) and evaluation alike.

Randomness comes from one ``torch.Generator`` per process, reseeded for every batch from
``(seed, rank, step, call)``: a run is reproducible under a seed, every DDP rank draws its
own parameters, and a resumed run draws exactly what the uninterrupted one drew at the same
step, with no generator state to checkpoint (the trainer sets the step through a
``TrainerCallback``; see :meth:`BatchAugmenter.set_step`).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import kornia.augmentation as K
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from timm.data import Mixup

from .files import atomic_write

__all__ = [
    "AUGMENTATION_MODES",
    "DSA_OPS",
    "MIX_MODES",
    "ZCA_FILE",
    "BatchAugmenter",
    "batch_seed",
    "DSAParams",
    "ZCA",
    "build_augmenter",
    "fit_zca",
    "parse_strategy",
]

DSA_OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
"""DSA ops, in the order of the reference strategy string."""
AUGMENTATION_MODES = ("single", "all")
"""``single``: one op drawn per batch (the reference evaluation); ``all``: every op in turn."""
MIX_MODES = ("none", "mixup", "cutmix", "both")
"""``both`` picks CutMix or MixUp with probability 1/2 per batch (timm's ``switch_prob``)."""
ZCA_FILE = "zca.safetensors"

Tensor = torch.Tensor


def parse_strategy(strategy: str) -> list[str]:
    """``"flip_crop"`` → ``["flip", "crop"]``; ``"none"``/``""`` → ``[]``.

    Raises a ``ValueError`` naming the field, the unknown or repeated ops and the valid ops.
    """
    if not isinstance(strategy, str):
        raise ValueError(f"augmentation: got {strategy!r}; expected a string of ops joined by '_' or 'none'")
    if strategy.strip().lower() in ("", "none"):
        return []
    ops = strategy.strip().split("_")
    unknown = [op for op in ops if op not in DSA_OPS]
    if unknown:
        raise ValueError(
            f"augmentation: unknown op(s) {unknown} in {strategy!r}; expected 'none' or ops from "
            f"{list(DSA_OPS)} joined by '_' (e.g. 'color_crop_cutout_flip_scale_rotate')"
        )
    repeated = sorted({op for op in ops if ops.count(op) > 1})
    if repeated:
        raise ValueError(f"augmentation: op(s) {repeated} repeated in {strategy!r}; name each op once")
    return ops


@dataclass(frozen=True)
class DSAParams:
    """Parameter ranges of the DSA ops; the defaults are the reference ``ParamDiffAug``.

    All ops act on *normalised* pixel values (mean/std, or ZCA), as the reference does.
    """

    brightness: float = 1.0
    """``x + (u − 0.5) · brightness``, ``u ~ U(0, 1)`` per image."""
    saturation: float = 2.0
    """``m_c + (x − m_c) · u · saturation`` with ``m_c`` the per-pixel channel mean."""
    contrast: float = 0.5
    """``m + (x − m) · (u + contrast)`` with ``m`` the image mean."""
    crop_pad: float = 0.125
    """Integer translation by up to ``round(crop_pad · size)`` pixels per axis, zero fill."""
    cutout: float = 0.5
    """Zero a ``round(cutout · H) × round(cutout · W)`` box centred uniformly, clipped at the border."""
    flip: float = 0.5
    """Probability of a horizontal flip, per image."""
    scale: float = 1.2
    """Per-axis scale factor in ``[1/scale, scale]``."""
    rotate: float = 15.0
    """Rotation in ``[−rotate, rotate]`` degrees."""


@contextlib.contextmanager
def _seeded_global_rngs(seed: int) -> Iterator[None]:
    """Run a block with torch's CPU RNG and numpy's global RNG seeded from ``seed``, then restore both.

    kornia's augmentations sample from torch's global CPU generator and timm's Mixup from
    numpy's global RNG; neither takes a generator. Seeding both from our own generator
    makes them reproducible and per-rank without disturbing the RNG streams the Trainer
    saves and restores (dataloader order, dropout).
    """
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):  # CPU only: kornia samples on CPU (its modules are never moved)
        torch.default_generator.manual_seed(seed)  # unlike torch.manual_seed, leaves CUDA generators alone
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)


# ------------------------------------------------------------------------------ augmenter
def batch_seed(seed: int, rank: int, step: int, call: int) -> int:
    """The 64-bit seed of the generator for one batch: a hash of its (seed, rank, step, call)."""
    entropy = np.random.SeedSequence([seed, rank, step, call]).generate_state(2, np.uint32)
    return int(entropy[0]) << 32 | int(entropy[1])


class BatchAugmenter:
    """DSA ops then CutMix/MixUp on a batch, on the batch's device, reproducible by seed.

    Args:
        ops: DSA ops, or a strategy string (see :func:`parse_strategy`).
        mode: ``"single"`` (one op drawn per batch, the reference) or ``"all"``.
        mix: ``"none"``, ``"mixup"``, ``"cutmix"`` or ``"both"``.
        mix_prob: probability that a batch is mixed.
        mix_beta: ``β`` of ``λ ~ Beta(β, β)`` (timm's ``mixup_alpha``/``cutmix_alpha``).
        num_classes: needed to turn class-id labels into mixed distributions.
        seed: the run's seed.
        rank: this process's index; each rank draws its own parameters.
        params: the DSA ranges.

    Calling it maps ``(pixel_values, labels, soft_labels)`` to the same triple; labels are
    returned as ``(B, C)`` float distributions when the batch was mixed, unchanged otherwise.
    """

    def __init__(
        self,
        ops: Sequence[str] | str = (),
        mode: str = "single",
        mix: str = "none",
        mix_prob: float = 1.0,
        mix_beta: float = 1.0,
        num_classes: int | None = None,
        seed: int = 0,
        rank: int = 0,
        params: DSAParams | None = None,
    ) -> None:
        self.ops = parse_strategy(ops if isinstance(ops, str) else "_".join(ops))
        if mode not in AUGMENTATION_MODES:
            raise ValueError(f"augmentation_mode: got {mode!r}; expected one of {AUGMENTATION_MODES}")
        if mix not in MIX_MODES:
            raise ValueError(f"mix: got {mix!r}; expected one of {MIX_MODES}")
        if not 0.0 <= mix_prob <= 1.0:
            raise ValueError(f"mix_prob: got {mix_prob}; expected a probability in [0, 1]")
        if not (np.isfinite(mix_beta) and mix_beta > 0):
            raise ValueError(f"mix_beta: got {mix_beta}; expected a finite number > 0")
        self.mode = mode
        self.mix = mix
        self.mix_prob = mix_prob
        self.mix_beta = mix_beta
        self.num_classes = num_classes
        self.params = params or DSAParams()
        self.seed, self.rank = int(seed), int(rank)
        self.generator = torch.Generator()
        self.set_step(0)
        self._kornia: dict[tuple[str, int, int], torch.nn.Module] = {}
        self._mixer: Mixup | None = None
        if mix != "none":
            # label_smoothing=0: GIFT smooths the (mixed) hard label itself; mode="batch": one
            # λ per batch as in the CutMix/MixUp papers and the distillation evaluations.
            self._mixer = Mixup(
                mixup_alpha=mix_beta if mix in ("mixup", "both") else 0.0,
                cutmix_alpha=mix_beta if mix in ("cutmix", "both") else 0.0,
                prob=mix_prob,
                switch_prob=0.5,
                mode="batch",
                correct_lam=True,
                label_smoothing=0.0,
            )

    def __repr__(self) -> str:
        ops = "_".join(self.ops) or "none"
        return (
            f"{type(self).__name__}(ops={ops!r}, mode={self.mode!r}, mix={self.mix!r}, "
            f"mix_prob={self.mix_prob}, mix_beta={self.mix_beta})"
        )

    # --------------------------------------------------------------------------- state
    def set_step(self, step: int) -> None:
        """Draw the following batches as those of optimizer step ``step`` (its micro-batches in order).

        The parameters of a batch depend only on ``(seed, rank, step, call within the
        step)``, so a run resumed at step ``s`` repeats the uninterrupted run exactly.
        """
        self.step, self.calls = int(step), 0

    def _reseed(self) -> None:
        self.generator.manual_seed(batch_seed(self.seed, self.rank, self.step, self.calls))
        self.calls += 1

    # ------------------------------------------------------------------------- helpers
    def _draw_seed(self) -> int:
        return int(torch.randint(0, 2**62, (1,), generator=self.generator))

    def _rand(self, *shape: int, like: Tensor) -> Tensor:
        # Drawn on CPU from our generator, then moved: identical numbers on every device.
        return torch.rand(*shape, generator=self.generator).to(device=like.device, dtype=like.dtype)

    def _kornia_op(self, op: str, height: int, width: int) -> torch.nn.Module:
        key = (op, height, width)
        if key not in self._kornia:
            p = self.params
            if op == "flip":
                module = K.RandomHorizontalFlip(p=p.flip)
            elif op == "crop":
                # Padding by the shift then a random crop of the original size = an integer
                # translation in [-shift, shift] with zero fill, the reference `rand_crop`.
                pad_w, pad_h = int(width * p.crop_pad + 0.5), int(height * p.crop_pad + 0.5)
                module = K.RandomCrop((height, width), padding=(pad_w, pad_h), fill=0.0, p=1.0)
            elif op == "scale":
                s = p.scale
                module = K.RandomAffine(degrees=0.0, scale=(1 / s, s, 1 / s, s), align_corners=True, p=1.0)
            elif op == "rotate":
                module = K.RandomRotation(degrees=p.rotate, align_corners=True, p=1.0)
            else:  # pragma: no cover - guarded by parse_strategy
                raise ValueError(op)
            self._kornia[key] = module
        return self._kornia[key]

    # ------------------------------------------------------------------------- DSA ops
    def _color(self, x: Tensor) -> Tensor:
        # Hand-written: kornia's brightness/contrast/saturation clamp to [0, 1], scale
        # contrast about 0 and convert saturation through HSV (RGB only); DSA acts on
        # normalised, unbounded values, about the channel / image mean, any channel count.
        p = self.params
        u = self._rand(3, x.shape[0], 1, 1, 1, like=x)
        x = x + (u[0] - 0.5) * p.brightness
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (u[1] * p.saturation) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * (u[2] + p.contrast) + mean

    def _cutout(self, x: Tensor) -> Tensor:
        # Hand-written: kornia's RandomErasing keeps the box inside the image; DSA centres
        # it uniformly and clips it at the border, so border boxes erase less.
        b, _, h, w = x.shape
        ch, cw = int(h * self.params.cutout + 0.5), int(w * self.params.cutout + 0.5)
        cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=self.generator).to(x.device)
        cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=self.generator).to(x.device)
        top, left = cy - ch // 2, cx - cw // 2
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        box = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
        return x * (~box).unsqueeze(1).to(x.dtype)

    def _apply_op(self, op: str, x: Tensor) -> Tensor:
        if op == "color":
            return self._color(x)
        if op == "cutout":
            return self._cutout(x)
        module = self._kornia_op(op, x.shape[-2], x.shape[-1])
        with _seeded_global_rngs(self._draw_seed()):
            return module(x)

    # ------------------------------------------------------------------------------ mix
    def _dense(self, labels: Tensor) -> Tensor:
        if labels.dim() == 2:
            return labels.float()
        if self.num_classes is None:
            raise ValueError("mixing class-id labels needs num_classes (the student's number of classes)")
        return F.one_hot(labels.long(), self.num_classes).float()

    def _mix(self, x: Tensor, labels: Tensor | None, soft_labels: Tensor | None):
        b = x.shape[0]
        n = b - b % 2  # timm pairs image i with B-1-i and needs an even batch; an odd last image stays unmixed
        if n < 2:
            return x, labels, soft_labels
        assert self._mixer is not None
        # timm mixes a target with the same λ and pairing as the images. Passing the target
        # `arange(n)` over `n` "classes" returns the n×n mixing matrix M itself
        # (M = λ·I + (1−λ)·flip), so any label tensor is mixed exactly as the images: M @ labels.
        self._mixer.num_classes = n
        with _seeded_global_rngs(self._draw_seed()):
            mixed, matrix = self._mixer(x[:n].clone(), torch.arange(n, device=x.device))
        if bool((matrix.diagonal() == 1).all()):  # this batch was not mixed (mix_prob)
            return x, labels, soft_labels
        full = torch.eye(b, dtype=torch.float64, device=x.device)
        full[:n, :n] = matrix.double()
        x = torch.cat([mixed, x[n:]]) if n < b else mixed
        # float64: exact convex combinations (no TF32 matmul on GPUs), then back to float32.
        if labels is not None:
            labels = (full @ self._dense(labels).double()).float()
        if soft_labels is not None:
            # Stored logits are mixed linearly too: softmax(λ·a + (1−λ)·b) ∝ p_a^λ · p_b^(1−λ).
            # Stored probabilities (soft_label_kind="probabilities") mix as probabilities.
            soft_labels = (full @ soft_labels.double()).to(soft_labels.dtype)
        return x, labels, soft_labels

    # ----------------------------------------------------------------------------- call
    def __call__(
        self, pixel_values: Tensor, labels: Tensor | None = None, soft_labels: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        if pixel_values.dim() != 4:
            raise ValueError(f"pixel_values must have shape (batch, channels, H, W), got {tuple(pixel_values.shape)}")
        self._reseed()
        dtype = pixel_values.dtype
        # Half precision (e.g. DeepSpeed-cast inputs) is augmented in float32: warps and
        # means lose too much in bf16, and kornia's warps need float32 on CPU.
        x = pixel_values.float() if dtype in (torch.float16, torch.bfloat16) else pixel_values
        if self.ops:
            if self.mode == "single":
                ops = [self.ops[int(torch.randint(len(self.ops), (1,), generator=self.generator))]]
            else:
                ops = self.ops
            for op in ops:
                x = self._apply_op(op, x)
        if self._mixer is not None:
            x, labels, soft_labels = self._mix(x, labels, soft_labels)
        return x.to(dtype).contiguous(), labels, soft_labels


def build_augmenter(args: Any, num_classes: int | None = None, rank: int | None = None) -> BatchAugmenter | None:
    """The augmenter a :class:`~gift_hf.GIFTConfig` asks for, or ``None`` if it asks for none.

    Seeded with ``args.seed`` and ``rank`` (default ``args.process_index``), so each DDP
    process draws its own parameters.
    """
    ops = parse_strategy(getattr(args, "augmentation", "none"))
    mix = getattr(args, "mix", "none")
    if not ops and mix == "none":
        return None
    if rank is None:
        rank = int(getattr(args, "process_index", 0))
    return BatchAugmenter(
        ops,
        mode=getattr(args, "augmentation_mode", "single"),
        mix=mix,
        mix_prob=getattr(args, "mix_prob", 1.0),
        mix_beta=getattr(args, "mix_beta", 1.0),
        num_classes=num_classes,
        seed=int(getattr(args, "seed", 0)),
        rank=rank,
    )


# ------------------------------------------------------------------------------------ ZCA
class ZCA(torch.nn.Module):
    """ZCA whitening of image batches, saved and loaded as ``zca.safetensors``.

    ``W = U · diag(1/√(S + ε)) · Uᵀ`` from the (unbiased) covariance ``U S Uᵀ`` of the
    flattened training images; ``zca(x) = (x − μ) · W`` reshaped back to ``(B, C, H, W)`` (the
    transform of kornia's ``ZCAWhitening``). ``ε = 0.1`` is the regularisation the
    distillation literature uses (MTT, on normalised images).
    """

    def __init__(self, epsilon: float = 0.1) -> None:
        super().__init__()
        if not (np.isfinite(epsilon) and epsilon > 0):
            raise ValueError(f"zca_epsilon: got {epsilon}; expected a finite number > 0")
        self.eps = float(epsilon)
        self.register_buffer("mean_vector", torch.empty(0))
        self.register_buffer("transform_matrix", torch.empty(0))
        self.image_shape: tuple[int, ...] | None = None

    @property
    def epsilon(self) -> float:
        return self.eps

    @property
    def fitted(self) -> bool:
        return self.image_shape is not None

    def fit(self, images: Tensor) -> "ZCA":
        """Fit on ``(N, C, H, W)`` images (N ≥ 2), in float64, keeping float32 buffers."""
        if images.dim() != 4 or images.shape[0] < 2:
            raise ValueError(f"ZCA.fit: images must have shape (N >= 2, C, H, W), got {tuple(images.shape)}")
        # float64: with few images the covariance is rank-deficient and its small
        # eigenvalues (boosted by 1/sqrt(S + ε)) are where float32 loses digits.
        flat = images.detach().to("cpu", torch.float64).reshape(images.shape[0], -1)
        mean = flat.mean(0, keepdim=True)
        centred = flat - mean
        eigenvalues, vectors = torch.linalg.eigh(centred.T @ centred / (flat.shape[0] - 1))
        whiten = vectors @ torch.diag((eigenvalues.clamp_min(0) + self.eps).rsqrt()) @ vectors.T
        self.mean_vector, self.transform_matrix = mean.float(), whiten.float()
        self.image_shape = tuple(int(s) for s in images.shape[1:])
        return self

    def forward(self, x: Tensor) -> Tensor:
        if not self.fitted:
            raise RuntimeError("ZCA is not fitted: call fit(images) or ZCA.load(path) first")
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"ZCA was fitted on images of shape {self.image_shape}, got {tuple(x.shape[1:])}")
        if self.transform_matrix.device != x.device:
            self.to(x.device)
        flat = x.reshape(x.shape[0], -1)
        out = (flat.to(self.transform_matrix.dtype) - self.mean_vector) @ self.transform_matrix
        return out.to(x.dtype).reshape(x.shape)

    def save(self, directory: str) -> str:
        """Write ``directory/zca.safetensors`` (atomically); returns the path."""
        if not self.fitted or self.image_shape is None:
            raise RuntimeError("ZCA is not fitted: nothing to save")
        path = os.path.join(directory, ZCA_FILE)
        metadata = {"format": "pt", "epsilon": repr(self.eps), "image_shape": json.dumps(list(self.image_shape))}
        tensors = {"mean_vector": self.mean_vector, "transform_matrix": self.transform_matrix}
        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))

    @classmethod
    def load(cls, path: str) -> "ZCA":
        """Load what :meth:`save` wrote, from the file or the directory holding it."""
        file = os.path.join(path, ZCA_FILE) if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise FileNotFoundError(f"zca_path: no {ZCA_FILE} at {path!r}; expected a run directory or the file")
        with safe_open(file, framework="pt") as f:
            metadata = f.metadata() or {}
        if "epsilon" not in metadata or "image_shape" not in metadata:
            raise ValueError(f"zca_path: {file!r} is not a gift_hf ZCA file (no epsilon/image_shape metadata)")
        tensors = load_file(file)
        zca = cls(epsilon=float(metadata["epsilon"]))
        zca.mean_vector, zca.transform_matrix = tensors["mean_vector"], tensors["transform_matrix"]
        zca.image_shape = tuple(json.loads(metadata["image_shape"]))
        return zca


def _pixel_values_of(dataset: Any, batch_size: int) -> Tensor:
    """All ``pixel_values`` of a ``datasets.Dataset`` (through its transform), stacked."""
    chunks = []
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start : start + batch_size]
        if "pixel_values" not in rows:
            raise KeyError(
                f"fit_zca: the dataset yields no 'pixel_values' (got {sorted(rows)}); set an ImageTransform on it"
            )
        chunks.append(torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in rows["pixel_values"]]))
    if not chunks:
        raise ValueError("fit_zca: the dataset is empty; expected at least 2 images")
    return torch.cat(chunks)


def fit_zca(images: Tensor | Any, epsilon: float = 0.1, batch_size: int = 512) -> ZCA:
    """Fit a :class:`ZCA` on training images: a ``(N, C, H, W)`` tensor or a dataset with ``pixel_values``.

    Fit on the images the model's inputs are normalised like (``ImageTransform`` output).
    For a distilled set, fit on the *full real* training set when you have it (as the
    reference does): 10 images give a rank-10 covariance and a whitening dominated by ε.
    """
    if not torch.is_tensor(images):
        images = _pixel_values_of(images, batch_size)
    return ZCA(epsilon).fit(images)
