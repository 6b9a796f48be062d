"""`GIFTConfig`: `TrainingArguments` plus every GIFT / soft-label knob."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from transformers import TrainingArguments
from transformers.training_args import OptimizerNames

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
        metadata={"help": "DSA batch augmentation: 'none', or ops from color, crop, cutout, flip, scale, rotate "
                  "joined by '_' (the reference: 'color_crop_cutout_flip_scale_rotate'); see docs/augmentation.md."},
    )
    augmentation_mode: str = field(
        default="single",
        metadata={"help": "'single': one DSA op drawn per batch, parameters drawn per image (the reference "
                  "evaluation); 'all': every op of `augmentation` in turn."},
    )
    mix: str = field(
        default="none",
        metadata={"help": "Batch mixing after DSA: 'none', 'mixup', 'cutmix' or 'both' (CutMix or MixUp, 1/2 each). "
                  "Hard labels become mixed one-hot targets; stored soft labels are mixed with the same λ."},
    )
    mix_prob: float = field(
        default=1.0,
        metadata={"help": "Probability that a training batch is mixed (when `mix` is not 'none')."},
    )
    mix_beta: float = field(
        default=1.0,
        metadata={"help": "β of the mixing coefficient λ ~ Beta(β, β) for MixUp and CutMix."},
    )
    zca: bool = field(
        default=False,
        metadata={"help": "ZCA-whiten every batch (training, teacher input, evaluation). Fitted on the training "
                  "set unless `zca_path` is given; saved as zca.safetensors with the model."},
    )
    zca_epsilon: float = field(
        default=0.1,
        metadata={"help": "ZCA regularisation ε added to the covariance eigenvalues (0.1 as in MTT)."},
    )
    zca_path: Optional[str] = field(
        default=None,
        metadata={"help": "A run directory (or zca.safetensors file) to load the ZCA from instead of fitting it; "
                  "use it to evaluate a saved run, or to reuse a ZCA fitted on the full real training set."},
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
        valid_optims = [o.value for o in OptimizerNames]
        if not isinstance(self.optim, OptimizerNames) and self.optim not in valid_optims:
            # TrainingArguments' own message does not name the option.
            raise ValueError(f"optim: unknown optimizer {self.optim!r}; expected one of {valid_optims}")
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
        # local import: augment imports torch-heavy kornia and timm
        from .augment import AUGMENTATION_MODES, MIX_MODES, parse_strategy

        parse_strategy(self.augmentation)
        if self.augmentation_mode not in AUGMENTATION_MODES:
            raise ValueError(
                f"augmentation_mode: got {self.augmentation_mode!r}; expected one of {AUGMENTATION_MODES}"
            )
        if self.mix not in MIX_MODES:
            raise ValueError(f"mix: got {self.mix!r}; expected one of {MIX_MODES}")
        if not 0 <= self.mix_prob <= 1:
            raise ValueError(f"mix_prob: got {self.mix_prob}; expected a probability in [0, 1]")
        if not (math.isfinite(self.mix_beta) and self.mix_beta > 0):
            raise ValueError(f"mix_beta: got {self.mix_beta}; expected a finite number > 0")
        if not (math.isfinite(self.zca_epsilon) and self.zca_epsilon > 0):
            raise ValueError(f"zca_epsilon: got {self.zca_epsilon}; expected a finite number > 0")
        if self.zca_path is not None and not self.zca:
            raise ValueError(f"zca_path: got {self.zca_path!r} but zca is False; set zca=True to whiten with it")
        super().__post_init__()

    # The dataclass-generated repr would print hub_token in clear; TrainingArguments' str
    # masks every *_token field, so repr uses it too.
    __repr__ = TrainingArguments.__str__

    def __getstate__(self) -> dict[str, Any]:
        # The Trainer pickles its args to training_args.bin in the output folder and every
        # checkpoint, which push_to_hub uploads: never let a token travel with them.
        state = self.__dict__.copy()
        for key in state:
            if key.endswith("_token"):
                state[key] = None
        return state

    def __deepcopy__(self, memo: dict) -> "GIFTConfig":
        # In-memory copies keep the token (deepcopy would otherwise go through __getstate__).
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

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
