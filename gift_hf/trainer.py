"""`GIFTTrainer`: a `transformers.Trainer` that trains students on soft labels."""

from __future__ import annotations

import bisect
import os
import re
from typing import Any

import torch
from torch import nn
from transformers import Trainer
from transformers.modeling_outputs import ImageClassifierOutput
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .augment import ZCA, build_augmenter, fit_zca
from .config import GIFTConfig
from .data import SoftLabelCollator
from .losses import Loss, check_logits, get_loss
from .modeling import load_teacher, num_classes_of, teacher_logits

__all__ = ["INCOMPLETE_CHECKPOINT_MARKER", "GIFTTrainer", "last_checkpoint"]

INCOMPLETE_CHECKPOINT_MARKER = "checkpoint-is-incomplete.txt"
"""File present in a checkpoint folder while it is being written (every rank included)."""


def last_checkpoint(output_dir: str) -> str | None:
    """The newest *complete* ``checkpoint-<step>`` folder of ``output_dir``, or None.

    A process killed while saving leaves a folder without ``trainer_state.json`` or with
    :data:`INCOMPLETE_CHECKPOINT_MARKER`; resuming from it would fail or silently differ,
    so it is skipped (``transformers.trainer_utils.get_last_checkpoint`` would pick it).
    """
    pattern = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
    steps = []
    for name in os.listdir(output_dir):
        match = pattern.match(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            steps.append((int(match.group(1)), os.path.join(output_dir, name)))
    for _, path in sorted(steps, reverse=True):
        if os.path.isfile(os.path.join(path, "trainer_state.json")) and not os.path.exists(
            os.path.join(path, INCOMPLETE_CHECKPOINT_MARKER)
        ):
            return path
    return None


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
        zca: a fitted :class:`~gift_hf.augment.ZCA` (or a path to load one) that whitens
            every batch; by default ``args.zca`` loads ``args.zca_path`` or fits on
            ``train_dataset``. It is saved as ``zca.safetensors`` with the model.
        **kwargs: everything ``transformers.Trainer`` takes.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: GIFTConfig | None = None,
        teacher_model: nn.Module | str | None = None,
        data_collator: Any = None,
        zca: ZCA | str | None = None,
        **kwargs: Any,
    ) -> None:
        if args is None:
            args = GIFTConfig(output_dir="gift_hf_output")
        if not isinstance(args, GIFTConfig):
            raise TypeError(f"args must be a GIFTConfig, got {type(args).__name__}")
        if model is None:
            raise ValueError("GIFTTrainer needs a student model (see gift_hf.create_model)")
        for name in ("train_dataset", "eval_dataset"):
            splits = kwargs.get(name)
            for key, split in (splits.items() if isinstance(splits, dict) else [(None, splits)]):
                if split is not None and hasattr(split, "__len__") and len(split) == 0:
                    label = f"{name}[{key!r}]" if key is not None else name
                    raise ValueError(f"{label} is empty (0 rows); expected at least one example")
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
        # Batch augmentation (DSA, CutMix/MixUp) in the training step; its generator is
        # seeded with seed + process_index and checkpointed (see _save_rng_state).
        self.augmenter = build_augmenter(args, num_classes=num_classes)
        # ZCA whitening of every prepared batch: an explicit `zca`, else `args.zca_path`,
        # else fitted on the training set.
        self.zca: ZCA | None = None
        if zca is not None:
            self.zca = zca if isinstance(zca, ZCA) else ZCA.load(zca)
        elif args.zca:
            if args.zca_path is not None:
                self.zca = ZCA.load(args.zca_path)
            elif self.train_dataset is not None:
                self.zca = fit_zca(self.train_dataset, epsilon=args.zca_epsilon)
            else:
                raise ValueError(
                    "zca=True needs zca_path (a saved run or its zca.safetensors) or a train_dataset to fit on"
                )
        if self.zca is not None:
            self.zca.to(self.args.device)

    # ------------------------------------------------------------ augmentation and ZCA
    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        inputs = super()._prepare_inputs(inputs)
        # ZCA is part of the input pipeline: every batch the Trainer prepares (training,
        # evaluation, prediction) is whitened on its device, before augmentation and
        # before the student and the teacher see it.
        if getattr(self, "zca", None) is not None and "pixel_values" in inputs:
            inputs["pixel_values"] = self.zca(inputs["pixel_values"])
        return inputs

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict=state_dict)
        # The whitening belongs to the model's inputs: keep it next to the weights so a
        # reloaded run evaluates with the identical transform (GIFTConfig.zca_path).
        if getattr(self, "zca", None) is not None and self.args.should_save:
            self.zca.save(output_dir if output_dir is not None else self.args.output_dir)

    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        # One file per process: each rank has its own augmentation generator.
        if self.augmenter is not None:
            self.augmenter.save_state(output_dir, rank=self.args.process_index)

    def _load_rng_state(self, checkpoint: str | None) -> None:
        super()._load_rng_state(checkpoint)
        if checkpoint is not None and self.augmenter is not None:
            self.augmenter.load_state(checkpoint, rank=self.args.process_index, missing_ok=True)

    # ----------------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        # Mark the folder incomplete until every rank has written its part (model,
        # optimizer, per-rank RNG state), so a kill mid-save never yields a checkpoint
        # that `last_checkpoint` would resume from.
        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        marker = os.path.join(folder, INCOMPLETE_CHECKPOINT_MARKER)
        if self.args.should_save:
            os.makedirs(folder, exist_ok=True)
            with open(marker, "w") as f:
                f.write("written while saving; removed once every process has saved\n")
        super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()
        if self.args.should_save and os.path.exists(marker):
            os.remove(marker)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """``Trainer.train``; ``resume_from_checkpoint=True`` picks the last *complete* checkpoint."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
            if resume_from_checkpoint is None:
                raise ValueError(
                    f"resume_from_checkpoint=True but output_dir {self.args.output_dir!r} has no complete checkpoint"
                )
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    # ---------------------------------------------------------- optimizer and schedule
    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """Every parameter with ``decay_all_parameters`` (the papers' reference code), else the Trainer's rule."""
        if self.args.decay_all_parameters:
            return [name for name, _ in model.named_parameters()]
        return super().get_decay_parameter_names(model)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """``lr_scheduler_type`` multiplied by ``lr_decay`` at each of ``lr_milestones`` (``MultiStepLR``)."""
        created = self.lr_scheduler is None
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        if created and self.args.lr_milestones and self.args.lr_decay != 1:
            if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
                raise ValueError(
                    f"lr_milestones: got {self.args.lr_milestones} with lr_scheduler_type "
                    f"{self.args.lr_scheduler_type!r}, which cannot be stepped down; set lr_decay to 1"
                )
            milestones = self.args.lr_milestone_steps(num_training_steps, self.state.num_train_epochs)
            decay = self.args.lr_decay
            scheduler.lr_lambdas = [
                lambda step, base=base: base(step) * decay ** bisect.bisect_right(milestones, step)
                for base in scheduler.lr_lambdas
            ]
        return scheduler

    # ------------------------------------------------------------------------------ loss
    def _targets(self, pixel_values: torch.Tensor, soft_labels: torch.Tensor | None, logits: torch.Tensor):
        """Teacher logits for this (augmented) batch, or the stored soft labels as logits."""
        if not self.loss_fn.needs_teacher:
            return None
        if self.args.soft_label_source == "teacher":
            # DeepSpeed casts the batch to its bf16/fp16 dtype, but the teacher is prepared
            # outside the engine and keeps its own dtype: feed it that dtype.
            weight = next(self.teacher_model.parameters(), None)
            if weight is not None and pixel_values.is_floating_point() and pixel_values.dtype != weight.dtype:
                pixel_values = pixel_values.to(weight.dtype)
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
