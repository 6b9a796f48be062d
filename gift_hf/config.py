"""`GIFTConfig`: `TrainingArguments` plus every GIFT / soft-label knob."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from transformers import TrainingArguments

from .losses import LOSSES, get_loss

__all__ = ["GIFTConfig", "SOFT_LABEL_SOURCES"]

SOFT_LABEL_SOURCES = ("teacher", "dataset", "none")


@dataclass
class GIFTConfig(TrainingArguments):
    """Training arguments for :class:`~gift_hf.GIFTTrainer`.

    Everything ``TrainingArguments`` has, plus the loss, where soft labels come from,
    the teacher, and batch augmentation. Defaults follow the GIFT paper (SPEC.md):
    ``loss="gift"``, ``gamma=0.1``, ``smoothing=0.1``, teacher relabelling online.
    """

    # ---- loss
    loss: str = field(
        default="gift",
        metadata={"help": f"Loss to train the student with: one of {sorted(LOSSES)}."},
    )
    gamma: float = field(
        default=0.1,
        metadata={"help": "GIFT: weight of the smoothed hard label added to the normalised teacher logits."},
    )
    smoothing: float = field(
        default=0.1,
        metadata={"help": "GIFT: label smoothing α of the hard label (1−α on the true class, α/(C−1) elsewhere)."},
    )
    temperature: Optional[float] = field(
        default=None,
        metadata={"help": "Softmax temperature of `kl`, `soft_ce` and `soft_ce_ce` (default: 20 for kl as in the "
                  "reference evaluation, 1 for soft_ce)."},
    )
    kl_t_squared: bool = field(
        default=False,
        metadata={"help": "Multiply the KL loss by T² (Hinton's convention). The reference evaluation does not."},
    )
    ce_weight: float = field(
        default=0.1,
        metadata={"help": "λ of the hard-label CE term in `mse_ce` and `soft_ce_ce`."},
    )
    # ---- soft labels
    soft_label_source: str = field(
        default="teacher",
        metadata={"help": "Where soft labels come from: 'teacher' (run the frozen teacher on each augmented batch), "
                  "'dataset' (a stored soft-label column), or 'none' (hard labels only; loss must be 'ce')."},
    )
    soft_label_kind: str = field(
        default="logits",
        metadata={"help": "What stored soft labels hold: 'logits' or 'probabilities' (converted with log(p) so "
                  "softmax recovers them)."},
    )
    teacher_model_name_or_path: Optional[str] = field(
        default=None,
        metadata={"help": "Teacher: a directory saved by save_pretrained, a Hub image-classification model id, "
                  "or a timm architecture name (then pass num_classes in teacher_model_init_kwargs)."},
    )
    teacher_model_init_kwargs: Optional[Union[dict, str]] = field(
        default=None,
        metadata={"help": "Keyword arguments (a dict or a JSON string) used when loading the teacher."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow Hub teachers to run their own code. Off by default: enable only for repos you trust."},
    )
    # ---- augmentation (applied on the batch's device, before student and teacher see it)
    augmentation: str = field(
        default="none",
        metadata={"help": "Batch augmentation strategy: 'none', or DSA ops joined by '_' "
                  "(e.g. 'color_crop_cutout_flip_scale_rotate'); see gift_hf.augment."},
    )
    # ---- defaults changed from TrainingArguments
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Keep dataset columns: the collator needs image, label and soft-label columns."},
    )
    report_to: Union[None, str, list[str]] = field(
        default="none", metadata={"help": "Integrations to report to ('none' by default)."}
    )

    def __post_init__(self) -> None:
        if isinstance(self.teacher_model_init_kwargs, str):
            try:
                self.teacher_model_init_kwargs = json.loads(self.teacher_model_init_kwargs)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"teacher_model_init_kwargs must be a JSON object, got {self.teacher_model_init_kwargs!r}"
                ) from err
        if self.loss not in LOSSES:
            raise ValueError(f"loss: unknown loss {self.loss!r}; expected one of {sorted(LOSSES)}")
        if not (math.isfinite(self.gamma) and self.gamma >= 0):
            raise ValueError(f"gamma: got {self.gamma}; expected a finite number >= 0")
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"smoothing: got {self.smoothing}; expected a number in [0, 1)")
        if self.temperature is not None and not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature: got {self.temperature}; expected a positive number")
        if self.ce_weight < 0:
            raise ValueError(f"ce_weight: got {self.ce_weight}; expected >= 0")
        if self.soft_label_source not in SOFT_LABEL_SOURCES:
            raise ValueError(f"soft_label_source: got {self.soft_label_source!r}; expected one of {SOFT_LABEL_SOURCES}")
        if self.soft_label_kind not in ("logits", "probabilities"):
            raise ValueError(f"soft_label_kind: got {self.soft_label_kind!r}; expected 'logits' or 'probabilities'")
        if self.soft_label_source == "none" and LOSSES[self.loss].needs_teacher:
            raise ValueError(f"loss {self.loss!r} needs soft labels but soft_label_source is 'none'")
        from .augment import parse_strategy  # local import: augment imports torch-heavy kornia

        parse_strategy(self.augmentation)
        super().__post_init__()

    def build_loss(self):
        """The configured :class:`~gift_hf.losses.Loss`."""
        return get_loss(
            self.loss,
            gamma=self.gamma,
            smoothing=self.smoothing,
            temperature=self.temperature,
            t_squared=self.kl_t_squared,
            ce_weight=self.ce_weight,
        )
