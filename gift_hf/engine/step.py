"""The whole training step, as ``GIFTTrainer.compute_loss`` runs it: augment, targets, logits, per-sample loss.

:func:`training_step` is the step of one student (a ``(B, C, H, W)`` batch) and of K students
trained together (a :class:`~gift_hf.engine.population.StudentPopulation` and ``(K, B, C, H, W)``
batches, student ``k``'s batch in row ``k``):

1. :func:`augment`: each student's batch by its own :class:`~gift_hf.data.augment.BatchAugmenter`
   (K batches in one call per op, :func:`~gift_hf.data.augment.augment_stacked`);
2. the student logits, ``(B, classes)`` or ``(K, B, classes)``;
3. :func:`loss_targets`: the teacher's logits on the *augmented* images (all K·B in one
   forward), or the stored soft labels as logits;
4. :func:`per_sample_loss`: one call of a :func:`gift_hf.engine.losses.get_loss` loss on every
   sample, shaped like the batch dimensions.

A loss, a relabelling rule or an augmentation is written once, here.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import nn

from gift_hf.data.augment import BatchAugmenter, augment_stacked
from gift_hf.engine.losses import Loss
from gift_hf.models.modeling import teacher_logits

__all__ = ["StepOutput", "augment", "loss_targets", "per_sample_loss", "training_step"]

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
    flat_labels = labels.reshape(n, *labels.shape[len(lead) :]) if labels is not None else None
    flat_targets = targets.reshape(n, c) if targets is not None else None
    return loss_fn(logits.reshape(n, c), flat_targets, flat_labels, reduction="none").reshape(lead)


def augment(
    augmenters: Sequence[BatchAugmenter | None],
    pixel_values: Tensor,
    labels: Tensor | None,
    soft_labels: Tensor | None,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """One batch ``(B, …)`` by ``augmenters[0]``, or K batches ``(K, B, …)`` by augmenter ``k`` each.

    Labels come back as distributions (a trailing class dimension) when a batch was mixed.
    """
    if pixel_values.dim() == 5:
        return augment_stacked(augmenters, pixel_values, labels, soft_labels)
    augmenter = augmenters[0] if augmenters else None
    if augmenter is None:
        return pixel_values, labels, soft_labels
    return augmenter(pixel_values, labels, soft_labels)


class StepOutput(NamedTuple):
    """What a training step computed: the per-sample losses, the student logits and the targets."""

    per_sample: Tensor
    logits: Tensor
    targets: Tensor | None


def training_step(
    model: nn.Module,
    pixel_values: Tensor,
    labels: Tensor | None,
    soft_labels: Tensor | None,
    *,
    loss_fn: Loss,
    augmenters: Sequence[BatchAugmenter | None] = (),
    teacher: nn.Module | None = None,
    soft_label_kind: str | None = "logits",
) -> StepOutput:
    """One training step's forward: augment, logits, targets (teacher or stored), per-sample loss."""
    pixel_values, labels, soft_labels = augment(augmenters, pixel_values, labels, soft_labels)
    logits = model(pixel_values=pixel_values).logits
    targets = loss_targets(loss_fn, pixel_values, soft_labels, teacher, soft_label_kind)
    return StepOutput(per_sample_loss(loss_fn, logits, targets, labels), logits, targets)
