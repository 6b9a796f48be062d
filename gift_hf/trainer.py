"""`GIFTTrainer`: a `transformers.Trainer` that trains students on soft labels."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Trainer
from transformers.modeling_outputs import ImageClassifierOutput

from .augment import build_augmenter
from .config import GIFTConfig
from .data import SoftLabelCollator
from .losses import Loss, check_logits, get_loss
from .modeling import load_teacher, num_classes_of, teacher_logits

__all__ = ["GIFTTrainer"]


class GIFTTrainer(Trainer):
    """Train a student with GIFT or any loss of the zoo (`GIFTConfig.loss`).

    Soft labels come from a frozen teacher run on the *same augmented batch* the student
    sees (``soft_label_source="teacher"``), or from a stored soft-label column
    (``"dataset"``). The teacher is placed by the Trainer's accelerator in evaluation mode:
    it is never wrapped for gradient synchronisation and never saved with the student.

    Evaluation reports hard-label cross-entropy on the evaluation split as ``eval_loss``
    (comparable across training losses; real test splits carry no soft labels) and the
    metrics of ``compute_metrics`` on the student's logits.

    Args:
        model: the student (e.g. :func:`gift_hf.create_model`).
        args: a :class:`GIFTConfig`.
        teacher_model: a model instance or name/path; defaults to
            ``args.teacher_model_name_or_path``.
        **kwargs: everything ``transformers.Trainer`` takes.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: GIFTConfig | None = None,
        teacher_model: nn.Module | str | None = None,
        data_collator: Any = None,
        **kwargs: Any,
    ) -> None:
        if args is None:
            args = GIFTConfig(output_dir="gift_hf_output")
        if not isinstance(args, GIFTConfig):
            raise TypeError(f"args must be a GIFTConfig, got {type(args).__name__}")
        if model is None:
            raise ValueError("GIFTTrainer needs a student model (see gift_hf.create_model)")
        num_classes = num_classes_of(model)
        if data_collator is None:
            data_collator = SoftLabelCollator(num_classes=num_classes)
        super().__init__(model=model, args=args, data_collator=data_collator, **kwargs)

        self.loss_fn: Loss = args.build_loss()
        self.eval_loss_fn: Loss = get_loss("ce")
        # Our losses are per-sample sums divided by `num_items_in_batch`, so gradient
        # accumulation and multi-process averaging are exact (see `_reduce`).
        self.model_accepts_loss_kwargs = True

        self.teacher_model: nn.Module | None = None
        if self.loss_fn.needs_teacher and args.soft_label_source == "teacher":
            teacher = teacher_model if teacher_model is not None else args.teacher_model_name_or_path
            if teacher is None:
                raise ValueError(
                    f"loss {args.loss!r} with soft_label_source='teacher' needs a teacher: pass teacher_model= "
                    "or set teacher_model_name_or_path"
                )
            teacher = load_teacher(
                teacher, trust_remote_code=args.trust_remote_code, **(args.teacher_model_init_kwargs or {})
            )
            teacher_classes = num_classes_of(teacher)
            if num_classes is not None and teacher_classes is not None and teacher_classes != num_classes:
                raise ValueError(
                    f"teacher has {teacher_classes} classes but the student has {num_classes}; "
                    "they must predict the same label set"
                )
            # evaluation_mode: placed on the device (and cast for mixed precision where
            # accelerate does so) but never wrapped in DDP/FSDP for training.
            self.teacher_model = self.accelerator.prepare_model(teacher, evaluation_mode=True)
            self.teacher_model.eval()
        self.augmenter = build_augmenter(args, num_classes=num_classes)

    # ------------------------------------------------------------------------------ loss
    def _targets(self, pixel_values: torch.Tensor, soft_labels: torch.Tensor | None, logits: torch.Tensor):
        """Teacher logits for this (augmented) batch, or the stored soft labels as logits."""
        if not self.loss_fn.needs_teacher:
            return None
        if self.args.soft_label_source == "teacher":
            with torch.no_grad():
                return teacher_logits(self.teacher_model, pixel_values).detach()
        if soft_labels is None:
            raise KeyError(
                "soft_label_source='dataset' but the batch has no 'soft_labels': the dataset needs a "
                "'soft_label' column (or its top-k pair); see gift_hf.relabel"
            )
        check_logits("soft_labels", soft_labels, logits)
        if self.args.soft_label_kind == "probabilities":
            # log p are logits whose softmax is p again (exact for KL / soft-CE at T=1).
            return soft_labels.float().clamp_min(1e-8).log()
        return soft_labels

    def _reduce(self, loss_fn: Loss, logits, targets, labels, num_items_in_batch) -> torch.Tensor:
        if num_items_in_batch is None:
            return loss_fn(logits, targets, labels, reduction="mean")
        if torch.is_tensor(num_items_in_batch) and num_items_in_batch.dim() > 0:  # DataParallel expands it
            num_items_in_batch = num_items_in_batch.reshape(-1)[0] * self.args.n_gpu
        loss = loss_fn(logits, targets, labels, reduction="sum") / num_items_in_batch
        if self.args.average_tokens_across_devices:
            # num_items_in_batch counts every process's items and DDP averages gradients.
            loss = loss * self.accelerator.num_processes
        return loss

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        if "pixel_values" not in inputs:
            raise KeyError(f"batch has no 'pixel_values' (got {sorted(inputs)}); set an ImageTransform on the dataset")
        pixel_values = inputs["pixel_values"]
        labels = inputs.get("labels")
        soft_labels = inputs.get("soft_labels")
        if model.training:
            if self.augmenter is not None:
                pixel_values, labels, soft_labels = self.augmenter(pixel_values, labels, soft_labels)
            logits = model(pixel_values=pixel_values).logits
            targets = self._targets(pixel_values, soft_labels, logits)
            loss = self._reduce(self.loss_fn, logits, targets, labels, num_items_in_batch)
        else:
            logits = model(pixel_values=pixel_values).logits
            loss = self._reduce(self.eval_loss_fn, logits, None, labels, num_items_in_batch)
        return (loss, ImageClassifierOutput(loss=loss, logits=logits)) if return_outputs else loss
