"""The soft-label loss zoo: GIFT and the baselines it is compared with.

Every loss is a pure function of ``(student_logits, teacher_logits, labels)`` on raw
logits (no softmax applied by the caller) that returns one value per sample; the
:class:`Loss` objects returned by :func:`get_loss` reduce them. All arithmetic runs in
float32 whatever the autocast dtype, because normalisation, cosine and softmax lose too
much precision in bf16/fp16.

``labels`` are class indices ``(B,)`` or, after CutMix/MixUp, class distributions
``(B, C)``; every loss accepts both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "LOSSES",
    "Loss",
    "check_class_ids",
    "check_finite",
    "check_logits",
    "get_loss",
    "refine_soft_labels",
    "smooth_labels",
]

Tensor = torch.Tensor


# --------------------------------------------------------------------------- validation
# Shapes only: checking values (label range, finiteness) would read the tensor back to the
# host on every training step. Values are checked where they are on the host already (the
# collator, stored soft labels at load) and non-finite results by the trainer's monitor.
def _check_student_and_labels(student_logits: Tensor, labels: Tensor | None) -> None:
    if student_logits.dim() != 2:
        raise ValueError(f"student_logits must have shape (batch, num_classes), got {tuple(student_logits.shape)}")
    if labels is None:
        return
    batch, num_classes = student_logits.shape
    if labels.dim() == 1:
        if labels.shape[0] != batch:
            raise ValueError(f"labels has {labels.shape[0]} rows but student_logits has {batch}")
        if labels.dtype.is_floating_point:
            raise ValueError(f"labels of shape (batch,) must be integer class ids, got dtype {labels.dtype}")
    elif labels.dim() == 2:
        if tuple(labels.shape) != (batch, num_classes):
            raise ValueError(
                f"labels as class distributions must have shape {(batch, num_classes)}, got {tuple(labels.shape)}"
            )
    else:
        raise ValueError(f"labels must have shape (batch,) or (batch, num_classes), got {tuple(labels.shape)}")


def check_logits(name: str, logits: Tensor, like: Tensor) -> None:
    """Raise a clear error unless ``logits`` has the shape of ``like`` (shapes only: no host sync)."""
    if logits.shape != like.shape:
        width = logits.shape[-1] if logits.dim() else None
        raise ValueError(
            f"{name} has shape {tuple(logits.shape)} but student_logits has {tuple(like.shape)}"
            + (f" (soft-label width {width} != number of classes {like.shape[-1]})" if width != like.shape[-1] else "")
        )


def check_class_ids(name: str, labels: Any, num_classes: int) -> None:
    """Raise a clear error unless every class id in ``labels`` (host data) is in ``[0, num_classes)``."""
    ids = np.asarray(labels)
    bad = ids[(ids < 0) | (ids >= num_classes)]
    if bad.size:
        raise ValueError(f"{name}: value {bad.flat[0]} is out of range; expected class ids in [0, {num_classes - 1}]")


def check_finite(name: str, values: Any) -> None:
    """Raise a clear error unless ``values`` (host data) are all finite."""
    array = np.asarray(values, dtype=np.float64)
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise ValueError(f"{name} contains {bad} NaN/inf value(s); expected finite numbers")


def _dense_targets(labels: Tensor, num_classes: int) -> Tensor:
    """Class ids ``(B,)`` → one-hot float32; distributions ``(B, C)`` pass through as float32."""
    if labels.dim() == 1:
        # scatter, not F.one_hot: one_hot reads min/max back to the host to check the range
        out = torch.zeros(labels.shape[0], num_classes, dtype=torch.float32, device=labels.device)
        return out.scatter_(1, labels.long().unsqueeze(1), 1.0)
    return labels.float()


# ------------------------------------------------------------------------- refinement
def smooth_labels(labels: Tensor, num_classes: int, smoothing: float = 0.1) -> Tensor:
    """Label smoothing as GIFT defines it: ``1 − α`` on the true class, ``α / (C − 1)`` elsewhere.

    For mixed (CutMix/MixUp) distributions the map is applied linearly, which equals mixing
    the smoothed one-hot vectors with the same coefficients.
    """
    y = _dense_targets(labels, num_classes)
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    return y * (1.0 - smoothing) + (1.0 - y) * (smoothing / (num_classes - 1))


def refine_soft_labels(
    teacher_logits: Tensor,
    labels: Tensor,
    num_classes: int,
    gamma: float = 0.1,
    smoothing: float = 0.1,
) -> Tensor:
    """GIFT label refinement: ``normalize(t) + gamma · normalize(smooth(y))`` (L2 over classes).

    Args:
        teacher_logits: raw teacher logits ``(B, C)``.
        labels: class ids ``(B,)`` or class distributions ``(B, C)``.
        num_classes: ``C``.
        gamma: weight of the smoothed hard label (0.1 in the paper).
        smoothing: label smoothing ``α`` (0.1 in the paper).

    Returns:
        The refined targets ``(B, C)`` in float32. Because cosine ignores scale this equals
        the convex form ``(1 − w)·t̂ + w·ŝ`` with ``w = gamma / (1 + gamma)``.
    """
    if teacher_logits.dim() != 2 or teacher_logits.shape[-1] != num_classes:
        raise ValueError(f"teacher_logits must have shape (batch, {num_classes}), got {tuple(teacher_logits.shape)}")
    t_hat = F.normalize(teacher_logits.float(), dim=-1)
    s_hat = F.normalize(smooth_labels(labels, num_classes, smoothing), dim=-1)
    return t_hat + gamma * s_hat


# ------------------------------------------------------------------- per-sample losses
def _hard_ce(z: Tensor, labels: Tensor) -> Tensor:
    if labels.dim() == 1:
        return F.cross_entropy(z, labels.long(), reduction="none")
    return -(labels.float() * F.log_softmax(z, dim=-1)).sum(-1)


def ce_loss(z: Tensor, t: Tensor | None, labels: Tensor) -> Tensor:
    """Hard-label cross-entropy (the teacher is ignored)."""
    return _hard_ce(z, labels)


def kl_loss(z: Tensor, t: Tensor, labels: Tensor | None, temperature: float = 20.0, t_squared: bool = False) -> Tensor:
    """``KL(softmax(t/T) ‖ softmax(z/T))`` summed over classes, times ``T²`` if ``t_squared``."""
    log_p_t = F.log_softmax(t / temperature, dim=-1)
    log_p_z = F.log_softmax(z / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_z)).sum(-1)
    return kl * temperature**2 if t_squared else kl


def soft_ce_loss(z: Tensor, t: Tensor, labels: Tensor | None, temperature: float = 1.0) -> Tensor:
    """Soft cross-entropy ``−Σ softmax(t/T) · log_softmax(z/T)``."""
    return -(F.softmax(t / temperature, dim=-1) * F.log_softmax(z / temperature, dim=-1)).sum(-1)


def mse_loss(z: Tensor, t: Tensor, labels: Tensor | None) -> Tensor:
    """Mean squared error between student and teacher logits (mean over classes)."""
    return (z - t).pow(2).mean(-1)


def mse_ce_loss(z: Tensor, t: Tensor, labels: Tensor, ce_weight: float = 0.1) -> Tensor:
    """``mse + λ · CE`` with ``λ = ce_weight``."""
    return mse_loss(z, t, labels) + ce_weight * _hard_ce(z, labels)


def soft_ce_ce_loss(z: Tensor, t: Tensor, labels: Tensor, ce_weight: float = 0.1, temperature: float = 1.0) -> Tensor:
    """``soft_ce + λ · CE`` with ``λ = ce_weight``."""
    return soft_ce_loss(z, t, labels, temperature) + ce_weight * _hard_ce(z, labels)


def hf_kd_loss(z: Tensor, t: Tensor, labels: Tensor, temperature: float = 5.0, kd_lambda: float = 0.5) -> Tensor:
    """The Hugging Face knowledge-distillation guide's loss: ``λ·T²·KL(softmax(t/T) ‖ softmax(z/T)) + (1 − λ)·CE``.

    Defaults are the guide's (``temperature=5``, ``lambda_param=0.5``, here ``kd_lambda``); the
    ``T²`` keeps the KL gradients on the scale of the CE term's as ``T`` grows (Hinton et al.).
    """
    return kd_lambda * kl_loss(z, t, labels, temperature, t_squared=True) + (1.0 - kd_lambda) * _hard_ce(z, labels)


def cosine_loss(z: Tensor, t: Tensor, labels: Tensor | None) -> Tensor:
    """``1 − cos(z, t)`` on raw logits."""
    return 1.0 - F.cosine_similarity(z, t, dim=-1)


def gift_loss(z: Tensor, t: Tensor, labels: Tensor, gamma: float = 0.1, smoothing: float = 0.1) -> Tensor:
    """GIFT: ``1 − cos(z, refine(t, y))``."""
    return 1.0 - F.cosine_similarity(z, refine_soft_labels(t, labels, z.shape[-1], gamma, smoothing), dim=-1)


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class _Spec:
    fn: Callable[..., Tensor]
    needs_teacher: bool
    needs_labels: bool
    params: tuple[str, ...]


LOSSES: dict[str, _Spec] = {
    "ce": _Spec(ce_loss, False, True, ()),
    "kl": _Spec(kl_loss, True, False, ("temperature", "t_squared")),
    "soft_ce": _Spec(soft_ce_loss, True, False, ("temperature",)),
    "mse": _Spec(mse_loss, True, False, ()),
    "mse_ce": _Spec(mse_ce_loss, True, True, ("ce_weight",)),
    "soft_ce_ce": _Spec(soft_ce_ce_loss, True, True, ("ce_weight", "temperature")),
    "cosine": _Spec(cosine_loss, True, False, ()),
    "gift": _Spec(gift_loss, True, True, ("gamma", "smoothing")),
    # not one of the papers' baselines: the loss users of transformers' distillation guide know
    "hf_kd": _Spec(hf_kd_loss, True, True, ("temperature", "kd_lambda")),
}
"""Loss name → specification. ``get_loss`` is the way to build one."""


@dataclass(frozen=True)
class Loss:
    """A configured loss: ``loss(student_logits, teacher_logits, labels) -> scalar``.

    ``reduction`` is ``"mean"`` (default), ``"sum"`` or ``"none"`` (one value per sample);
    the trainer uses ``"sum"`` to honour gradient accumulation's item count.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_teacher(self) -> bool:
        return LOSSES[self.name].needs_teacher

    @property
    def needs_labels(self) -> bool:
        return LOSSES[self.name].needs_labels

    def __call__(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor | None,
        labels: Tensor | None,
        reduction: str = "mean",
    ) -> Tensor:
        spec = LOSSES[self.name]
        _check_student_and_labels(student_logits, labels)
        if spec.needs_labels and labels is None:
            raise ValueError(f"loss {self.name!r} needs labels, got None")
        z = student_logits.float()
        t = None
        if spec.needs_teacher:
            if teacher_logits is None:
                raise ValueError(f"loss {self.name!r} needs teacher logits (or stored soft labels), got None")
            check_logits("teacher_logits", teacher_logits, student_logits)
            t = teacher_logits.float()
        # Inputs are upcast above; also leave any autocast region so no op inside drops
        # back to bf16/fp16 (normalisation, cosine and softmax need float32).
        with torch.autocast(device_type=z.device.type, enabled=False):
            per_sample = spec.fn(z, t, labels, **self.kwargs)
        if reduction == "none":
            return per_sample
        if reduction == "sum":
            return per_sample.sum()
        if reduction == "mean":
            return per_sample.mean()
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def get_loss(name: str, **kwargs: Any) -> Loss:
    """Build a loss from the zoo by name.

    Args:
        name: one of ``LOSSES`` — ``ce``, ``kl``, ``soft_ce``, ``mse``, ``mse_ce``,
            ``soft_ce_ce``, ``cosine``, ``gift``, ``hf_kd``.
        **kwargs: that loss's parameters (``temperature``, ``t_squared``, ``ce_weight``,
            ``gamma``, ``smoothing``, ``kd_lambda``). Parameters a loss does not use are ignored, so one
            config can build any loss.

    Example:
        >>> loss = get_loss("gift", gamma=0.1, smoothing=0.1)
        >>> value = loss(student_logits, teacher_logits, labels)
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}")
    spec = LOSSES[name]
    used = {k: v for k, v in kwargs.items() if k in spec.params and v is not None}
    if "temperature" in used and not (used["temperature"] > 0 and math.isfinite(used["temperature"])):
        raise ValueError(f"temperature must be a positive number, got {used['temperature']}")
    if "gamma" in used and not 0 <= used["gamma"] < math.inf:
        raise ValueError(f"gamma must be >= 0, got {used['gamma']}")
    if "smoothing" in used and not 0 <= used["smoothing"] < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {used['smoothing']}")
    if "kd_lambda" in used and not 0 <= used["kd_lambda"] <= 1:
        raise ValueError(f"kd_lambda must be in [0, 1], got {used['kd_lambda']}")
    return Loss(name, used)
