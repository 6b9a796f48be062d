"""`GIFTConfig`: `TrainingArguments` plus every GIFT / soft-label / evaluation-protocol knob."""

from __future__ import annotations

import bisect
import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from transformers import TrainingArguments
from transformers.trainer_utils import SchedulerType
from transformers.training_args import OptimizerNames

from gift_hf.engine.losses import LOSSES, get_loss
from gift_hf.parser import parse_dict_option

# `accelerate launch --mixed_precision` (or the user) sets this before gift_hf is imported.
_MIXED_PRECISION_ENV = "ACCELERATE_MIXED_PRECISION"
_LAUNCH_MIXED_PRECISION = os.environ.get(_MIXED_PRECISION_ENV)

__all__ = ["DSA_STRATEGY", "GIFTConfig", "PROTOCOLS", "RDED_STRATEGY", "SOFT_LABEL_SOURCES", "protocol_config"]

SOFT_LABEL_SOURCES = ("teacher", "dataset", "none")
BATCH_SIZE_RULES = ("images", "ipc")
EVAL_TRANSFORMS = ("resize", "resize_center_crop")
DEVICE_RESIDENT = ("auto", "always", "never")

#: The DSA strategy both papers evaluate with (Zhao & Bilen's differentiable siamese augmentation).
DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"
#: The RDED/SRe2L per-image pipeline (gift_hf.data.augment.RDED_STRATEGY; repeated here: augment imports torch).
RDED_STRATEGY = "patchshuffle_resizedcrop_flip"


@dataclass
class GIFTConfig(TrainingArguments):
    """Training arguments for :class:`~gift_hf.GIFTTrainer`: the one training configuration.

    Everything ``TrainingArguments`` has, plus the loss, where soft labels come from, the
    teacher, batch augmentation, and what an evaluation protocol needs (the batch-size rule,
    students per evaluation, best-of-k evaluations, the label temperature).

    Defaults are the GIFT paper's student protocol (Shang et al., ICLR 2025): ``loss="gift"``
    (``gamma=0.1``, ``smoothing=0.1``), teacher relabelling online, AdamW with learning rate
    1e-3 and weight decay 1e-4 on every parameter, no gradient clipping, and the learning
    rate multiplied by 0.2 at 2/3 and 5/6 of training (``MultiStepLR``). Where these differ
    from ``TrainingArguments``:

    | field | TrainingArguments | GIFTConfig |
    |---|---|---|
    | `learning_rate` | 5e-5 | 1e-3 |
    | `weight_decay` | 0 | 1e-4, on every parameter (`decay_all_parameters`) |
    | `max_grad_norm` | 1.0 (clipping) | 0 (no clipping) |
    | `lr_scheduler_type` | `linear` | `constant`, × `lr_decay` at each of `lr_milestones` |
    | `optim` | `adamw_torch` (fused on recent torch) | `adamw_torch` |
    | `logging_steps` | 500 | 50 |
    | `remove_unused_columns` | True | False (the collator needs the columns) |
    | `logging_nan_inf_filter` | True (reads the loss every step) | False (the divergence flag, read when logging) |

    The protocol's 1000 epochs, its batch-size rule and its 3 students, best of 4
    evaluations, are set by the recipe ``recipes/gift/evaluate.yaml`` (and
    ``PROTOCOLS["gift"]``), not by default. So the Python defaults differ from what the
    commands run with their recipes: ``GIFTConfig()`` keeps ``TrainingArguments``'
    ``num_train_epochs=3`` and ``per_device_train_batch_size=8`` and has
    ``augmentation="none"``, a quick first run in a notebook; ``gift-hf train --config
    recipes/gift/train.yaml`` (or ``protocol_config("gift")``) gives 1000 epochs, batch
    10/50/100/200 by set size and the DSA augmentation. Why: the budget and the augmentation
    depend on the data (ImageNet-1K: 300 epochs), so they live in the recipes, one per setting
    (see "Conventions" in the docs' index).
    """

    # ---- defaults changed from TrainingArguments (the GIFT student protocol)
    learning_rate: float = field(default=1e-3, metadata={"help": "Initial learning rate (GIFT protocol: 1e-3)."})
    weight_decay: float = field(
        default=1e-4, metadata={"help": "Weight decay (GIFT protocol: 1e-4; decoupled for AdamW)."}
    )
    max_grad_norm: float = field(
        default=0.0, metadata={"help": "Gradient clipping norm; 0 (the default, as in both papers) clips nothing."}
    )
    optim: Union[OptimizerNames, str] = field(
        default="adamw_torch",
        metadata={
            "help": "Optimizer (TrainingArguments names: adamw_torch, sgd, rmsprop, adagrad, …). SGD momentum "
            "is given as optim_args, e.g. 'momentum=0.9'."
        },
    )
    lr_scheduler_type: Union[SchedulerType, str] = field(
        default="constant",
        metadata={
            "help": "Base learning-rate schedule (TrainingArguments names); lr_milestones multiplies it. "
            "'constant' with the default milestones is the papers' MultiStepLR."
        },
    )
    lr_milestones: list[float] = field(
        default_factory=lambda: [2 / 3, 5 / 6],
        metadata={
            "help": "Fractions of training at which the learning rate is multiplied by lr_decay (GIFT: 2/3 "
            "and 5/6; rounded to whole epochs when training is epoch-based)."
        },
    )
    lr_decay: float = field(
        default=0.2, metadata={"help": "Factor applied at each of lr_milestones (GIFT: 0.2; 1 turns the steps off)."}
    )
    decay_all_parameters: bool = field(
        default=True,
        metadata={
            "help": "Apply weight_decay to every parameter, as the papers' reference code does; false: the "
            "Trainer's rule, which exempts biases and normalisation weights."
        },
    )
    logging_steps: float = field(default=50, metadata={"help": "Log every N optimizer steps."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train into an output_dir that already has files (refused otherwise, unless resuming)."},
    )

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
        metadata={
            "help": "Softmax temperature of `kl`, `soft_ce`, `soft_ce_ce` and `hf_kd` (default: 20 for kl as "
            "in the reference evaluation, 1 for soft_ce, 5 for hf_kd as in the HF guide)."
        },
    )
    kl_t_squared: bool = field(
        default=False,
        metadata={"help": "Multiply the KL loss by T² (Hinton's convention). The reference evaluation does not."},
    )
    ce_weight: float = field(
        default=0.1,
        metadata={"help": "λ of the hard-label CE term in `mse_ce` and `soft_ce_ce`."},
    )
    kd_lambda: Optional[float] = field(
        default=None,
        metadata={
            "help": "`hf_kd` (the Hugging Face distillation guide's loss λ·T²·KL + (1 − λ)·CE): λ, the weight of "
            "the KL term (default: the guide's 0.5; its temperature defaults to the guide's 5)."
        },
    )
    # ---- soft labels
    soft_label_source: str = field(
        default="teacher",
        metadata={
            "help": "Where soft labels come from: 'teacher' (run the frozen teacher on each augmented batch), "
            "'dataset' (a stored soft-label column), or 'none' (hard labels only; loss must be 'ce')."
        },
    )
    soft_label_kind: Optional[str] = field(
        default=None,
        metadata={
            "help": "What stored soft labels hold: 'logits' or 'probabilities' (converted with log(p) so "
            "softmax recovers them). Default: what the gift_hf dataset card records ('logits' for a dataset "
            "without one); a kind that contradicts the card is refused. Relabelling stores this kind."
        },
    )
    teacher_model_name_or_path: Optional[str] = field(
        default=None,
        metadata={
            "help": "Teacher: a directory saved by save_pretrained, a Hub image-classification model id, "
            "or a timm architecture name (then pass num_classes in teacher_model_init_kwargs)."
        },
    )
    teacher_model_init_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Keyword arguments used when loading the teacher (a JSON object on the command line)."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow Hub teachers to run their own code. Off by default: enable only for repos you trust."},
    )
    # ---- augmentation (applied on the batch's device, before student and teacher see it)
    augmentation: str = field(
        default="none",
        metadata={
            "help": "DSA batch augmentation: 'none', or ops from color, crop, cutout, flip, scale, rotate "
            "joined by '_' (the reference: 'color_crop_cutout_flip_scale_rotate'); see docs/augmentation.md."
        },
    )
    augmentation_mode: str = field(
        default="single",
        metadata={
            "help": "'single': one DSA op drawn per batch, parameters drawn per image (MTT's reference "
            "evaluation, the label paper's); 'all': every op of `augmentation` in turn; 'gift': GIFT's "
            "evaluator, every batch flip, color, ONE of crop/scale/rotate drawn per batch, cutout, all with "
            "per-image parameters (DSA ops only)."
        },
    )
    factor_crop: int = field(
        default=1,
        metadata={
            "help": "GIFT's per-image factor crop before the batch augmentation: 1 keeps images whole (all "
            "sets); 2 (ImageNet-1K with ResNet-18) takes one of the 4 quadrants with probability 3/4, "
            "resized bilinearly to the full size. Unrelated to RDED's patch-shuffle factor."
        },
    )
    patch_shuffle_factor: int = field(
        default=2,
        metadata={
            "help": "RDED's patch-shuffle factor, read by the RDED ops (`patchshuffle`, `resizedcrop`): "
            "images cut into factor × factor strips shuffled per image, and RandomResizedCrop of (1/factor, 1) "
            "of the area. RDED's scripts: 2 on ImageNet-1K, 1 on Tiny-ImageNet and CIFAR. Unrelated to GIFT's "
            "factor_crop."
        },
    )
    mix: str = field(
        default="none",
        metadata={
            "help": "Batch mixing after DSA: 'none', 'mixup', 'cutmix' or 'both' (CutMix or MixUp, 1/2 each). "
            "Hard labels become mixed one-hot targets; stored soft labels are mixed with the same λ."
        },
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
        metadata={
            "help": "ZCA-whiten every batch (training, teacher input, evaluation). Fitted on the training "
            "set unless `zca_path` is given; saved as zca.safetensors with the model."
        },
    )
    zca_epsilon: float = field(
        default=0.1,
        metadata={"help": "ZCA regularisation ε added to the covariance eigenvalues (0.1 as in MTT)."},
    )
    zca_path: Optional[str] = field(
        default=None,
        metadata={
            "help": "A run directory (or zca.safetensors file) to load the ZCA from instead of fitting it; "
            "use it to evaluate a saved run, or to reuse a ZCA fitted on the full real training set."
        },
    )
    # ---- resuming
    resume_force: bool = field(
        default=False,
        metadata={
            "help": "Resume even from a checkpoint of a different run (another loss, seed, dataset or "
            "schedule) or one without gift_hf's completeness marker. Off: such a resume is refused."
        },
    )
    # ---- evaluation protocol (what TrainingArguments has no field for)
    batch_size_thresholds: list[int] = field(
        default_factory=lambda: [10, 500, 20000],
        metadata={
            "help": "Batch-size rule: a training set of at most thresholds[i] images trains with "
            "batch_sizes[i] (GIFT protocol: 10, 500, 20000)."
        },
    )
    batch_sizes: Optional[list[int]] = field(
        default=None,
        metadata={
            "help": "Batch-size rule: per-device batch sizes, one per threshold and one for larger sets "
            "(GIFT protocol: 10 50 100 200). Unset: per_device_train_batch_size."
        },
    )
    num_students: int = field(
        default=1,
        metadata={
            "help": "Students an evaluation trains, with seeds seed, seed + 1, …; reported as mean ± std "
            "(GIFT protocol: 3, label paper: 5)."
        },
    )
    best_of: int = field(
        default=1,
        metadata={
            "help": "Evaluations per student, evenly spaced over training (the last at its end); the best "
            "is reported (GIFT protocol: 4; 1 = final accuracy)."
        },
    )
    label_temperature: float = field(
        default=1.0,
        metadata={
            "help": "T of soft labels stored as probabilities by relabelling, softmax(logits / T) (the label "
            "paper's temperature)."
        },
    )
    batch_size_rule: str = field(
        default="images",
        metadata={
            "help": "What batch_size_thresholds count: 'images', the set's size (GIFT protocol), or 'ipc', "
            "images per class, with batch_sizes doubled for 100 classes or more (RDED/SRe2L protocol)."
        },
    )
    eval_every_epochs: int = field(
        default=0,
        metadata={
            "help": "Evaluate every N epochs (and at the end), reporting the best (RDED protocol: 10); 0: "
            "best_of spaces the evaluations instead."
        },
    )
    eval_start_fraction: float = field(
        default=0.0,
        metadata={
            "help": "With eval_every_epochs: evaluate only after this fraction of the epochs (RDED protocol: "
            "0.8: the last fifth)."
        },
    )
    eval_transform: str = field(
        default="resize",
        metadata={
            "help": "How evaluation images are prepared: 'resize' (to the student's size, as training) or "
            "'resize_center_crop' (shorter side to 8/7 of the size, then the centre crop: the RDED/SRe2L "
            "validation transform)."
        },
    )
    # ---- data path
    device_resident: str = field(
        default="auto",
        metadata={
            "help": "Keep the decoded training set (and the evaluation split) on the training device: 'auto' "
            "when it fits in half of the free memory, else the DataLoader path with workers, pinned memory "
            "and persistent workers; 'always'; 'never' (the DataLoader as configured)."
        },
    )
    # ---- defaults changed from TrainingArguments
    logging_nan_inf_filter: bool = field(
        default=False,
        metadata={
            "help": "Trainer's per-step NaN/inf filter of the logged loss. Off: it reads the loss back to the "
            "host every step; gift_hf's divergence check (an on-device flag read at logging steps) stops a "
            "diverged run instead."
        },
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Keep dataset columns: the collator needs image, label and soft-label columns."},
    )
    report_to: Union[None, str, list[str]] = field(
        default="none", metadata={"help": "Integrations to report to ('none' by default)."}
    )

    def __post_init__(self) -> None:
        self.teacher_model_init_kwargs = parse_dict_option("teacher_model_init_kwargs", self.teacher_model_init_kwargs)
        self._check_training_budget()
        self._check_protocol()
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
        if self.kd_lambda is not None and not 0 <= self.kd_lambda <= 1:
            raise ValueError(f"kd_lambda: got {self.kd_lambda}; expected a number in [0, 1]")
        if self.soft_label_source not in SOFT_LABEL_SOURCES:
            raise ValueError(f"soft_label_source: got {self.soft_label_source!r}; expected one of {SOFT_LABEL_SOURCES}")
        if self.soft_label_kind not in (None, "logits", "probabilities"):
            raise ValueError(
                f"soft_label_kind: got {self.soft_label_kind!r}; expected 'logits', 'probabilities' "
                "or unset (the dataset card's kind)"
            )
        if self.soft_label_source == "none" and LOSSES[self.loss].needs_teacher:
            raise ValueError(f"loss {self.loss!r} needs soft labels but soft_label_source is 'none'")
        # local import: augment imports torch-heavy kornia and timm
        from gift_hf.data.augment import MIX_MODES, check_factor_crop, check_mode, parse_strategy

        check_mode(parse_strategy(self.augmentation), self.augmentation_mode)
        check_factor_crop(self.factor_crop)
        if (
            isinstance(self.patch_shuffle_factor, bool)
            or not isinstance(self.patch_shuffle_factor, int)
            or self.patch_shuffle_factor < 1
        ):
            raise ValueError(
                f"patch_shuffle_factor: got {self.patch_shuffle_factor!r}; expected an integer >= 1 "
                "(RDED: 2 on ImageNet-1K, 1 on Tiny-ImageNet)"
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
        # transformers before 5 writes this config's precision into the process environment,
        # where the next config read it as the launcher's: a float32 run after a bf16 one in the
        # same process trained in bf16. Each config starts from the launcher's setting.
        if _LAUNCH_MIXED_PRECISION is None:
            os.environ.pop(_MIXED_PRECISION_ENV, None)
        else:
            os.environ[_MIXED_PRECISION_ENV] = _LAUNCH_MIXED_PRECISION
        super().__post_init__()

    def _check_training_budget(self) -> None:
        """Refuse, naming the field, what TrainingArguments accepts and fails on later."""
        if not (
            isinstance(self.learning_rate, (int, float))
            and math.isfinite(self.learning_rate)
            and self.learning_rate > 0
        ):
            raise ValueError(f"learning_rate: got {self.learning_rate}; expected a finite number > 0")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: got {value!r}; expected an integer >= 1")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay: got {self.weight_decay}; expected a finite number >= 0")
        if self.max_steps == 0 or (self.max_steps < 0 and not self.num_train_epochs > 0):
            raise ValueError(
                f"num_train_epochs/max_steps: got num_train_epochs={self.num_train_epochs}, "
                f"max_steps={self.max_steps}; "
                "nothing would be trained. Expected num_train_epochs > 0 (with max_steps -1) or max_steps > 0"
            )
        self.lr_milestones = [float(m) for m in self.lr_milestones]
        if any(not 0 < m < 1 for m in self.lr_milestones) or self.lr_milestones != sorted(self.lr_milestones):
            raise ValueError(f"lr_milestones: got {self.lr_milestones}; expected increasing fractions in (0, 1)")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay: got {self.lr_decay}; expected a factor in (0, 1]")

    def _check_protocol(self) -> None:
        self.batch_size_thresholds = [int(t) for t in self.batch_size_thresholds]
        if self.batch_sizes is not None:
            self.batch_sizes = [int(b) for b in self.batch_sizes]
            if len(self.batch_sizes) != len(self.batch_size_thresholds) + 1 or min(self.batch_sizes) < 1:
                raise ValueError(
                    f"batch_sizes: got {self.batch_sizes} for batch_size_thresholds {self.batch_size_thresholds}; "
                    f"expected {len(self.batch_size_thresholds) + 1} positive sizes (one per threshold, one for "
                    "larger sets)"
                )
        if self.batch_size_thresholds != sorted(self.batch_size_thresholds):
            raise ValueError(f"batch_size_thresholds: got {self.batch_size_thresholds}; expected increasing sizes")
        for name in ("num_students", "best_of"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: got {getattr(self, name)}; expected >= 1")
        if not (math.isfinite(self.label_temperature) and self.label_temperature > 0):
            raise ValueError(f"label_temperature: got {self.label_temperature}; expected a positive number")
        if self.batch_size_rule not in BATCH_SIZE_RULES:
            raise ValueError(f"batch_size_rule: got {self.batch_size_rule!r}; expected one of {BATCH_SIZE_RULES}")
        if (
            isinstance(self.eval_every_epochs, bool)
            or not isinstance(self.eval_every_epochs, int)
            or self.eval_every_epochs < 0
        ):
            raise ValueError(f"eval_every_epochs: got {self.eval_every_epochs!r}; expected an integer >= 0")
        if self.eval_every_epochs and self.best_of > 1:
            raise ValueError(
                f"eval_every_epochs: got {self.eval_every_epochs} with best_of={self.best_of}; both "
                "schedule the evaluations, expected one of them (set best_of to 1)"
            )
        if not 0 <= self.eval_start_fraction < 1:
            raise ValueError(f"eval_start_fraction: got {self.eval_start_fraction}; expected a fraction in [0, 1)")
        if self.eval_transform not in EVAL_TRANSFORMS:
            raise ValueError(f"eval_transform: got {self.eval_transform!r}; expected one of {EVAL_TRANSFORMS}")
        if self.device_resident not in DEVICE_RESIDENT:
            raise ValueError(f"device_resident: got {self.device_resident!r}; expected one of {DEVICE_RESIDENT}")

    # ------------------------------------------------------------------ derived values
    @property
    def label_source(self) -> str:
        """Where this run's soft labels come from for its loss: ``'none'`` for a hard-label loss
        (``ce``), else ``soft_label_source``."""
        return self.soft_label_source if LOSSES[self.loss].needs_teacher else "none"

    def train_batch_size_for(self, num_images: int, num_classes: int | None = None) -> int:
        """Per-device training batch size for a set of ``num_images`` images of ``num_classes``
        classes (the batch-size rule when ``batch_sizes`` is set, else
        ``per_device_train_batch_size``).

        ``batch_size_rule="images"`` compares ``num_images`` with the thresholds;
        ``"ipc"`` compares the images per class and doubles the batch size for 100 classes
        or more (RDED/SRe2L: 10/50/100 for IPC 1/10/50, 20/100/200 on CIFAR-100 and ImageNet-1K).
        """
        if self.batch_sizes is None:
            return self.per_device_train_batch_size
        if self.batch_size_rule == "images":
            return self.batch_sizes[bisect.bisect_left(self.batch_size_thresholds, num_images)]
        if not num_classes:
            raise ValueError("batch_size_rule='ipc' needs the number of classes of the training set")
        ipc = math.ceil(num_images / num_classes)
        size = self.batch_sizes[bisect.bisect_left(self.batch_size_thresholds, ipc)]
        return size * 2 if num_classes >= 100 else size

    def seeds(self) -> list[int]:
        """The students' seeds: ``seed … seed + num_students − 1``."""
        return [self.seed + i for i in range(self.num_students)]

    def lr_milestone_steps(self, total_steps: int, num_epochs: int | float | None = None) -> list[int]:
        """Optimizer steps at which the learning rate is multiplied by ``lr_decay``.

        With ``num_epochs`` dividing ``total_steps`` the milestones fall on epoch boundaries
        (``round(f · epochs)`` epochs), as the papers' epoch-based ``MultiStepLR``.
        """
        epochs = int(num_epochs or 0)
        if epochs > 0 and total_steps % epochs == 0:
            per_epoch = total_steps // epochs
            return sorted({max(1, round(f * epochs)) * per_epoch for f in self.lr_milestones})
        return sorted({max(1, round(f * total_steps)) for f in self.lr_milestones})

    #: TrainingArguments fields a trained model depends on (see :meth:`training_settings`).
    _TRAINING_FIELDS = (
        "optim_args",
        "adam_beta1",
        "adam_beta2",
        "adam_epsilon",
        "num_train_epochs",
        "max_steps",
        "lr_scheduler_kwargs",
        "warmup_steps",
        "warmup_ratio",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "bf16",
        "fp16",
        "label_smoothing_factor",
    )
    #: GIFTConfig fields that say where or how a run is kept, not what it trains.
    _NOT_TRAINING_FIELDS = (
        "logging_steps",
        "overwrite_output_dir",
        "resume_force",
        "num_students",
        "remove_unused_columns",
        "report_to",
        "trust_remote_code",
        "zca_path",
        "logging_nan_inf_filter",
        "device_resident",
    )

    def changed_settings(self) -> str:
        """``name=value`` of every field that differs from its default (tokens never shown), for one
        log line instead of the whole configuration. (No second config is built: under
        ``accelerate launch`` that would set up the process group again.)"""
        simple = (str, int, float, bool, list, tuple, type(None))
        changed = []
        for f in dataclasses.fields(self):
            if not f.init or f.name.endswith("_token"):
                continue
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            value, default = (
                getattr(getattr(self, f.name), "value", getattr(self, f.name)),
                getattr(default, "value", default),
            )
            if not isinstance(value, simple) or value == default:
                continue
            if (not value and not default) or (default is None and value == "none"):  # unset, normalised
                continue
            changed.append(f"{f.name}={value!r}")
        return ", ".join(changed) or "none"

    def training_settings(self) -> dict[str, Any]:
        """The values a trained model depends on (not where it is saved or logged, nor the seed):
        what fingerprints of results hash."""
        own = [
            f.name
            for f in dataclasses.fields(GIFTConfig)
            if f.name not in TrainingArguments.__dataclass_fields__ or f.name in GIFTConfig.__annotations__
        ]
        names = [n for n in own if n not in self._NOT_TRAINING_FIELDS] + list(self._TRAINING_FIELDS)
        values = {}
        for name in names:
            value = getattr(self, name, None)
            values[name] = getattr(value, "value", value)  # enums as their names
        return values

    def replace(self, **changes: Any) -> "GIFTConfig":
        """A copy with ``changes`` applied (validated again)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        values.update(changes)
        return type(self)(**values)

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
        """The configured :class:`~gift_hf.engine.losses.Loss`."""
        return get_loss(
            self.loss,
            gamma=self.gamma,
            smoothing=self.smoothing,
            temperature=self.temperature,
            t_squared=self.kl_t_squared,
            ce_weight=self.ce_weight,
            kd_lambda=self.kd_lambda,
        )


#: The papers' evaluation protocols as ``GIFTConfig`` values (only those differing from the
#: defaults are needed, every one is listed for reading). The YAML recipes under
#: ``recipes/gift/`` and ``recipes/label_paper/`` hold the same values.
PROTOCOLS: dict[str, dict[str, Any]] = {
    # Shang et al., ICLR 2025 (GIFT)
    "gift": dict(
        loss="gift",
        soft_label_source="teacher",
        optim="adamw_torch",
        learning_rate=1e-3,
        weight_decay=1e-4,
        lr_scheduler_type="constant",
        lr_milestones=[2 / 3, 5 / 6],
        lr_decay=0.2,
        num_train_epochs=1000,
        batch_size_thresholds=[10, 500, 20000],
        batch_sizes=[10, 50, 100, 200],
        augmentation=DSA_STRATEGY,
        augmentation_mode="gift",  # GIFT's evaluator, not MTT's one op of six
        factor_crop=1,  # 2 on ImageNet-1K with ResNet-18 (recipes/gift/imagenet1k_resnet18.yaml)
        num_students=3,
        best_of=4,
        seed=0,
    ),
    # Qin et al., NeurIPS 2024 (the label paper); where it is silent, MTT's evaluate_synset
    # protocol that line of work evaluates with: lr 0.01, ×0.1 at half of training, batch 256.
    "label_paper": dict(
        loss="soft_ce",
        soft_label_source="dataset",
        soft_label_kind="probabilities",
        optim="sgd",
        optim_args="momentum=0.9",
        learning_rate=0.01,
        weight_decay=5e-4,
        lr_scheduler_type="constant",
        lr_milestones=[0.5],
        lr_decay=0.1,
        num_train_epochs=1000,
        batch_sizes=None,
        per_device_train_batch_size=256,
        augmentation=DSA_STRATEGY,
        augmentation_mode="single",  # MTT's DSA: one op of six per batch
        num_students=5,
        best_of=1,
        seed=0,
    ),
    # DD-Ranking's students (Li et al., 2025; its CIFAR-10 ConvNet-3 settings): DSA one op per batch,
    # SGD momentum 0.9, weight decay 5e-4, ×0.1 at half of training, 1000 epochs, batch 256; soft
    # cross-entropy on the teacher's logits stored once ("S"); evaluated every 20 epochs in the
    # last 20 %. The learning rate is searched over a grid (gift_hf.evaluation.ddranking).
    "ddranking": dict(
        loss="soft_ce",
        temperature=1.0,
        soft_label_source="dataset",
        soft_label_kind="logits",
        optim="sgd",
        optim_args="momentum=0.9",
        learning_rate=0.01,
        weight_decay=5e-4,
        lr_scheduler_type="constant",
        lr_milestones=[0.5],
        lr_decay=0.1,
        num_train_epochs=1000,
        batch_sizes=None,
        per_device_train_batch_size=256,
        per_device_eval_batch_size=512,
        augmentation=DSA_STRATEGY,
        augmentation_mode="single",
        eval_every_epochs=20,
        eval_start_fraction=0.8,
        num_students=5,
        best_of=1,
        seed=0,
    ),
    # The RDED / SRe2L evaluation (Sun et al., CVPR 2024; Yin et al., NeurIPS 2023), behind
    # GIFT's ImageNet-1K and Tiny-ImageNet numbers: 300 epochs, AdamW lr 1e-3 wd 0.01, the
    # half-cosine lr · 0.5 · (1 + cos(π · progress / 2)) (cosine with a quarter cycle), patch
    # shuffle, RandomResizedCrop and flip per image, CutMix per batch with the teacher
    # relabelling the mixed crops, KL at T = 20; evaluated every 10 epochs in the last 20 %.
    "rded": dict(
        loss="kl",
        temperature=20.0,
        kl_t_squared=False,
        soft_label_source="teacher",
        optim="adamw_torch",
        learning_rate=1e-3,
        weight_decay=0.01,
        lr_scheduler_type="cosine",
        lr_scheduler_kwargs={"num_cycles": 0.25},
        warmup_steps=0,
        lr_milestones=[],
        lr_decay=1.0,
        num_train_epochs=300,
        batch_size_rule="ipc",
        batch_size_thresholds=[1, 10],
        batch_sizes=[10, 50, 100],
        augmentation=RDED_STRATEGY,
        augmentation_mode="all",
        patch_shuffle_factor=2,  # RDED's ImageNet-1K scripts; 1 on Tiny-ImageNet (recipes/rded/tiny_imagenet.yaml)
        mix="cutmix",
        mix_prob=1.0,
        mix_beta=1.0,
        eval_every_epochs=10,
        eval_start_fraction=0.8,
        eval_transform="resize_center_crop",
        num_students=3,
        best_of=1,
        seed=0,
    ),
}


def protocol_config(name: str, **overrides: Any) -> GIFTConfig:
    """A :class:`GIFTConfig` of the protocol ``name`` (``"gift"``, ``"label_paper"``, ``"rded"`` or
    ``"ddranking"``) with
    ``overrides`` applied.

    Example:
        >>> protocol_config("gift", num_train_epochs=300, output_dir="outputs/eval").lr_milestones
        [0.6666666666666666, 0.8333333333333334]
    """
    if name not in PROTOCOLS:
        raise ValueError(f"protocol: got {name!r}; expected one of {sorted(PROTOCOLS)}")
    # output_dir: transformers before 5 has no default for it
    return GIFTConfig(**{"output_dir": "trainer_output", **PROTOCOLS[name], **overrides})
