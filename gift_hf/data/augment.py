"""Batch augmentation inside the training step, on the batch's device: DSA, RDED, CutMix/MixUp, ZCA.

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
- **GIFT's evaluator** (Shang et al., "GIFT: Unlocking Full Potential of Labels in Distilled
  Dataset at Near-zero Cost", ICLR 2025), ``augmentation_mode="gift"`` with the DSA ops and
  ranges: on every batch ``flip``, ``color`` (brightness, saturation, contrast in turn), ONE
  of ``crop``/``scale``/``rotate`` drawn per batch, then ``cutout``, all with per-image
  parameters (:data:`GIFT_ORDER`, :data:`GIFT_ONE_OF`). Before them, optionally, the per-image
  *factor crop* (``factor_crop=2``, GIFT's ImageNet-1K ResNet-18 setting): with probability
  3/4 one of the 4 quadrants, resized bilinearly to the full size, else the whole image.
- **RDED / SRe2L** per-image ops (Sun et al., "On the Diversity and Realism of Distilled
  Dataset", 2024): ``patchshuffle`` (the image cut into ``factor`` column strips and
  ``factor`` row strips, each set shuffled per image, as RDED's ``ShufflePatches``) and
  ``resizedcrop`` (torchvision's ``RandomResizedCrop`` with scale ``(1/factor, 1)``, back to
  the input size, bilinear). The protocol is :data:`RDED_STRATEGY` in mode ``"all"`` with
  ``mix="cutmix"``, ``mix_beta=1``.
- **MixUp / CutMix** (one ``λ ~ Beta(β, β)`` per batch, image ``i`` mixed with image
  ``B−1−i``, CutMix ``λ`` corrected to the pasted area, as timm's ``Mixup`` in batch mode).
  Hard labels become mixed one-hot distributions ``(B, C)``; stored soft labels are mixed
  with the same coefficients.
- **ZCA whitening** (:class:`ZCA`) fitted on training images,
  saved next to the model as ``zca.safetensors`` and applied by the trainer to every batch
  it prepares: training (student *and* teacher input) and evaluation alike.

No op reads a value back from the device: per-image parameters are drawn on the batch's
device from a device generator, and the per-batch choices whose outcome changes the work
(the op in ``single`` mode, whether and how a batch is mixed, ``λ``, the CutMix box) come
from a host-side NumPy generator. Both are reseeded for every batch from
``(seed, rank, step, call)`` (:func:`batch_seed`): a run is reproducible under a seed on a
given device type, every DDP rank draws its own parameters, and a resumed run draws
exactly what the uninterrupted one drew at the same step once the trainer tells the
augmenter the step (:meth:`BatchAugmenter.set_step`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gift_hf.files import atomic_write

__all__ = [
    "AUGMENTATION_MODES",
    "AUGMENTATION_OPS",
    "DSA_OPS",
    "FACTOR_CROPS",
    "GIFT_ONE_OF",
    "GIFT_ORDER",
    "MIX_MODES",
    "RDED_OPS",
    "RDED_STRATEGY",
    "ZCA_FILE",
    "AugmentationDraw",
    "BatchAugmenter",
    "DSAParams",
    "ZCA",
    "augment_stacked",
    "batch_seed",
    "build_augmenter",
    "check_factor_crop",
    "check_mode",
    "fit_zca",
    "parse_strategy",
    "resized_crop",
]

DSA_OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
"""DSA ops, in the order of the reference strategy string."""
RDED_OPS = ("patchshuffle", "resizedcrop")
"""The per-image ops of the RDED/SRe2L evaluation that DSA lacks (it shares ``flip``)."""
AUGMENTATION_OPS = DSA_OPS + RDED_OPS
"""Every op a strategy string may name."""
RDED_STRATEGY = "patchshuffle_resizedcrop_flip"
"""The RDED/SRe2L per-image pipeline, in its order; use with mode ``"all"`` and ``mix="cutmix"``."""
AUGMENTATION_MODES = ("single", "all", "gift")
"""``single``: one op drawn per batch (the DSA reference evaluation); ``all``: every op in turn;
``gift``: GIFT's evaluator (every op, but one of :data:`GIFT_ONE_OF` per batch, in :data:`GIFT_ORDER`)."""
GIFT_ONE_OF = ("crop", "scale", "rotate")
"""Mode ``gift``: one of these (of those the strategy names) is drawn per batch; every other op runs on every batch."""
GIFT_ORDER = ("flip", "color", "crop", "scale", "rotate", "cutout")
"""Mode ``gift`` applies its ops in this order, whatever the order of the strategy string."""
FACTOR_CROPS = (1, 2)
"""``factor_crop`` values: 1 the identity, 2 a random quadrant (probability 3/4) resized to the full size."""
MIX_MODES = ("none", "mixup", "cutmix", "both")
"""``both`` picks CutMix or MixUp with probability 1/2 per batch (timm's ``switch_prob``)."""
ZCA_FILE = "zca.safetensors"

Tensor = torch.Tensor
logger = logging.getLogger(__name__)


def parse_strategy(strategy: str) -> list[str]:
    """``"flip_crop"`` → ``["flip", "crop"]``; ``"none"``/``""`` → ``[]``.

    Raises a ``ValueError`` naming the field, the unknown or repeated ops and the valid ops.
    """
    if not isinstance(strategy, str):
        raise ValueError(f"augmentation: got {strategy!r}; expected a string of ops joined by '_' or 'none'")
    if strategy.strip().lower() in ("", "none"):
        return []
    ops = strategy.strip().split("_")
    unknown = [op for op in ops if op not in AUGMENTATION_OPS]
    if unknown:
        raise ValueError(
            f"augmentation: unknown op(s) {unknown} in {strategy!r}; expected 'none' or ops from "
            f"{list(AUGMENTATION_OPS)} joined by '_' (e.g. 'color_crop_cutout_flip_scale_rotate' for DSA, "
            f"{RDED_STRATEGY!r} for RDED)"
        )
    repeated = sorted({op for op in ops if ops.count(op) > 1})
    if repeated:
        raise ValueError(f"augmentation: op(s) {repeated} repeated in {strategy!r}; name each op once")
    return ops


def check_mode(ops: Sequence[str], mode: str) -> None:
    """Raise a ``ValueError`` naming the field if ``mode`` is unknown or cannot run ``ops`` (parsed)."""
    if mode not in AUGMENTATION_MODES:
        raise ValueError(f"augmentation_mode: got {mode!r}; expected one of {AUGMENTATION_MODES}")
    if mode == "gift":
        other = [op for op in ops if op not in DSA_OPS]
        if other:
            raise ValueError(
                f"augmentation: got op(s) {other} with augmentation_mode='gift'; expected DSA ops only "
                f"({list(DSA_OPS)}): GIFT's evaluator is flip, color, one of crop/scale/rotate, cutout"
            )


def check_factor_crop(factor: Any) -> int:
    """``factor`` if it is a valid ``factor_crop`` (1 or 2), else a ``ValueError`` naming the field."""
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or int(factor) not in FACTOR_CROPS:
        raise ValueError(
            f"factor_crop: got {factor!r}; expected 1 (whole images) or 2 (with probability 3/4 one of the 4 "
            "quadrants, resized to the full size: GIFT's ImageNet-1K ResNet-18 setting)"
        )
    return int(factor)


@dataclass(frozen=True)
class DSAParams:
    """Parameter ranges of the ops; the DSA defaults are the reference ``ParamDiffAug``.

    All ops act on *normalised* pixel values (mean/std, or ZCA), as the references do.
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
    shuffle_factor: int = 2
    """RDED ``patchshuffle``: ``factor`` strips per axis (the image sides must be multiples of it)."""
    resized_crop_scale: tuple[float, float] = (0.5, 1.0)
    """RDED ``resizedcrop``: crop area fraction range, ``(1/factor, 1)`` in the protocol."""
    resized_crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    """``resizedcrop``: aspect-ratio range (torchvision's default)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.shuffle_factor, int) and self.shuffle_factor >= 1):
            raise ValueError(f"shuffle_factor: got {self.shuffle_factor!r}; expected an integer >= 1")
        low, high = self.resized_crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"resized_crop_scale: got {self.resized_crop_scale}; expected 0 < low <= high <= 1")
        low, high = self.resized_crop_ratio
        if not 0 < low <= high:
            raise ValueError(f"resized_crop_ratio: got {self.resized_crop_ratio}; expected 0 < low <= high")


def _text_to_tensor(text: str) -> Tensor:
    return torch.tensor(list(text.encode()), dtype=torch.uint8)


def _tensor_to_text(value: Any) -> str:
    return bytes(torch.as_tensor(value, dtype=torch.uint8).tolist()).decode()


# ------------------------------------------------------------------------ pixel gathers
def _take(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``out[b, :, i, j] = x[b, :, rows[b, i], cols[b, j]]`` for per-image integer indices."""
    b, c = x.shape[:2]
    x = x.gather(2, rows[:, None, :, None].expand(b, c, rows.shape[1], x.shape[3]))
    return x.gather(3, cols[:, None, None, :].expand(b, c, x.shape[2], cols.shape[1]))


def resized_crop(x: Tensor, top: Tensor, left: Tensor, height: Tensor, width: Tensor, size: tuple[int, int]) -> Tensor:
    """Crop box ``(top, left, height, width)`` of each image, resized bilinearly to ``size``.

    Per-image boxes as ``(B,)`` tensors on ``x``'s device. The result equals
    ``F.interpolate(crop, size, mode="bilinear", align_corners=False)`` on each crop (source
    coordinates are clamped to the crop, as ``interpolate`` clamps to the tensor), i.e.
    torchvision's ``resized_crop`` without antialiasing, for all images in one
    ``grid_sample``.
    """
    b, _, h, w = x.shape
    out_h, out_w = size

    def axis(start: Tensor, extent: Tensor, n_out: int, n_in: int) -> Tensor:
        start, extent = start.to(torch.float32)[:, None], extent.to(torch.float32)[:, None]
        dst = torch.arange(n_out, device=x.device, dtype=torch.float32)[None, :]
        src = start + (dst + 0.5) * (extent / n_out) - 0.5
        src = torch.minimum(torch.maximum(src, start), start + extent - 1)
        return (2 * src + 1) / n_in - 1  # grid_sample's normalised coordinate (align_corners=False)

    gy = axis(top, height, out_h, h)[:, :, None].expand(b, out_h, out_w)
    gx = axis(left, width, out_w, w)[:, None, :].expand(b, out_h, out_w)
    grid = torch.stack([gx, gy], dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# ------------------------------------------------------------------------------ augmenter
_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """SplitMix64's output function: a 64-bit integer mixed into a well-spread 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def batch_seed(seed: int, rank: int, step: int, call: int) -> int:
    """The 64-bit seed of the generators for one batch: a hash of its (seed, rank, step, call).

    Plain integer arithmetic (SplitMix64 chained over the four numbers): it runs once per
    batch and per student, so it must cost microseconds, not numpy's SeedSequence.
    """
    h = 0
    for value in (seed, rank, step, call):
        h = _splitmix64(h ^ (int(value) & _MASK64))
    return h


class BatchAugmenter:
    """Per-image ops then CutMix/MixUp on a batch, on the batch's device, reproducible by seed.

    Args:
        ops: ops from :data:`AUGMENTATION_OPS`, or a strategy string (see :func:`parse_strategy`).
        mode: ``"single"`` (one op drawn per batch, the DSA reference), ``"all"`` or ``"gift"``
            (GIFT's evaluator: every op, one of :data:`GIFT_ONE_OF` per batch; DSA ops only).
        mix: ``"none"``, ``"mixup"``, ``"cutmix"`` or ``"both"``.
        mix_prob: probability that a batch is mixed.
        mix_beta: ``β`` of ``λ ~ Beta(β, β)`` (timm's ``mixup_alpha``/``cutmix_alpha``).
        num_classes: needed to turn class-id labels into mixed distributions.
        seed: the run's seed.
        rank: this process's index; each rank draws its own parameters.
        params: the op ranges.
        factor_crop: 1, or 2 for GIFT's per-image factor crop before the ops (a random
            quadrant with probability 3/4, resized bilinearly to the full size), in any mode.

    Calling it maps ``(pixel_values, labels, soft_labels)`` to the same triple; labels are
    returned as ``(B, C)`` float distributions when the batch was mixed, unchanged otherwise.
    A call never synchronises the host with the device.
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
        factor_crop: int = 1,
    ) -> None:
        self.ops = parse_strategy(ops if isinstance(ops, str) else "_".join(ops))
        check_mode(self.ops, mode)
        self.factor_crop = check_factor_crop(factor_crop)
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
        self._generators: dict[torch.device, torch.Generator] = {}
        self.generator: torch.Generator | None = None  # the device generator of the current batch
        self._host_bits = np.random.PCG64(0)
        self.host_rng = np.random.Generator(self._host_bits)
        self.set_step(0)

    def __repr__(self) -> str:
        ops = "_".join(self.ops) or "none"
        return (
            f"{type(self).__name__}(ops={ops!r}, mode={self.mode!r}, mix={self.mix!r}, "
            f"mix_prob={self.mix_prob}, mix_beta={self.mix_beta}"
            + (f", factor_crop={self.factor_crop})" if self.factor_crop != 1 else ")")
        )

    # --------------------------------------------------------------------------- state
    def set_step(self, step: int) -> None:
        """Draw the following batches as those of optimizer step ``step`` (its micro-batches in order).

        The parameters of a batch depend only on ``(seed, rank, step, call within the
        step)``, so a run resumed at step ``s`` repeats the uninterrupted run exactly.
        """
        self.step, self.calls = int(step), 0

    def state_dict(self) -> dict[str, Tensor]:
        """``seed``, ``rank``, ``step`` and ``calls`` (int64 tensors): all that decides the next draws.

        For loops that do not call :meth:`set_step` themselves; ``{k: v.tolist()}`` of it is
        JSON-serialisable and loads back.
        """
        return {k: torch.tensor([getattr(self, k)], dtype=torch.int64) for k in ("seed", "rank", "step", "calls")}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (tensors, or the lists of a JSON round trip)."""
        missing = [k for k in ("seed", "rank", "step", "calls") if k not in state]
        if missing:
            raise KeyError(
                f"augmenter state lacks {missing} (got {sorted(state)}); expected BatchAugmenter.state_dict()"
            )
        values = {k: int(torch.as_tensor(state[k]).reshape(-1)[0]) for k in ("seed", "rank", "step", "calls")}
        self.seed, self.rank, self.step, self.calls = values["seed"], values["rank"], values["step"], values["calls"]

    # ------------------------------------------------------------------------- helpers
    def _reseed(self, device: torch.device) -> None:
        """Seed both generators for the next batch from ``(seed, rank, step, call)``; no device round trip."""
        seed = batch_seed(self.seed, self.rank, self.step, self.calls)
        self.calls += 1
        # The host generator is re-seeded by setting its PCG64 state (state and odd increment
        # from the seed), far cheaper than building a new one through a SeedSequence.
        self._host_bits.state = {
            "bit_generator": "PCG64",
            "has_uint32": 0,
            "uinteger": 0,
            "state": {
                "state": _splitmix64(seed) << 64 | _splitmix64(seed ^ _MASK64),
                "inc": (_splitmix64(seed + 1) << 64 | _splitmix64(seed + 2)) | 1,
            },
        }
        generator = self._generators.get(device)
        if generator is None:
            generator = self._generators[device] = torch.Generator(device=device)
        # Setting the seed of a CUDA generator is host-side bookkeeping (Philox seed, offset 0).
        generator.manual_seed(seed)
        self.generator = generator

    def _rand(self, *shape: int, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.rand(*shape, generator=self.generator, device=device, dtype=dtype)

    def _randint(self, low: int, high: int, shape: tuple[int, ...], device: torch.device) -> Tensor:
        return torch.randint(low, high, shape, generator=self.generator, device=device)

    # ------------------------------------------------------------------------ draws
    # `_draw_<op>(b, h, w, device, dtype)` draws op's per-image parameters for a batch of b
    # images, each tensor with the batch as its first dimension (so the draws of several
    # batches concatenate); `_<op>(x, params)` applies them. Draws are made in the order of
    # the reference code, so a call draws what it always drew.
    def _draw_color(self, b: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
        return {"u": self._rand(3, b, 1, 1, 1, device=device, dtype=dtype).movedim(1, 0)}

    def _draw_crop(self, b: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
        shift_h, shift_w = int(h * self.params.crop_pad + 0.5), int(w * self.params.crop_pad + 0.5)
        dy = self._randint(-shift_h, shift_h + 1, (b, 1), device)
        return {"dy": dy, "dx": self._randint(-shift_w, shift_w + 1, (b, 1), device)}

    def _draw_cutout(self, b: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
        ch, cw = int(h * self.params.cutout + 0.5), int(w * self.params.cutout + 0.5)
        cy = self._randint(0, h + (1 - ch % 2), (b, 1, 1), device)
        return {"cy": cy, "cx": self._randint(0, w + (1 - cw % 2), (b, 1, 1), device)}

    def _draw_flip(self, b: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
        return {"u": self._rand(b, 1, 1, 1, device=device, dtype=dtype)}

    def _draw_scale(self, b: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
        return {"u": self._rand(2, b, device=device, dtype=dtype).movedim(1, 0)}

    def _draw_rotate(self, b: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
        return {"u": self._rand(b, device=device, dtype=dtype)}

    def _draw_patchshuffle(self, b: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
        f = self.params.shuffle_factor
        if h % f or w % f:
            raise ValueError(f"patchshuffle: image size {h}×{w} is not a multiple of shuffle_factor={f}")
        cols = self._rand(b, f, device=device, dtype=dtype)  # the column strips are drawn first
        return {"cols": cols, "rows": self._rand(b, f, device=device, dtype=dtype)}

    def _draw_resizedcrop(self, b: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
        # float32 whatever the images: torchvision draws the box in float
        return {"u": self._rand(4, b, 10, device=device).movedim(1, 0)}

    def _draw_factorcrop(self, b: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
        # The boxes are computed here, so applying them needs no factor (augment_stacked
        # applies one augmenter's op to the draws of several).
        f = self.factor_crop
        whole = self._rand(b, device=device) < 1.0 / (f * f)  # factor 2: the image stays whole with p 1/4
        cell = self._randint(0, f * f, (b,), device)  # else one of the f × f cells, uniformly
        row, col = cell // f, cell % f
        top, left = row * h // f, col * w // f
        return {
            "whole": whole.view(b, 1, 1, 1),
            "top": top,
            "left": left,
            "height": (row + 1) * h // f - top,
            "width": (col + 1) * w // f - left,
        }

    def _draw_mix(self, b: int, h: int, w: int) -> tuple[bool, float, tuple[int, int, int, int] | None] | None:
        """``(cutmix, λ, box)`` of a mixed batch (``λ`` = the area kept for CutMix), None if it is not mixed."""
        n = b - b % 2
        if n < 2 or self.host_rng.random() >= self.mix_prob:
            return None
        cutmix = self.mix == "cutmix" or (self.mix == "both" and self.host_rng.random() < 0.5)
        lam = float(self.host_rng.beta(self.mix_beta, self.mix_beta))
        if not cutmix:
            return False, lam, None
        box = self._cutmix_box(h, w, lam)
        top, bottom, left, right = box
        return True, 1.0 - (bottom - top) * (right - left) / (h * w), box

    # ------------------------------------------------------------------------- DSA ops
    def _color(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        # Hand-written: kornia's brightness/contrast/saturation clamp to [0, 1], scale
        # contrast about 0 and convert saturation through HSV (RGB only); DSA acts on
        # normalised, unbounded values, about the channel / image mean, any channel count.
        p = self.params
        u = params["u"].movedim(0, 1)
        x = x + (u[0] - 0.5) * p.brightness
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (u[1] * p.saturation) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * (u[2] + p.contrast) + mean

    def _crop(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        # The reference `rand_crop`: an integer translation in [-shift, shift] per axis, zero fill.
        h, w = x.shape[2:]
        rows = torch.arange(h, device=x.device)[None, :] - params["dy"]
        cols = torch.arange(w, device=x.device)[None, :] - params["dx"]
        inside = ((rows >= 0) & (rows < h))[:, None, :, None] & ((cols >= 0) & (cols < w))[:, None, None, :]
        return _take(x, rows.clamp(0, h - 1), cols.clamp(0, w - 1)) * inside.to(x.dtype)

    def _cutout(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        # Hand-written: kornia's RandomErasing keeps the box inside the image; DSA centres
        # it uniformly and clips it at the border, so border boxes erase less.
        h, w = x.shape[2:]
        ch, cw = int(h * self.params.cutout + 0.5), int(w * self.params.cutout + 0.5)
        top, left = params["cy"] - ch // 2, params["cx"] - cw // 2
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        box = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
        return x * (~box).unsqueeze(1).to(x.dtype)

    def _flip(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        return torch.where(params["u"] < self.params.flip, x.flip(-1), x)

    def _affine(self, x: Tensor, theta: Tensor) -> Tensor:
        # The reference `rand_scale` / `rand_rotate`: affine_grid + grid_sample, corners aligned, zero fill.
        grid = F.affine_grid(theta, list(x.shape), align_corners=True)
        return F.grid_sample(x, grid, align_corners=True)

    def _scale(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        s = self.params.scale
        factors = params["u"].movedim(0, 1) * (s - 1.0 / s) + 1.0 / s
        zero = torch.zeros_like(factors[0])
        theta = torch.stack([torch.stack([factors[0], zero, zero], -1), torch.stack([zero, factors[1], zero], -1)], 1)
        return self._affine(x, theta)

    def _rotate(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        angle = (params["u"] - 0.5) * 2 * self.params.rotate / 180 * math.pi
        cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
        theta = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], 1)
        return self._affine(x, theta)

    # ------------------------------------------------------------------------ RDED ops
    def _patchshuffle(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        # RDED's ShufflePatches: shuffle the `factor` column strips, then the `factor` row
        # strips, each with its own permutation per image.
        h, w = x.shape[2:]
        f = self.params.shuffle_factor

        def source(u: Tensor, n: int) -> Tensor:
            order = u.argsort(dim=1)  # output strip k shows input strip order[k]
            pixel = torch.arange(n, device=x.device)
            return order[:, pixel // (n // f)] * (n // f) + pixel % (n // f)

        return _take(x, source(params["rows"], h), source(params["cols"], w))

    def _resizedcrop(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        # torchvision's RandomResizedCrop.get_params, vectorised: 10 attempts per image, the
        # first that fits wins, else the centre crop with the ratio clamped.
        h, w = x.shape[2:]
        (s_low, s_high), (r_low, r_high) = self.params.resized_crop_scale, self.params.resized_crop_ratio
        u = params["u"].movedim(0, 1)
        area = h * w * (s_low + u[0] * (s_high - s_low))
        aspect = torch.exp(math.log(r_low) + u[1] * (math.log(r_high) - math.log(r_low)))
        cw, ch = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()
        fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
        top, left = (u[2] * (h - ch + 1)).floor(), (u[3] * (w - cw + 1)).floor()
        first = fits.to(torch.float32).argmax(dim=1, keepdim=True)  # 0 when none fits

        def pick(v: Tensor, fallback: float) -> Tensor:
            return torch.where(fits.any(dim=1), v.gather(1, first)[:, 0], torch.full_like(v[:, 0], fallback))

        in_ratio = w / h
        fw, fh = (w, round(w / r_low)) if in_ratio < r_low else (round(h * r_high), h) if in_ratio > r_high else (w, h)
        return resized_crop(x, pick(top, (h - fh) // 2), pick(left, (w - fw) // 2), pick(ch, fh), pick(cw, fw), (h, w))

    # ------------------------------------------------------------------------ GIFT op
    def _factorcrop(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        # GIFT's factor crop: the drawn cell, resized bilinearly (align_corners=False) to the full size.
        h, w = x.shape[2:]
        crops = resized_crop(x, params["top"], params["left"], params["height"], params["width"], (h, w))
        return torch.where(params["whole"], x, crops)

    def _apply_op(self, op: str, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        return getattr(self, f"_{op}")(x, params)

    # ------------------------------------------------------------------------------ mix
    def _dense(self, labels: Tensor, batch_dims: int = 1) -> Tensor:
        if labels.dim() == batch_dims + 1:
            return labels.float()
        if self.num_classes is None:
            raise ValueError("mixing class-id labels needs num_classes (the student's number of classes)")
        # scatter, not F.one_hot: one_hot checks the range on the host (a device sync)
        dense = torch.zeros(*labels.shape, self.num_classes, device=labels.device)
        return dense.scatter_(-1, labels.long().unsqueeze(-1), 1.0)

    def _cutmix_box(self, h: int, w: int, lam: float) -> tuple[int, int, int, int]:
        # timm's rand_bbox: a box of side sqrt(1 − λ) centred uniformly, clipped at the border.
        cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = int(self.host_rng.integers(0, h)), int(self.host_rng.integers(0, w))
        return (max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h), max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w))

    def _mix(
        self,
        x: Tensor,
        labels: Tensor | None,
        soft_labels: Tensor | None,
        mix: tuple[bool, float, tuple[int, int, int, int] | None],
    ):
        b = x.shape[0]
        n = b - b % 2  # image i is paired with n-1-i; an odd last image stays unmixed
        cutmix, lam, box = mix
        partner = x[:n].flip(0)
        if cutmix:
            top, bottom, left, right = box
            mixed = x[:n].clone()
            mixed[:, :, top:bottom, left:right] = partner[:, :, top:bottom, left:right]
        else:
            mixed = x[:n] * lam + partner * (1.0 - lam)
        x = torch.cat([mixed, x[n:]]) if n < b else mixed

        def mix_rows(values: Tensor) -> Tensor:
            head = values[:n] * lam + values[:n].flip(0) * (1.0 - lam)
            return torch.cat([head, values[n:]]) if n < b else head

        if labels is not None:
            labels = mix_rows(self._dense(labels))
        if soft_labels is not None:
            # Stored logits are mixed linearly too: softmax(λ·a + (1−λ)·b) ∝ p_a^λ · p_b^(1−λ).
            # Stored probabilities (soft_label_kind="probabilities") mix as probabilities.
            soft_labels = mix_rows(soft_labels)
        return x, labels, soft_labels

    # ----------------------------------------------------------------------------- call
    def sample(
        self, shape: Sequence[int], device: str | torch.device | None = None, dtype: torch.dtype = torch.float32
    ) -> AugmentationDraw:
        """Draw the parameters of the next batch of ``shape`` ``(B, C, H, W)``, touching no pixels.

        Advances the augmenter as a call does: ``apply(x, sample(x.shape, x.device))`` is
        ``self(x)``. Per-image parameters are drawn on ``device`` (in ``dtype``), the
        per-batch choices on the host.
        """
        if len(shape) != 4:
            raise ValueError(f"pixel_values must have shape (batch, channels, H, W), got {tuple(shape)}")
        b, _, h, w = (int(s) for s in shape)
        device = torch.device(device) if device is not None else torch.device("cpu")
        self._reseed(device)
        ops: tuple[str, ...] = ()
        if self.ops and self.mode == "single":
            ops = (self.ops[int(self.host_rng.integers(len(self.ops)))],)
        elif self.ops and self.mode == "gift":
            one_of = [op for op in GIFT_ONE_OF if op in self.ops]
            chosen = one_of[int(self.host_rng.integers(len(one_of)))] if one_of else None
            ops = tuple(op for op in GIFT_ORDER if op in self.ops and (op not in GIFT_ONE_OF or op == chosen))
        elif self.ops:
            ops = tuple(self.ops)
        if self.factor_crop > 1:
            ops = ("factorcrop", *ops)  # before the ops, per image
        params = tuple(getattr(self, f"_draw_{op}")(b, h, w, device, dtype) for op in ops)
        return AugmentationDraw(ops, params, self._draw_mix(b, h, w) if self.mix != "none" else None)

    def apply(
        self,
        pixel_values: Tensor,
        draw: AugmentationDraw,
        labels: Tensor | None = None,
        soft_labels: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Apply the draws of :meth:`sample` to a batch (the pixels, then the labels if it is mixed)."""
        dtype = pixel_values.dtype
        # Half precision (e.g. DeepSpeed-cast inputs) is augmented in float32: warps and
        # means lose too much in bf16.
        x = pixel_values.float() if dtype in (torch.float16, torch.bfloat16) else pixel_values
        for op, params in zip(draw.ops, draw.params):
            x = self._apply_op(op, x, params)
        if draw.mix is not None:
            x, labels, soft_labels = self._mix(x, labels, soft_labels, draw.mix)
        return x.to(dtype).contiguous(), labels, soft_labels

    def __call__(
        self, pixel_values: Tensor, labels: Tensor | None = None, soft_labels: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        if pixel_values.dim() != 4:
            raise ValueError(f"pixel_values must have shape (batch, channels, H, W), got {tuple(pixel_values.shape)}")
        work = torch.float32 if pixel_values.dtype in (torch.float16, torch.bfloat16) else pixel_values.dtype
        draw = self.sample(pixel_values.shape, pixel_values.device, work)
        return self.apply(pixel_values, draw, labels, soft_labels)


@dataclass(frozen=True)
class AugmentationDraw:
    """The draws of one batch (:meth:`BatchAugmenter.sample`).

    ``params[i]`` holds op ``ops[i]``'s per-image parameters, each tensor with the batch as
    its first dimension, so the draws of several batches concatenate
    (:func:`augment_stacked`); ``mix`` is ``(cutmix, λ, (top, bottom, left, right) or
    None)`` when the batch is mixed, None when it is not.
    """

    ops: tuple[str, ...]
    params: tuple[dict[str, Tensor], ...]
    mix: tuple[bool, float, tuple[int, int, int, int] | None] | None = None


def augment_stacked(
    augmenters: Sequence[BatchAugmenter | None],
    images: Tensor,
    labels: Tensor | None = None,
    soft_labels: Tensor | None = None,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """K batches ``(K, B, C, H, W)``, batch ``k`` augmented by ``augmenters[k]``, in one call per op.

    Each augmenter draws its own parameters (:meth:`BatchAugmenter.sample`), so batch ``k``
    becomes what ``augmenters[k](images[k], labels[k], soft_labels[k])`` would make of it;
    the batches that drew the same ops are then transformed together as one batch of
    ``G·B`` images (every op acts per image), and the mixes of all K batches are applied
    at once. ``None`` leaves its batch unchanged. Labels ``(K, B)`` come back as class ids,
    or as distributions ``(K, B, C)`` for every batch when any batch was mixed.
    """
    if images.dim() != 5:
        raise ValueError(f"images: got shape {tuple(images.shape)}; expected (K, B, C, H, W)")
    k = images.shape[0]
    if len(augmenters) != k:
        raise ValueError(f"augmenters: got {len(augmenters)} for {k} batches; expected one per batch (or None)")
    if all(a is None for a in augmenters):
        return images, labels, soft_labels
    dtype = images.dtype
    x = images.float() if dtype in (torch.float16, torch.bfloat16) else images
    draws = [a.sample(x.shape[1:], x.device, x.dtype) if a is not None else None for a in augmenters]
    groups: dict[tuple[tuple[str, ...], DSAParams], list[int]] = {}
    for i, (augmenter, draw) in enumerate(zip(augmenters, draws)):
        if augmenter is not None and draw.ops:
            groups.setdefault((draw.ops, augmenter.params), []).append(i)
    if groups:
        whole = len(groups) == 1 and len(next(iter(groups.values()))) == k
        out = None if whole else x.clone()
        for (ops, _), members in groups.items():
            xs = (x if whole else x[members]).flatten(0, 1)
            for j, op in enumerate(ops):
                params = {
                    name: torch.cat([draws[m].params[j][name] for m in members])
                    if len(members) > 1
                    else draws[members[0]].params[j][name]
                    for name in draws[members[0]].params[j]
                }
                xs = augmenters[members[0]]._apply_op(op, xs, params)
            if whole:
                out = xs.view(x.shape)
            else:
                out[members] = xs.view(len(members), *x.shape[1:])
        x = out
    mixes = [draw.mix if draw is not None else None for draw in draws]
    if any(m is not None for m in mixes):
        mixer = next(a for a, m in zip(augmenters, mixes) if m is not None)
        x, labels, soft_labels = _mix_stacked(mixer, x, labels, soft_labels, mixes)
    return x.to(dtype).contiguous(), labels, soft_labels


def _mix_stacked(
    mixer: BatchAugmenter,
    x: Tensor,
    labels: Tensor | None,
    soft_labels: Tensor | None,
    mixes: Sequence[tuple[bool, float, tuple[int, int, int, int] | None] | None],
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """:meth:`BatchAugmenter._mix` of K batches at once, each with its own ``(cutmix, λ, box)`` (None: unmixed)."""
    k, b, _, h, w = x.shape
    n = b - b % 2
    # Per batch: the weight of the image itself and of its partner (λ and 1 − λ from the host,
    # as the one-batch mix computes them); CutMix copies its box instead (weights 1, 0).
    keep = [1.0 if m is None or m[0] else m[1] for m in mixes]
    take = [0.0 if m is None or m[0] else 1.0 - m[1] for m in mixes]
    box = torch.zeros(k, 1, 1, h, w, dtype=torch.bool)
    for i, m in enumerate(mixes):
        if m is not None and m[0]:
            top, bottom, left, right = m[2]
            box[i, :, :, top:bottom, left:right] = True
    shape = (k, 1, 1, 1, 1)
    head, partner = x[:, :n], x[:, :n].flip(1)
    blend = head * torch.tensor(keep, dtype=x.dtype).view(shape).to(x.device) + partner * torch.tensor(
        take, dtype=x.dtype
    ).view(shape).to(x.device)
    mixed = torch.where(box.to(x.device), partner, blend)
    x = torch.cat([mixed, x[:, n:]], dim=1) if n < b else mixed
    lam = [1.0 if m is None else m[1] for m in mixes]

    def mix_rows(values: Tensor) -> Tensor:
        a = torch.tensor(lam, dtype=values.dtype).view(k, 1, 1).to(values.device)
        c = torch.tensor([1.0 - v for v in lam], dtype=values.dtype).view(k, 1, 1).to(values.device)
        head = values[:, :n] * a + values[:, :n].flip(1) * c
        return torch.cat([head, values[:, n:]], dim=1) if n < b else head

    if labels is not None:
        labels = mix_rows(mixer._dense(labels, batch_dims=2))
    if soft_labels is not None:
        soft_labels = mix_rows(soft_labels)
    return x, labels, soft_labels


def build_augmenter(args: Any, num_classes: int | None = None, rank: int | None = None) -> BatchAugmenter | None:
    """The augmenter a :class:`~gift_hf.GIFTConfig` asks for, or ``None`` if it asks for none.

    Seeded with ``args.seed`` and ``rank`` (default ``args.process_index``), so each DDP
    process draws its own parameters.
    """
    ops = parse_strategy(getattr(args, "augmentation", "none"))
    mix = getattr(args, "mix", "none")
    factor_crop = getattr(args, "factor_crop", 1)
    if not ops and mix == "none" and factor_crop == 1:
        return None
    if rank is None:
        rank = int(getattr(args, "process_index", 0))
    # RDED's patch-shuffle factor sets both its ops: `factor` strips per axis and crops of
    # (1/factor, 1) of the area (RDED's scripts: 2 on ImageNet-1K, 1 on Tiny-ImageNet/CIFAR)
    shuffle = int(getattr(args, "patch_shuffle_factor", DSAParams.shuffle_factor))
    return BatchAugmenter(
        ops,
        mode=getattr(args, "augmentation_mode", "single"),
        mix=mix,
        mix_prob=getattr(args, "mix_prob", 1.0),
        mix_beta=getattr(args, "mix_beta", 1.0),
        num_classes=num_classes,
        seed=int(getattr(args, "seed", 0)),
        rank=rank,
        params=DSAParams(shuffle_factor=shuffle, resized_crop_scale=(1.0 / shuffle, 1.0)),
        factor_crop=factor_crop,
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
