"""Evaluate a distilled dataset the way the papers do.

A distilled set is judged by the students it trains: ``num_students`` students (one seed
each) are trained on it with :func:`gift_hf.engine.training.train_students` under an evaluation
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

The students of an evaluation share their training set and differ only in seed, so they
train together: one :class:`~gift_hf.engine.population.StudentPopulation` trained by one
``GIFTTrainer`` (:func:`gift_hf.engine.training.train_students`), each student with its own
initial weights, batch order and augmentation draws, under any protocol, precision and
number of processes.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from datasets import Dataset
from torch import nn
from transformers import TrainerCallback

from gift_hf.data.images import ImageTransform, eval_transform_for
from gift_hf.engine.config import DSA_STRATEGY, GIFTConfig, protocol_config
from gift_hf.engine.losses import check_class_ids
from gift_hf.engine.progress import job_progress, progress_line
from gift_hf.engine.trainer import TrainingDivergedError
from gift_hf.engine.training import TrainingResult, quiet_config, train_students
from gift_hf.models.modeling import create_model, load_teacher, model_spec, num_classes_of

__all__ = [
    "DSA_STRATEGY",
    "EvaluationResult",
    "StudentSpec",
    "evaluate_distilled",
    "failed_student",
    "has_soft_labels",
    "relabel_for",
    "train_on_distilled",
]

logger = logging.getLogger(__name__)


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
    seeds: Sequence[int],
    student: StudentSpec,
    teacher: nn.Module | str | None = None,
    *,
    learning_rates: Sequence[float] | None = None,
    num_classes: int | None = None,
    image_column: str = "image",
    label_column: str = "label",
    callbacks: Sequence[TrainerCallback] = (),
    optimizer_cls_and_kwargs: tuple[type, dict[str, Any]] | None = None,
) -> list[TrainingResult]:
    """The students of ``seeds`` (an evaluation, or the cells of a study that share a training
    set): fresh ``student`` models, trained together on ``distilled`` under ``config`` by
    :func:`gift_hf.engine.training.train_students` and scored on ``test_dataset``
    (``config.best_of`` or ``eval_every_epochs`` evaluations). Nothing is saved.

    One :class:`TrainingResult` per seed; students that diverged are reported as failed
    (never scored), also when all of them did.
    """
    num_classes = _check_training_set(distilled, test_dataset, config, label_column, num_classes)
    transform = student.transform(image_column)
    seeds = list(seeds)
    reporters = [
        r
        for r in ([config.report_to] if isinstance(config.report_to, str) else config.report_to or [])
        if r not in ("none", "all")
    ]
    if reporters:
        logger.warning(
            f"report_to={reporters} is ignored here: an evaluation's students train in a temporary "
            "folder with logging off; train one student with `gift-hf train` to log it"
        )
    with tempfile.TemporaryDirectory(prefix="gift_hf_students_") as tmp:
        cell = quiet_config(config, tmp, soft_label_source=config.label_source)
        try:
            return train_students(
                cell,
                lambda: student.create(num_classes, _id2label(distilled, label_column)),
                distilled.with_transform(transform),
                test_dataset.with_transform(eval_transform_for(transform, config.eval_transform)),
                seeds=seeds,
                learning_rates=learning_rates,
                teacher=teacher if cell.label_source == "teacher" else None,
                callbacks=callbacks,
                optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
                quiet=True,
            )
        except TrainingDivergedError as err:  # every student diverged: each is reported as failed, never scored
            return [failed_student(seed, config, err) for seed in seeds]


def _check_training_set(
    distilled: Dataset, test_dataset: Dataset, config: GIFTConfig, label_column: str, num_classes: int | None
) -> int:
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
    plain = distilled.with_format(None)
    check_class_ids(f"distilled dataset column {label_column!r}", plain[label_column], num_classes)
    if config.label_source == "dataset" and "soft_label" in distilled.column_names:
        width = len(plain[0]["soft_label"])
        if width != num_classes:
            raise ValueError(
                f"distilled dataset column 'soft_label': rows of width {width} but the labels have "
                f"{num_classes} classes; expected one soft-label entry per class"
            )
    return num_classes


def failed_student(seed: int, config: GIFTConfig, error: Exception) -> TrainingResult:
    """The record of a student whose training diverged: no accuracy, the error kept."""
    return TrainingResult(
        seed=seed,
        accuracies=[],
        steps=0,
        batch_size=config.per_device_train_batch_size,
        train_seconds=0.0,
        failure=f"{type(error).__name__}: {error}",
    )


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
        progress: one progress bar over the students' training steps (with an ETA), and a line
            per finished student.
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
            raise ValueError(
                "soft_label_source='dataset' but the distilled set has no soft labels and no teacher "
                "was given to compute them"
            )
        distilled = relabel_for(distilled, teacher_model, config)
    with job_progress(config.num_students, "students", enabled=progress):
        results = train_on_distilled(
            distilled,
            test_dataset,
            config,
            config.seeds(),
            student,
            teacher_model,
            num_classes=num_classes,
            image_column=image_column,
            label_column=label_column,
            callbacks=trainer_callbacks,
        )
        for result in results:
            if progress:
                shown = f"{100 * result.accuracy:.2f}%" if result.accuracy is not None else "failed"
                progress_line(f"student seed {result.seed}: {shown}")
            if callback is not None:
                callback(result)
    return EvaluationResult(config=config, students=results)
