"""Evaluate a distilled dataset the way the papers do.

A distilled set is judged by the students it trains: ``num_students`` students (one seed
each) are trained on it with :class:`~gift_hf.GIFTTrainer` under an evaluation
*protocol* (optimizer, schedule, epochs, batch size, augmentation, loss, where the soft
labels come from) and evaluated on the real test split; the report is mean ± std of their
top-1 accuracy. Two presets reproduce the papers' protocols (see ``SPEC.md``):

- ``"gift"`` (Shang et al., ICLR 2025): AdamW lr 1e-3, wd 1e-4; ``MultiStepLR`` at 2/3 and
  5/6 of training, ×0.2; 1000 epochs; batch 10/50/100/200 for sets of ≤10/≤500/≤20k/more
  images; DSA augmentation on every batch; teacher relabelling online; GIFT loss;
  3 students, each reported as the best of 4 evenly spaced evaluations.
- ``"label_paper"`` (Qin et al., NeurIPS 2024): SGD momentum 0.9, wd 5e-4, step schedule;
  soft labels computed once (``softmax(expert logits / T)`` on un-augmented images) and
  stored with the set; soft cross-entropy; 5 students, final accuracy. Where SPEC.md is
  silent the preset follows the MTT ``evaluate_synset`` protocol that line of work
  evaluates with: lr 0.01, ×0.1 at half of training, batch 256, 1000 epochs.

Every field of a preset can be overridden (``get_protocol("gift", epochs=300)``). A
protocol fixes one budget for every loss and every student, and the seeds are
``seed, seed + 1, …`` whatever is being compared, so no loss is favoured.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import tempfile
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
from datasets import Dataset
from torch import nn
from transformers import TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback

from .config import SOFT_LABEL_SOURCES, GIFTConfig
from .data import ImageTransform
from .losses import LOSSES
from .metrics import build_compute_metrics
from .modeling import GIFTClassifier, create_model, load_teacher, num_classes_of

__all__ = [
    "DSA_STRATEGY",
    "OPTIMIZERS",
    "PROTOCOLS",
    "EvalProtocol",
    "ProtocolArguments",
    "EvaluationResult",
    "StudentResult",
    "StudentSpec",
    "build_optimizer",
    "build_scheduler",
    "evaluate_distilled",
    "get_protocol",
    "has_soft_labels",
    "relabel_for",
    "train_student",
]

#: The DSA strategy both papers evaluate with (Zhao & Bilen's differentiable siamese augmentation).
DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"

#: Optimizers a protocol can name, with the learning rate used when a study switches to
#: one without naming a rate (the cross-optimizer study keeps these for every loss).
OPTIMIZERS: dict[str, float] = {"sgd": 0.01, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3}

SCHEDULES = ("multistep", "cosine", "constant")


@dataclass
class EvalProtocol:
    """How students are trained and scored on a distilled set. Every field is overridable.

    Build one with :func:`get_protocol` (a preset plus overrides) rather than directly.
    """

    name: str = field(default="custom", metadata={"help": "Name of the protocol (a preset name or 'custom')."})
    loss: str = field(default="gift", metadata={"help": f"Training loss, one of {sorted(LOSSES)}."})
    optimizer: str = field(default="adamw", metadata={"help": f"Optimizer, one of {sorted(OPTIMIZERS)}."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Initial learning rate."})
    weight_decay: float = field(default=1e-4, metadata={"help": "Weight decay (decoupled for AdamW, L2 otherwise)."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum."})
    schedule: str = field(default="multistep", metadata={"help": f"Learning-rate schedule, one of {SCHEDULES}."})
    milestones: list[float] = field(
        default_factory=lambda: [2 / 3, 5 / 6],
        metadata={"help": "multistep: fractions of training at which the learning rate is multiplied by lr_decay."},
    )
    lr_decay: float = field(default=0.2, metadata={"help": "multistep: factor applied at each milestone."})
    epochs: int = field(default=1000, metadata={"help": "Training epochs over the distilled set."})
    batch_size: Optional[int] = field(
        default=None,
        metadata={"help": "Training batch size; None (or 0) applies the size rule (batch_size_thresholds)."},
    )
    batch_size_thresholds: list[int] = field(
        default_factory=lambda: [10, 500, 20000],
        metadata={"help": "Size rule: a set of at most thresholds[i] images trains with batch_sizes[i]."},
    )
    batch_sizes: list[int] = field(
        default_factory=lambda: [10, 50, 100, 200],
        metadata={"help": "Size rule batch sizes (one more than thresholds: the last is for larger sets)."},
    )
    augmentation: str = field(default=DSA_STRATEGY, metadata={"help": "Batch augmentation (see gift_hf.augment)."})
    soft_label_source: str = field(
        default="teacher",
        metadata={"help": "'teacher' (online relabelling of each augmented batch), 'dataset' (stored soft labels) "
                  "or 'none' (hard labels; loss 'ce')."},
    )
    soft_label_kind: str = field(
        default="logits", metadata={"help": "Stored soft labels hold 'logits' or 'probabilities'."}
    )
    temperature: Optional[float] = field(
        default=None,
        metadata={"help": "Temperature of the loss (kl, soft_ce, soft_ce_ce). None: the loss default."},
    )
    label_temperature: float = field(
        default=1.0,
        metadata={"help": "T of stored probability labels computed by relabelling, softmax(logits / T) (the label "
                  "paper's temperature)."},
    )
    num_students: int = field(default=3, metadata={"help": "Students (seeds) trained per evaluation."})
    best_of: int = field(
        default=1,
        metadata={"help": "Evaluations per student, evenly spaced over training; the best is reported "
                  "(1 = final accuracy)."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the first student; student i uses seed + i."})
    eval_batch_size: int = field(default=256, metadata={"help": "Batch size on the test split."})

    def __post_init__(self) -> None:
        self.milestones = [float(m) for m in self.milestones]
        if self.batch_size == 0:  # explicit "use the size rule" (None means "not overridden" in get_protocol)
            self.batch_size = None
        self.batch_size_thresholds = [int(t) for t in self.batch_size_thresholds]
        self.batch_sizes = [int(b) for b in self.batch_sizes]
        if self.loss not in LOSSES:
            raise ValueError(f"loss: got {self.loss!r}; expected one of {sorted(LOSSES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: got {self.optimizer!r}; expected one of {sorted(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: got {self.schedule!r}; expected one of {SCHEDULES}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate: got {self.learning_rate}; expected a positive number")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay: got {self.weight_decay}; expected >= 0")
        if any(not 0 < m < 1 for m in self.milestones) or self.milestones != sorted(self.milestones):
            raise ValueError(f"milestones: got {self.milestones}; expected increasing fractions in (0, 1)")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay: got {self.lr_decay}; expected a factor in (0, 1]")
        if self.epochs < 1:
            raise ValueError(f"epochs: got {self.epochs}; expected >= 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size: got {self.batch_size}; expected >= 1, or None/0 for the size rule")
        if len(self.batch_sizes) != len(self.batch_size_thresholds) + 1 or min(self.batch_sizes, default=0) < 1:
            raise ValueError(
                f"batch_sizes: got {self.batch_sizes} for thresholds {self.batch_size_thresholds}; expected "
                f"{len(self.batch_size_thresholds) + 1} positive sizes (one per threshold, one for larger sets)"
            )
        if self.soft_label_source not in SOFT_LABEL_SOURCES:
            raise ValueError(
                f"soft_label_source: got {self.soft_label_source!r}; expected one of {SOFT_LABEL_SOURCES}"
            )
        if self.soft_label_kind not in ("logits", "probabilities"):
            raise ValueError(f"soft_label_kind: got {self.soft_label_kind!r}; expected 'logits' or 'probabilities'")
        if not (math.isfinite(self.label_temperature) and self.label_temperature > 0):
            raise ValueError(f"label_temperature: got {self.label_temperature}; expected a positive number")
        if self.num_students < 1:
            raise ValueError(f"num_students: got {self.num_students}; expected >= 1")
        if self.best_of < 1:
            raise ValueError(f"best_of: got {self.best_of}; expected >= 1")
        from .augment import parse_strategy  # validates the strategy string with a clear error

        parse_strategy(self.augmentation)

    # ------------------------------------------------------------------ derived values
    @property
    def uses_soft_labels(self) -> bool:
        """Whether the loss consumes soft labels (``ce`` is trained on hard labels only)."""
        return LOSSES[self.loss].needs_teacher

    @property
    def label_source(self) -> str:
        """Where this protocol's labels come from for its loss (``'none'`` for ``ce``)."""
        return self.soft_label_source if self.uses_soft_labels else "none"

    def batch_size_for(self, num_images: int) -> int:
        """Training batch size for a set of ``num_images`` images (fixed size or the size rule)."""
        if self.batch_size is not None:
            return self.batch_size
        for threshold, size in zip(self.batch_size_thresholds, self.batch_sizes):
            if num_images <= threshold:
                return size
        return self.batch_sizes[-1]

    def seeds(self) -> list[int]:
        """The students' seeds: ``seed … seed + num_students − 1``."""
        return [self.seed + i for i in range(self.num_students)]

    def replace(self, **overrides: Any) -> "EvalProtocol":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Preset protocols; :func:`get_protocol` builds them. Values follow SPEC.md.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "gift": dict(
        loss="gift",
        optimizer="adamw",
        learning_rate=1e-3,
        weight_decay=1e-4,
        schedule="multistep",
        milestones=[2 / 3, 5 / 6],
        lr_decay=0.2,
        epochs=1000,
        batch_size=None,
        batch_size_thresholds=[10, 500, 20000],
        batch_sizes=[10, 50, 100, 200],
        augmentation=DSA_STRATEGY,
        soft_label_source="teacher",
        soft_label_kind="logits",
        num_students=3,
        best_of=4,
    ),
    "label_paper": dict(
        loss="soft_ce",
        optimizer="sgd",
        learning_rate=0.01,
        weight_decay=5e-4,
        momentum=0.9,
        schedule="multistep",
        milestones=[0.5],
        lr_decay=0.1,
        epochs=1000,
        batch_size=256,
        augmentation=DSA_STRATEGY,
        soft_label_source="dataset",
        soft_label_kind="probabilities",
        num_students=5,
        best_of=1,
    ),
}


def get_protocol(name: str | EvalProtocol = "gift", **overrides: Any) -> EvalProtocol:
    """A preset protocol (``"gift"`` or ``"label_paper"``) with ``overrides`` applied.

    Overrides whose value is ``None`` are ignored, so unset CLI options keep the preset
    (``batch_size=0`` switches a preset with a fixed batch size to the size rule). Naming
    another ``optimizer`` without a ``learning_rate`` uses that optimizer's rate from
    :data:`OPTIMIZERS`.

    Example:
        >>> get_protocol("gift", epochs=300).milestones
        [0.6666666666666666, 0.8333333333333334]
    """
    if isinstance(name, EvalProtocol):
        base = name.to_dict()
    elif name in PROTOCOLS:
        base = dict(PROTOCOLS[name], name=name)
    else:
        raise ValueError(f"protocol: got {name!r}; expected one of {sorted(PROTOCOLS)} or an EvalProtocol")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(EvalProtocol)})
    if unknown:
        raise ValueError(f"protocol overrides: unknown field(s) {unknown}; see EvalProtocol")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides.get("optimizer", base.get("optimizer")) != base.get("optimizer") and "learning_rate" not in overrides:
        # A preset's rate belongs to its optimizer: switching optimizer without naming a
        # rate takes that optimizer's usual one (OPTIMIZERS), the same for every loss.
        overrides["learning_rate"] = OPTIMIZERS.get(overrides["optimizer"], base.get("learning_rate"))
    base.update(overrides)
    return EvalProtocol(**base)


def _protocol_arguments_class() -> type:
    """``ProtocolArguments``: ``protocol`` (a preset) plus every :class:`EvalProtocol` field as
    an optional override, for ``HfArgumentParser`` (recipes and ``gift-hf`` commands)."""
    hints = typing.get_type_hints(EvalProtocol)
    specs: list[tuple[str, Any, Any]] = [
        (
            "protocol",
            Optional[str],
            field(default=None, metadata={"help": f"Evaluation protocol preset, one of {sorted(PROTOCOLS)} "
                                          "(default: the command's own); the options below override its fields."}),
        )
    ]
    for f in dataclasses.fields(EvalProtocol):
        if f.name == "name":
            continue
        typ = hints[f.name]
        if not (typing.get_origin(typ) is typing.Union and type(None) in typing.get_args(typ)):
            typ = Optional[typ]
        help_text = f.metadata.get("help", "") + " Default: the preset's value."
        specs.append((f.name, typ, field(default=None, metadata={"help": help_text})))

    def to_protocol(self, default: str = "gift") -> EvalProtocol:
        """The preset ``self.protocol`` (else ``default``) with every option that was set applied."""
        overrides = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "protocol"}
        return get_protocol(self.protocol or default, **overrides)

    cls = dataclasses.make_dataclass(
        "ProtocolArguments",
        specs,
        namespace={
            "to_protocol": to_protocol,
            "__doc__": "Command-line form of a protocol: a preset name and optional overrides of its fields.",
        },
    )
    cls.__module__ = __name__
    return cls


ProtocolArguments = _protocol_arguments_class()


# ---------------------------------------------------------------------- optimisation
def build_optimizer(model: nn.Module, protocol: EvalProtocol) -> torch.optim.Optimizer:
    """The protocol's optimizer over every trainable parameter (weight decay on all, as the papers do)."""
    params = [p for p in model.parameters() if p.requires_grad]
    lr, wd = protocol.learning_rate, protocol.weight_decay
    if protocol.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=protocol.momentum, weight_decay=wd)
    if protocol.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if protocol.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if protocol.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
    raise ValueError(f"optimizer: got {protocol.optimizer!r}; expected one of {sorted(OPTIMIZERS)}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, protocol: EvalProtocol, total_steps: int, steps_per_epoch: int = 1
) -> torch.optim.lr_scheduler.LRScheduler:
    """The protocol's schedule, stepped once per optimizer step as ``Trainer`` does.

    ``multistep`` milestones fall on epoch boundaries (``round(fraction × epochs)``), as in
    the papers' epoch-based ``MultiStepLR``.
    """
    if protocol.schedule == "multistep":
        epochs = max(1, total_steps // max(1, steps_per_epoch))
        milestones = sorted({max(1, round(f * epochs)) * steps_per_epoch for f in protocol.milestones})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=protocol.lr_decay)
    if protocol.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


# ---------------------------------------------------------------------------- students
@dataclass
class StudentSpec:
    """Which student to train and how its images are prepared.

    Args:
        arch: a timm architecture name (ours: ``gift_convnet_d3`` …).
        in_chans: input channels of the student.
        img_size: input height and width of the student.
        image_mean: per-channel mean the images are normalised with.
        image_std: per-channel standard deviation the images are normalised with.
        model_kwargs: extra ``timm.create_model`` arguments.
    """

    arch: str = "gift_convnet_d3"
    in_chans: int = 3
    img_size: int = 32
    image_mean: Sequence[float] = (0.5,)
    image_std: Sequence[float] = (0.5,)
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_model(cls, model: nn.Module, arch: str | None = None, **model_kwargs: Any) -> "StudentSpec":
        """The input spec of a trained :class:`~gift_hf.GIFTClassifier` (e.g. the teacher).

        ``arch`` picks a different student architecture with the same input (cross-architecture).
        """
        config = getattr(model, "config", None)
        if not isinstance(model, GIFTClassifier) or config is None:
            raise ValueError(
                f"cannot read the input spec of a {type(model).__name__}; pass a StudentSpec(arch=..., in_chans=..., "
                "img_size=..., image_mean=..., image_std=...)"
            )
        return cls(
            arch=arch or config.arch,
            in_chans=config.in_chans,
            img_size=config.img_size,
            image_mean=tuple(config.image_mean or (0.5,)),
            image_std=tuple(config.image_std or (0.5,)),
            model_kwargs=dict(model_kwargs) if arch else {**config.model_kwargs, **model_kwargs},
        )

    def create(self, num_classes: int, id2label: dict[int, str] | None = None) -> GIFTClassifier:
        """A freshly initialised student (seed it first)."""
        return create_model(
            self.arch,
            num_classes,
            in_chans=self.in_chans,
            img_size=self.img_size,
            id2label=id2label,
            image_mean=self.image_mean,
            image_std=self.image_std,
            **self.model_kwargs,
        )

    def transform(self, image_column: str = "image") -> ImageTransform:
        """The ``set_transform`` function that turns this spec's images into ``pixel_values``."""
        return ImageTransform(
            image_size=self.img_size,
            channels=self.in_chans,
            mean=tuple(self.image_mean),
            std=tuple(self.image_std),
            image_column=image_column,
        )


@dataclass
class StudentResult:
    """One trained student: its seed, the accuracy it is reported with, and every evaluation."""

    seed: int
    accuracy: float
    final_accuracy: float
    accuracies: list[float]
    steps: int
    batch_size: int
    train_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class EvaluationResult:
    """A distilled set's score under a protocol: mean ± std over students (in %)."""

    protocol: EvalProtocol
    students: list[StudentResult]

    @property
    def accuracies(self) -> list[float]:
        return [s.accuracy for s in self.students]

    @property
    def mean(self) -> float:
        return 100.0 * statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        """Sample standard deviation across students (0 for one student)."""
        return 100.0 * statistics.stdev(self.accuracies) if len(self.students) > 1 else 0.0

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.std:.2f}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol.to_dict(),
            "mean": self.mean,
            "std": self.std,
            "students": [s.to_dict() for s in self.students],
        }


class _EvaluateAt(TrainerCallback):
    """Ask the Trainer to evaluate at fixed global steps and keep the accuracies."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps
        self.accuracies: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps:
            control.should_evaluate = True
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_accuracy" in metrics:
            self.accuracies.append(float(metrics["eval_accuracy"]))


def _num_classes(dataset: Dataset, label_column: str) -> int | None:
    feature = dataset.features.get(label_column)
    return getattr(feature, "num_classes", None)


def _id2label(dataset: Dataset, label_column: str) -> dict[int, str] | None:
    feature = dataset.features.get(label_column)
    names = getattr(feature, "names", None)
    return {i: n for i, n in enumerate(names)} if names else None


def train_student(
    distilled: Dataset,
    test_dataset: Dataset,
    protocol: EvalProtocol,
    seed: int,
    student: StudentSpec,
    teacher: nn.Module | str | None = None,
    *,
    num_classes: int | None = None,
    image_column: str = "image",
    label_column: str = "label",
    output_dir: str | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    **config_overrides: Any,
) -> StudentResult:
    """Train one student on ``distilled`` under ``protocol`` and score it on ``test_dataset``.

    This is one cell of every study: a fresh student seeded with ``seed``, the protocol's
    optimizer, schedule, epochs and batch size, evaluated ``protocol.best_of`` times
    (evenly spaced, the last at the end of training). ``callbacks`` are added to the
    Trainer; extra ``GIFTConfig`` fields (e.g. ``bf16=True``) pass through
    ``config_overrides``.
    """
    if len(distilled) == 0:
        raise ValueError("distilled dataset is empty")
    if label_column not in distilled.column_names:
        raise ValueError(f"distilled dataset has no label column {label_column!r} (columns: {distilled.column_names})")
    num_classes = num_classes or _num_classes(distilled, label_column) or _num_classes(test_dataset, label_column)
    if num_classes is None:
        raise ValueError(f"cannot infer the number of classes: {label_column!r} is not a ClassLabel; pass num_classes")
    source = protocol.label_source
    if source == "dataset" and not has_soft_labels(distilled):
        raise ValueError(
            "protocol stores soft labels (soft_label_source='dataset') but the distilled set has no 'soft_label' "
            "column; relabel it first (gift_hf.relabel) or use soft_label_source='teacher' with a teacher"
        )
    if source == "teacher" and teacher is None:
        raise ValueError(f"protocol relabels online (loss {protocol.loss!r}, soft_label_source='teacher') but no "
                         "teacher was given")

    transform = student.transform(image_column)
    train_ds = distilled.with_transform(transform)
    test_ds = test_dataset.with_transform(transform)
    batch_size = protocol.batch_size_for(len(distilled))
    steps_per_epoch = math.ceil(len(distilled) / batch_size)
    total_steps = steps_per_epoch * protocol.epochs
    eval_steps = {max(1, round(total_steps * j / protocol.best_of)) for j in range(1, protocol.best_of + 1)}

    set_seed(seed)  # the student's initial weights depend on the seed only
    model = student.create(num_classes, _id2label(distilled, label_column))
    optimizer = build_optimizer(model, protocol)
    scheduler = build_scheduler(optimizer, protocol, total_steps, steps_per_epoch)
    evaluate_at = _EvaluateAt(eval_steps)

    with tempfile.TemporaryDirectory(prefix="gift_hf_student_") as tmp:
        settings: dict[str, Any] = dict(
            output_dir=output_dir or tmp,
            loss=protocol.loss,
            temperature=protocol.temperature,
            soft_label_source=source,
            soft_label_kind=protocol.soft_label_kind,
            augmentation=protocol.augmentation,
            learning_rate=protocol.learning_rate,  # informational: the optimizer below is the protocol's
            weight_decay=protocol.weight_decay,
            max_steps=total_steps,
            per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=protocol.eval_batch_size,
            seed=seed,
            data_seed=seed,
            eval_strategy="no",  # evaluations are requested by _EvaluateAt
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=torch.cuda.is_available(),
        )
        args = GIFTConfig(**{**settings, **config_overrides})
        trainer_cls = _trainer_class()
        trainer = trainer_cls(
            model=model,
            args=args,
            teacher_model=teacher if source == "teacher" else None,
            train_dataset=train_ds,
            eval_dataset=test_ds,
            compute_metrics=build_compute_metrics(num_classes),
            optimizers=(optimizer, scheduler),
            callbacks=[evaluate_at, *callbacks],
        )
        # A study trains hundreds of students: keep their per-step logs off the console.
        trainer.remove_callback(PrinterCallback)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    if not evaluate_at.accuracies:  # cannot happen unless a callback cancelled evaluation
        raise RuntimeError("the student was never evaluated")
    return StudentResult(
        seed=seed,
        accuracy=max(evaluate_at.accuracies),
        final_accuracy=evaluate_at.accuracies[-1],
        accuracies=evaluate_at.accuracies,
        steps=total_steps,
        batch_size=batch_size,
        train_seconds=seconds,
    )


def has_soft_labels(dataset: Dataset, column: str = "soft_label") -> bool:
    """Whether ``dataset`` stores soft labels (dense, or the sparse top-k pair)."""
    return column in dataset.column_names or f"{column}_topk_values" in dataset.column_names


def relabel_for(
    dataset: Dataset, teacher: nn.Module | str, protocol: EvalProtocol, expert_epoch: float | None = None
) -> Dataset:
    """``dataset`` with the soft labels ``protocol`` stores, computed once by ``teacher``
    on un-augmented images (:func:`gift_hf.relabel`): probabilities at
    ``protocol.label_temperature``, or raw logits."""
    from .relabel import relabel

    probabilities = protocol.soft_label_kind == "probabilities"
    labelled, _ = relabel(
        dataset,
        teacher,
        output=protocol.soft_label_kind,
        temperature=protocol.label_temperature if probabilities else None,
        expert_epoch=expert_epoch,
        progress=False,
    )
    return labelled


def _trainer_class():
    # Imported here so that `gift_hf.evaluation` can be imported without building a Trainer.
    from .trainer import GIFTTrainer

    return GIFTTrainer


def evaluate_distilled(
    distilled: Dataset,
    test_dataset: Dataset,
    protocol: str | EvalProtocol = "gift",
    *,
    student: StudentSpec | str | None = None,
    teacher: nn.Module | str | None = None,
    num_classes: int | None = None,
    image_column: str = "image",
    label_column: str = "label",
    progress: bool = False,
    callback: Callable[[StudentResult], None] | None = None,
    trainer_callbacks: Sequence[TrainerCallback] = (),
    **overrides: Any,
) -> EvaluationResult:
    """Score a distilled set: ``protocol.num_students`` students, mean ± std on ``test_dataset``.

    Args:
        distilled: the distilled training set (``image`` and ``label`` columns, and
            ``soft_label`` when the protocol stores soft labels).
        test_dataset: the real test split.
        protocol: a preset name or an :class:`EvalProtocol`; ``overrides`` change its fields.
        student: a :class:`StudentSpec`, an architecture name (input spec read from the
            teacher), or None (the teacher's architecture and input).
        teacher: the teacher (instance, saved directory or Hub id) for online relabelling
            and for reading the input spec.
        progress: show a progress bar over students.
        callback: called with each finished student.
        trainer_callbacks: ``TrainerCallback`` objects added to every student's Trainer.

    Returns:
        An :class:`EvaluationResult`; ``str(result)`` is ``"mean ± std"`` in percent.

    Example:
        >>> result = evaluate_distilled(distilled, digits["test"], "gift", teacher="outputs/teacher", epochs=300)
        >>> print(result)   # e.g. "91.20 ± 0.80"
    """
    protocol = get_protocol(protocol, **overrides)
    teacher_model = load_teacher(teacher) if isinstance(teacher, (str, os.PathLike)) else teacher
    if not isinstance(student, StudentSpec):
        if teacher_model is None:
            raise ValueError("student: pass a StudentSpec (no teacher to read the input spec from)")
        student = StudentSpec.from_model(teacher_model, arch=student)
    teacher_classes = num_classes_of(teacher_model) if teacher_model is not None else None
    if num_classes is not None and teacher_classes not in (None, num_classes):
        raise ValueError(f"teacher predicts {teacher_classes} classes but num_classes={num_classes}")
    if protocol.label_source == "dataset" and not has_soft_labels(distilled):
        if teacher_model is None:
            raise ValueError("protocol stores soft labels (soft_label_source='dataset') but the distilled set has "
                             "none and no teacher was given to compute them")
        distilled = relabel_for(distilled, teacher_model, protocol)
    from tqdm.auto import tqdm

    results = []
    for seed in tqdm(protocol.seeds(), desc=f"students ({protocol.name})", disable=not progress):
        result = train_student(
            distilled,
            test_dataset,
            protocol,
            seed,
            student,
            teacher_model,
            num_classes=num_classes,
            image_column=image_column,
            label_column=label_column,
            callbacks=trainer_callbacks,
        )
        results.append(result)
        if callback is not None:
            callback(result)
    return EvaluationResult(protocol=protocol, students=results)
