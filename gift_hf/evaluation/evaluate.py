"""Evaluate a distilled dataset the way the papers do.

A distilled set is judged by the students it trains: ``num_students`` students (one seed
each) are trained on it with :func:`gift_hf.engine.training.train_student` under an evaluation
protocol, a :class:`~gift_hf.GIFTConfig` (optimizer, schedule, epochs, batch-size rule,
augmentation, loss, where the soft labels come from), and evaluated on the real test split;
the report is mean ± std of their top-1 accuracy. Two protocols reproduce the papers'
(:data:`gift_hf.engine.config.PROTOCOLS`, also the recipes ``recipes/gift/evaluate.yaml`` and
``recipes/label_paper/evaluate.yaml``):

- ``"gift"`` (Shang et al., ICLR 2025): AdamW lr 1e-3, wd 1e-4; ``MultiStepLR`` at 2/3 and
  5/6 of training, ×0.2; 1000 epochs; batch 10/50/100/200 for sets of ≤10/≤500/≤20k/more
  images; DSA augmentation on every batch; teacher relabelling online; GIFT loss;
  3 students, each reported as the best of 4 evenly spaced evaluations.
- ``"label_paper"`` (Qin et al., NeurIPS 2024): SGD momentum 0.9, wd 5e-4, step schedule;
  soft labels computed once (``softmax(expert logits / T)`` on un-augmented images) and
  stored with the set; soft cross-entropy; 5 students, final accuracy. Where the paper is
  silent the protocol follows the MTT ``evaluate_synset`` protocol that line of work
  evaluates with: lr 0.01, ×0.1 at half of training, batch 256, 1000 epochs.

A protocol fixes one budget for every loss and every student, and the seeds are
``seed, seed + 1, …`` whatever is being compared, so no loss is favoured.

The students of an evaluation share their training set and differ only in seed, so by
default (``students_together``) they train together as one vectorised model
(:func:`train_together`, :func:`gift_hf.engine.multi_student.train_students`: same optimizer,
schedule, augmentation, loss and evaluations, one student per seed). Settings it cannot
run (see :func:`together_recipe`) fall back, logged, to one ``GIFTTrainer`` run per student.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from transformers import TrainerCallback

from gift_hf.engine.config import DSA_STRATEGY, GIFTConfig, protocol_config
from gift_hf.data.images import ImageTransform, eval_transform_for
from gift_hf.models.modeling import create_model, load_teacher, model_spec, num_classes_of
from gift_hf.engine.trainer import GIFTTrainer, TrainingDivergedError
from gift_hf.engine.training import TrainingResult, train_student

__all__ = [
    "DSA_STRATEGY",
    "EvaluationResult",
    "StudentSpec",
    "evaluate_distilled",
    "failed_student",
    "has_soft_labels",
    "relabel_for",
    "together_recipe",
    "train_on_distilled",
    "train_together",
]

logger = logging.getLogger(__name__)

#: Students train together (:func:`train_together`) only when the training and test images
#: fit in this many bytes as float32 tensors; larger sets stream through GIFTTrainer.
TOGETHER_MAX_BYTES = 4 * 2**30


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
        """The input spec of a trained timm-backed classifier (e.g. the teacher), read with
        :func:`gift_hf.model_spec`.

        ``arch`` picks a different student architecture with the same input (cross-architecture).
        """
        import timm

        spec = model_spec(model) if getattr(model, "config", None) is not None else None
        if spec is None or not timm.list_models(spec["arch"]) or not spec["in_chans"] or not spec["img_size"]:
            raise ValueError(
                f"cannot read the input spec of a {type(model).__name__}; pass a StudentSpec(arch=..., in_chans=..., "
                "img_size=..., image_mean=..., image_std=...)"
            )
        return cls(
            arch=arch or spec["arch"],
            in_chans=spec["in_chans"],
            img_size=spec["img_size"],
            image_mean=tuple(spec["image_mean"] or (0.5,)),
            image_std=tuple(spec["image_std"] or (0.5,)),
            model_kwargs=dict(model_kwargs) if arch else {**spec["model_kwargs"], **model_kwargs},
        )

    def create(self, num_classes: int, id2label: dict[int, str] | None = None) -> nn.Module:
        """A freshly initialised student, a ``TimmWrapperForImageClassification`` (seed it first)."""
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
class EvaluationResult:
    """A distilled set's score under a protocol: mean ± std over students (in %).

    A student whose training diverged (:class:`~gift_hf.engine.trainer.TrainingDivergedError`) is
    counted in ``failed`` and never scored: mean and std are over the others (NaN when every
    student failed), and ``str()`` says how many failed.
    """

    config: GIFTConfig
    students: list[TrainingResult]

    @property
    def accuracies(self) -> list[float]:
        """The scored students' accuracies (failed students have none)."""
        return [s.accuracy for s in self.students if s.failure is None]

    @property
    def failed(self) -> int:
        """How many students diverged."""
        return sum(s.failure is not None for s in self.students)

    @property
    def mean(self) -> float:
        return 100.0 * statistics.fmean(self.accuracies) if self.accuracies else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation across the scored students (0 for one)."""
        accuracies = self.accuracies
        if not accuracies:
            return math.nan
        return 100.0 * statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0

    def __str__(self) -> str:
        if not self.accuracies:
            return f"failed ({self.failed}/{len(self.students)} students diverged)"
        text = f"{self.mean:.2f} ± {self.std:.2f}"
        return text + (f" ({self.failed}/{len(self.students)} students diverged, not scored)" if self.failed else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.training_settings(),
            "mean": self.mean,
            "std": self.std,
            "failed": self.failed,
            "students": [s.to_dict() for s in self.students],
        }


def _num_classes(dataset: Dataset, label_column: str) -> int | None:
    feature = dataset.features.get(label_column)
    return getattr(feature, "num_classes", None)


def _id2label(dataset: Dataset, label_column: str) -> dict[int, str] | None:
    feature = dataset.features.get(label_column)
    names = getattr(feature, "names", None)
    return {i: n for i, n in enumerate(names)} if names else None


def train_on_distilled(
    distilled: Dataset,
    test_dataset: Dataset,
    config: GIFTConfig,
    seed: int,
    student: StudentSpec,
    teacher: nn.Module | str | None = None,
    *,
    num_classes: int | None = None,
    image_column: str = "image",
    label_column: str = "label",
    callbacks: Sequence[TrainerCallback] = (),
    optimizer_cls_and_kwargs: tuple[type, dict[str, Any]] | None = None,
) -> TrainingResult:
    """One student of an evaluation (one cell of every study): a fresh ``student`` seeded with
    ``seed``, trained on ``distilled`` under ``config`` by :func:`gift_hf.engine.training.train_student`
    and scored on ``test_dataset`` ``config.best_of`` times. Nothing is saved."""
    num_classes = _check_training_set(distilled, test_dataset, config, label_column, num_classes)
    transform = student.transform(image_column)
    with tempfile.TemporaryDirectory(prefix="gift_hf_student_") as tmp:
        cell = config.replace(
            output_dir=tmp,
            seed=seed,
            data_seed=seed,
            soft_label_source=config.label_source,
            eval_strategy="no",  # evaluations: best_of, requested by train_student
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            report_to="none",
            resume_from_checkpoint=None,
        )
        return train_student(
            cell,
            lambda: student.create(num_classes, _id2label(distilled, label_column)),
            distilled.with_transform(transform),
            test_dataset.with_transform(eval_transform_for(transform, config.eval_transform)),
            teacher=teacher if cell.label_source == "teacher" else None,
            callbacks=callbacks,
            optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
            quiet=True,
        )


def _check_training_set(distilled: Dataset, test_dataset: Dataset, config: GIFTConfig, label_column: str,
                        num_classes: int | None) -> int:
    """Refuse a training set the students cannot train on; its number of classes."""
    if len(distilled) == 0:
        raise ValueError("distilled dataset is empty")
    if label_column not in distilled.column_names:
        raise ValueError(f"distilled dataset has no label column {label_column!r} (columns: {distilled.column_names})")
    num_classes = num_classes or _num_classes(distilled, label_column) or _num_classes(test_dataset, label_column)
    if num_classes is None:
        raise ValueError(f"cannot infer the number of classes: {label_column!r} is not a ClassLabel; pass num_classes")
    if config.label_source == "dataset" and not has_soft_labels(distilled):
        raise ValueError(
            "soft_label_source='dataset' but the distilled set has no 'soft_label' column; relabel it first "
            "(gift_hf.data.relabel) or use soft_label_source='teacher' with a teacher"
        )
    return num_classes


# ------------------------------------------------------------------ students together
def together_recipe(config: GIFTConfig, num_images: int, num_classes: int) -> tuple[Any, str | None]:
    """``(StudentTrainingArgs, None)``: ``config``'s students as :func:`gift_hf.engine.multi_student.train_students`
    trains them, or ``(None, why not)``.

    The same optimizer (SGD with momentum, Adam, AdamW; weight decay on every parameter),
    the papers' epoch-based step schedule (``lr_scheduler_type="constant"`` with
    ``lr_milestones``/``lr_decay``), the batch-size rule, augmentation and mixing, the loss
    and its parameters, and the evaluations (``best_of`` or ``eval_every_epochs`` when
    they fall on epoch ends). Anything else (other schedules, warm-up, clipping, mixed
    precision, ZCA, accumulation, ``max_steps``, several processes) is a ``GIFTTrainer`` run.
    """
    from gift_hf.engine.multi_student import StudentTrainingArgs

    if not config.students_together:
        return None, "students_together is off"
    epochs = config.num_train_epochs
    scheduler = getattr(config.lr_scheduler_type, "value", config.lr_scheduler_type)
    unsupported = [
        (config.max_steps > 0, f"max_steps={config.max_steps} (epochs only)"),
        (epochs != int(epochs) or epochs < 1, f"num_train_epochs={epochs} (whole epochs only)"),
        (config.gradient_accumulation_steps != 1, f"gradient_accumulation_steps={config.gradient_accumulation_steps}"),
        (config.max_grad_norm > 0, f"max_grad_norm={config.max_grad_norm} (no clipping)"),
        (config.bf16 or config.fp16, "mixed precision"),
        (config.label_smoothing_factor > 0, f"label_smoothing_factor={config.label_smoothing_factor}"),
        (config.zca, "zca"),
        # (transformers 5 folds warmup_ratio into warmup_steps < 1)
        ((config.warmup_steps or 0) > 0 or (getattr(config, "warmup_ratio", 0) or 0) > 0, "learning-rate warm-up"),
        (scheduler != "constant", f"lr_scheduler_type={scheduler!r} (the step schedule only)"),
        (not config.decay_all_parameters, "decay_all_parameters=False"),
        (config.world_size > 1, f"{config.world_size} processes"),
    ]
    reasons = [why for bad, why in unsupported if bad]
    if reasons:
        return None, ", ".join(reasons)
    epochs = int(epochs)
    optimizer_cls, kwargs = GIFTTrainer.get_optimizer_cls_and_kwargs(config)
    extra = {k: v for k, v in kwargs.items() if k not in ("lr", "momentum", "betas", "eps", "foreach", "fused")
             and v not in (False, 0, 0.0, None)}
    names = {torch.optim.SGD: "sgd", torch.optim.Adam: "adam", torch.optim.AdamW: "adamw"}
    if optimizer_cls not in names or extra:
        return None, f"optimizer {optimizer_cls.__name__} {extra or ''}".strip()
    every = config.eval_every_epochs or epochs // config.best_of
    if epochs % (config.eval_every_epochs or config.best_of):
        return None, (f"evaluations every {config.eval_every_epochs} epochs" if config.eval_every_epochs
                      else f"best_of={config.best_of}") + f" do not fall on the ends of {epochs} epochs"
    milestones = sorted(config.lr_milestones)
    step = bool(milestones) and config.lr_decay != 1.0
    try:
        recipe = StudentTrainingArgs(
            loss=config.loss,
            loss_kwargs=dict(gamma=config.gamma, smoothing=config.smoothing, temperature=config.temperature,
                             t_squared=config.kl_t_squared, ce_weight=config.ce_weight),
            optimizer=names[optimizer_cls],
            weight_decay=config.weight_decay,
            momentum=float(kwargs.get("momentum", 0.0)),
            betas=tuple(kwargs.get("betas", (config.adam_beta1, config.adam_beta2))),
            eps=float(kwargs.get("eps", config.adam_epsilon)),
            epochs=epochs,
            batch_size=config.train_batch_size_for(num_images, num_classes),
            schedule="multistep" if step else "constant",
            milestones=milestones if step else [0.5],
            gamma=config.lr_decay if step else 0.1,
            augmentation=config.augmentation,
            augmentation_mode=config.augmentation_mode,
            mix=config.mix,
            mix_prob=config.mix_prob,
            mix_beta=config.mix_beta,
            eval_every=every,
            eval_start_fraction=config.eval_start_fraction if config.eval_every_epochs else 0.0,
            # the evaluation batch changes no result (no statistics are updated): batch it wide
            eval_batch_size=max(config.per_device_eval_batch_size, 256),
        )
    except ValueError as err:  # e.g. a milestone the epoch-based schedule cannot place
        return None, str(err)
    return recipe, None


def train_together(
    distilled: Dataset,
    test_dataset: Dataset,
    config: GIFTConfig,
    seeds: Sequence[int],
    student: StudentSpec,
    teacher: nn.Module | None = None,
    *,
    num_classes: int | None = None,
    image_column: str = "image",
    label_column: str = "label",
) -> list[TrainingResult] | None:
    """The students of ``seeds`` trained together on ``distilled`` (one vectorised model) and
    scored on ``test_dataset``: one :class:`TrainingResult` per seed, as :func:`train_on_distilled`
    gives; None (logged) when ``config`` asks for what :func:`together_recipe` cannot run.

    Each student keeps its own initial weights (created under its seed, as
    ``train_on_distilled`` creates them), batch order and augmentation draws; the teacher
    relabels all the students' augmented batches in one forward.
    """
    from gift_hf.evaluation.ddranking import image_tensors
    from gift_hf.engine.multi_student import train_students

    num_classes = _check_training_set(distilled, test_dataset, config, label_column, num_classes)
    recipe, reason = together_recipe(config, len(distilled), num_classes)
    if recipe is None:
        logger.info(f"students trained one by one with GIFTTrainer: {reason}")
        return None
    source = config.label_source
    if source == "teacher" and teacher is None:
        return None  # GIFTTrainer says what is missing
    # The training and test images are held as tensors (on the device): fine for the sets an
    # evaluation trains on and the test splits of CIFAR-size data, not for ImageNet's.
    nbytes = (len(distilled) + len(test_dataset)) * student.in_chans * student.img_size ** 2 * 4
    if nbytes > TOGETHER_MAX_BYTES:
        logger.info(f"students trained one by one with GIFTTrainer: the images would take {nbytes / 2**30:.1f} GiB "
                    f"as tensors (more than {TOGETHER_MAX_BYTES / 2**30:.0f} GiB)")
        return None
    soft = None
    if source == "dataset":
        if "soft_label" not in distilled.column_names:
            logger.info("students trained one by one with GIFTTrainer: top-k (sparse) soft labels")
            return None
        soft = torch.tensor(np.asarray(distilled.with_format(None)["soft_label"], dtype=np.float32))
    transform = student.transform(image_column)
    train_x, train_y = image_tensors(distilled, transform, label_column)
    test_x, test_y = image_tensors(test_dataset, eval_transform_for(transform, config.eval_transform), label_column)
    device = "cuda" if torch.cuda.is_available() and not config.use_cpu else "cpu"
    start = time.perf_counter()
    runs = train_students(
        student.arch, student.model_kwargs, train_x, train_y, test_x, test_y, seeds=list(seeds),
        learning_rates=[config.learning_rate] * len(seeds), args=recipe, num_classes=num_classes,
        teacher=teacher if source == "teacher" else None, soft_labels=soft,
        soft_label_kind=config.soft_label_kind or "logits", device=device,
    )
    seconds = (time.perf_counter() - start) / len(seeds)
    steps = recipe.epochs * math.ceil(len(distilled) / recipe.batch_size)
    return [
        TrainingResult(
            seed=run.seed, accuracies=run.accuracies if run.finite else [], steps=steps,
            batch_size=recipe.batch_size, train_seconds=seconds, metrics={"students_together": len(seeds)},
            failure=None if run.finite else (
                f"TrainingDivergedError: training diverged at step {run.diverged_step}: the loss became non-finite "
                f"(NaN or inf); trained together with {len(seeds)} students (gift_hf.engine.multi_student)"),
        )
        for run in runs
    ]


def failed_student(seed: int, config: GIFTConfig, error: Exception) -> TrainingResult:
    """The record of a student whose training diverged: no accuracy, the error kept."""
    return TrainingResult(seed=seed, accuracies=[], steps=0, batch_size=config.per_device_train_batch_size,
                          train_seconds=0.0, failure=f"{type(error).__name__}: {error}")


def has_soft_labels(dataset: Dataset, column: str = "soft_label") -> bool:
    """Whether ``dataset`` stores soft labels (dense, or the sparse top-k pair)."""
    return column in dataset.column_names or f"{column}_topk_values" in dataset.column_names


def relabel_for(
    dataset: Dataset, teacher: nn.Module | str, config: GIFTConfig, expert_epoch: float | None = None
) -> Dataset:
    """``dataset`` with the soft labels ``config`` stores, computed once by ``teacher`` on
    un-augmented images (:func:`gift_hf.data.relabel`): probabilities at ``config.label_temperature``,
    or raw logits (``soft_label_kind``)."""
    from gift_hf.data.relabel import relabel

    probabilities = config.soft_label_kind == "probabilities"
    labelled, _ = relabel(
        dataset,
        teacher,
        output=config.soft_label_kind or "logits",
        temperature=config.label_temperature if probabilities else None,
        expert_epoch=expert_epoch,
        progress=False,
    )
    return labelled


def evaluate_distilled(
    distilled: Dataset,
    test_dataset: Dataset,
    config: str | GIFTConfig = "gift",
    *,
    student: StudentSpec | str | None = None,
    teacher: nn.Module | str | None = None,
    num_classes: int | None = None,
    image_column: str = "image",
    label_column: str = "label",
    progress: bool = False,
    callback: Callable[[TrainingResult], None] | None = None,
    trainer_callbacks: Sequence[TrainerCallback] = (),
    **overrides: Any,
) -> EvaluationResult:
    """Score a distilled set: ``config.num_students`` students, mean ± std on ``test_dataset``.

    Args:
        distilled: the distilled training set (``image`` and ``label`` columns, and
            ``soft_label`` when the protocol stores soft labels).
        test_dataset: the real test split.
        config: a :class:`~gift_hf.GIFTConfig`, or a protocol name of
            :data:`gift_hf.engine.config.PROTOCOLS` (``"gift"``, ``"label_paper"``);
            ``overrides`` change its fields.
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
        >>> result = evaluate_distilled(distilled, digits["test"], "gift", teacher="outputs/teacher",
        ...                             num_train_epochs=300)
        >>> print(result)   # e.g. "91.20 ± 0.80"
    """
    if isinstance(config, str):
        config = protocol_config(config, **overrides)
    elif overrides:
        config = config.replace(**overrides)
    teacher_model = load_teacher(teacher) if isinstance(teacher, (str, os.PathLike)) else teacher
    if not isinstance(student, StudentSpec):
        if teacher_model is None:
            raise ValueError("student: pass a StudentSpec (no teacher to read the input spec from)")
        student = StudentSpec.from_model(teacher_model, arch=student)
    teacher_classes = num_classes_of(teacher_model) if teacher_model is not None else None
    if num_classes is not None and teacher_classes not in (None, num_classes):
        raise ValueError(f"teacher predicts {teacher_classes} classes but num_classes={num_classes}")
    if config.label_source == "dataset" and not has_soft_labels(distilled):
        if teacher_model is None:
            raise ValueError("soft_label_source='dataset' but the distilled set has no soft labels and no teacher "
                             "was given to compute them")
        distilled = relabel_for(distilled, teacher_model, config)
    from tqdm.auto import tqdm

    together = None
    if not trainer_callbacks:  # TrainerCallbacks need a Trainer per student
        together = train_together(distilled, test_dataset, config, config.seeds(), student,
                                  teacher_model if config.label_source == "teacher" else None,
                                  num_classes=num_classes, image_column=image_column, label_column=label_column)
    if together is not None:
        for result in together:
            if callback is not None:
                callback(result)
        return EvaluationResult(config=config, students=together)
    results = []
    for seed in tqdm(config.seeds(), desc="students", disable=not progress):
        try:
            result = train_on_distilled(
                distilled,
                test_dataset,
                config,
                seed,
                student,
                teacher_model,
                num_classes=num_classes,
                image_column=image_column,
                label_column=label_column,
                callbacks=trainer_callbacks,
            )
        except TrainingDivergedError as err:  # reported as failed, never scored
            result = failed_student(seed, config, err)
        results.append(result)
        if callback is not None:
            callback(result)
    return EvaluationResult(config=config, students=results)
