"""The pieces of a training step that every training path shares: the loss's targets and the per-sample loss.

:class:`~gift_hf.GIFTTrainer` (one student) and :func:`gift_hf.engine.multi_student.train_students`
(K students at once) both augment with :class:`~gift_hf.data.augment.BatchAugmenter` (one batch
per call, or K batches per op with :func:`~gift_hf.data.augment.augment_stacked`), then call
:func:`loss_targets` and :func:`per_sample_loss`, so a loss, a relabelling rule or an
augmentation is written once. Both accept any leading batch dimensions: ``(B, …)`` for
one student, ``(K, B, …)`` for K.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gift_hf.engine.losses import Loss
from gift_hf.models.modeling import teacher_logits

__all__ = ["loss_targets", "per_sample_loss"]

Tensor = torch.Tensor


def loss_targets(
    loss_fn: Loss,
    pixel_values: Tensor,
    soft_labels: Tensor | None = None,
    teacher: nn.Module | None = None,
    soft_label_kind: str | None = "logits",
) -> Tensor | None:
    """The soft targets of ``loss_fn`` for an (augmented) batch, as logits; None if it needs none.

    With a ``teacher``, its logits on ``pixel_values`` (``(…, C, H, W)``: all leading
    dimensions in **one** forward, under ``no_grad``); otherwise the stored
    ``soft_labels``: logits as they are, probabilities (``soft_label_kind="probabilities"``)
    as ``log p``, logits whose softmax is ``p`` again.
    """
    if not loss_fn.needs_teacher:
        return None
    if teacher is not None:
        # A teacher keeps its own dtype (e.g. DeepSpeed casts the batch to bf16): feed it that dtype.
        weight = next(teacher.parameters(), None)
        if weight is not None and pixel_values.is_floating_point() and pixel_values.dtype != weight.dtype:
            pixel_values = pixel_values.to(weight.dtype)
        lead = pixel_values.shape[:-3]
        with torch.no_grad():
            logits = teacher_logits(teacher, pixel_values.reshape(-1, *pixel_values.shape[-3:]))
        return logits.detach().reshape(*lead, logits.shape[-1])
    if soft_labels is None:
        raise ValueError(f"loss {loss_fn.name!r} needs soft labels: pass a teacher or stored soft labels")
    if soft_label_kind == "probabilities":
        return soft_labels.float().clamp_min(1e-8).log()
    return soft_labels


def per_sample_loss(loss_fn: Loss, logits: Tensor, targets: Tensor | None, labels: Tensor | None) -> Tensor:
    """``loss_fn`` per sample, shaped like the leading dimensions of ``logits`` (``(B,)`` or ``(K, B)``).

    One call of the loss on all samples; ``labels`` are class ids shaped like those
    dimensions or distributions with a trailing class dimension (mixed batches).
    """
    lead, c = logits.shape[:-1], logits.shape[-1]
    if len(lead) == 1:
        return loss_fn(logits, targets, labels, reduction="none")
    n = math.prod(lead)
    flat_labels = labels.reshape(n, *labels.shape[len(lead):]) if labels is not None else None
    flat_targets = targets.reshape(n, c) if targets is not None else None
    return loss_fn(logits.reshape(n, c), flat_targets, flat_labels, reduction="none").reshape(lead)
