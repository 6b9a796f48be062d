"""DD-Ranking's scores of a distilled dataset (Li et al., "DD-Ranking: Rethinking the Evaluation of
Dataset Distillation", 2025; the ``ddranking`` package, NUS-HPC-AI-Lab).

DD-Ranking separates what the *images* of a distilled set bring from what its soft labels
(knowledge distillation) and its augmentation bring. Per round (seed), accuracies are
fractions in [0, 1]:

- **hard-label recovery** ``HLR = acc(full data, hard) − acc(distilled, hard)`` (lower is better);
- **improvement over random** ``IOR = acc(distilled, soft) − acc(random subset, soft)``, the
  random subset having the same images per class;
- **label-robust score** ``LRS = m(λ·IOR − (1 − λ)·HLR)``, ``λ = 0.5``;
- **augmentation-robust score** ``ARS = m(λ·(S⁺ − R⁺) + (1 − λ)·(S⁻ − R⁻))``, ``λ = 0.5``,
  with ``S``/``R`` the distilled/random soft-label accuracies with (⁺) and without (⁻)
  augmentation;

where ``m(x) = (eˣ − e⁻¹) / (e − e⁻¹)`` maps ``[−1, 1]`` onto ``[0, 1]``. Each accuracy is
the best over a learning-rate grid ``{0.001, 0.005, 0.01, 0.05, 0.1}`` of the best of the
evaluations made every 20 epochs in the last 20% of training; scores are averaged over
rounds with seeds 0, 1, 42, 1234, 3407 (mean and population standard deviation).

The full-data hard-label accuracy is one cached cell (:func:`full_data_accuracy`): it
depends on the real data, the student and its fixed training recipe only, so it is
trained once and reused by every distilled set of that dataset. All the students that
share a training set (the learning-rate grid × rounds on the distilled set, the grid on
each round's random subset) train together, one :class:`~gift_hf.engine.population.StudentPopulation`
per training set (:func:`gift_hf.engine.training.train_students`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
from datasets import ClassLabel, Dataset
from torch import nn

from gift_hf.data.augment import parse_strategy
from gift_hf.data.images import ImageTransform, class_balanced_indices, eval_transform_for
from gift_hf.engine.config import GIFTConfig, protocol_config
from gift_hf.engine.losses import LOSSES
from gift_hf.engine.progress import job_progress, progress_line
from gift_hf.engine.training import TrainingResult, quiet_config, train_students
from gift_hf.files import write_output_text
from gift_hf.models.modeling import create_model, image_transform_for, load_teacher, model_spec, num_classes_of

__all__ = [
    "DDRANKING_LEARNING_RATES",
    "DDRANKING_SEEDS",
    "DDRankingArguments",
    "DDRankingResult",
    "augmentation_robust_score",
    "best_over_learning_rates",
    "ddranking_scores",
    "full_data_accuracy",
    "hard_label_recovery",
    "improvement_over_random",
    "label_robust_score",
    "mean_and_std",
    "robust_score_map",
]

DDRANKING_SEEDS = (0, 1, 42, 1234, 3407)
"""The seeds of DD-Ranking's five evaluation rounds."""
DDRANKING_LEARNING_RATES = (0.001, 0.005, 0.01, 0.05, 0.1)
"""DD-Ranking's learning-rate grid; the best accuracy over it is reported."""
FULL_DATA_DIR = "full_data_cache"


# ------------------------------------------------------------------------------ metrics
def _check_accuracy(name: str, value: float) -> float:
    value = float(value)
    if not (math.isnan(value) or 0.0 <= value <= 1.0):
        raise ValueError(f"{name}: got {value}; expected an accuracy as a fraction in [0, 1] (not a percentage)")
    return value


def hard_label_recovery(full_data_hard: float, distilled_hard: float) -> float:
    """``HLR = acc(full data, hard labels) − acc(distilled, hard labels)``; accuracies in [0, 1]."""
    return _check_accuracy("full_data_hard", full_data_hard) - _check_accuracy("distilled_hard", distilled_hard)


def improvement_over_random(distilled_soft: float, random_soft: float) -> float:
    """``IOR = acc(distilled, soft labels) − acc(random subset, soft labels)``; accuracies in [0, 1]."""
    return _check_accuracy("distilled_soft", distilled_soft) - _check_accuracy("random_soft", random_soft)


def robust_score_map(x: float) -> float:
    """``(eˣ − e⁻¹) / (e − e⁻¹)``: maps ``[−1, 1]`` onto ``[0, 1]`` (0 → 0.2689…)."""
    return (math.exp(x) - math.exp(-1.0)) / (math.e - math.exp(-1.0))


def _check_lambda(name: str, lam: float) -> float:
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"{name}: got {lam}; expected a weight in [0, 1]")
    return float(lam)


def label_robust_score(hlr: float, ior: float, lrs_lambda: float = 0.5) -> float:
    """``LRS = m(λ·IOR − (1 − λ)·HLR)`` with :func:`robust_score_map` ``m``; in [0, 1]."""
    lam = _check_lambda("lrs_lambda", lrs_lambda)
    return robust_score_map(lam * ior - (1.0 - lam) * hlr)


def augmentation_robust_score(with_aug_gap: float, without_aug_gap: float, ars_lambda: float = 0.5) -> float:
    """``ARS = m(λ·(S⁺ − R⁺) + (1 − λ)·(S⁻ − R⁻))``: gaps to random with and without augmentation."""
    lam = _check_lambda("ars_lambda", ars_lambda)
    return robust_score_map(lam * with_aug_gap + (1.0 - lam) * without_aug_gap)


def best_over_learning_rates(accuracies: dict[float, float]) -> tuple[float, float | None]:
    """``(best accuracy, its learning rate)`` over the grid; failed (NaN) students are skipped and
    ties go to the first learning rate (DD-Ranking keeps a rate only if it is strictly better).
    ``(nan, None)`` when every student failed."""
    best, best_lr = math.nan, None
    for lr, acc in accuracies.items():
        if not math.isnan(acc) and (best_lr is None or acc > best):
            best, best_lr = acc, lr
    return best, best_lr


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (``numpy.std``, as DD-Ranking reports); NaN if any is NaN."""
    if not values or any(math.isnan(v) for v in values):
        return math.nan, math.nan
    return statistics.fmean(values), statistics.pstdev(values)


# ------------------------------------------------------------------------- arguments
@dataclass
class DDRankingArguments:
    """DD-Ranking's own settings: the learning-rate grid, the rounds, the cells and the scores.

    How every student trains (optimizer, schedule, epochs, batch size, augmentation, loss and
    its temperature, where soft labels come from, when it is evaluated) is a
    :class:`~gift_hf.GIFTConfig`: by default the ``ddranking`` protocol
    (:data:`gift_hf.engine.config.PROTOCOLS`, DD-Ranking's CIFAR-10 ConvNet-3 settings: DSA, SGD
    0.01 with momentum 0.9 and ×0.1 at half of training, soft cross-entropy on the teacher's
    logits stored once, 1000 epochs, batch 256, evaluations every 20 epochs in the last 20 %).
    ``soft_label_source="dataset"`` is DD-Ranking's "S" mode (one label per image, stored once;
    a set's own soft labels when it has them), ``"teacher"`` its "M" mode (the teacher
    relabels every augmented batch).
    """

    learning_rates: list[float] = field(
        default_factory=lambda: list(DDRANKING_LEARNING_RATES),
        metadata={"help": "Learning-rate grid; each accuracy is the best over it."},
    )
    seeds: list[int] = field(
        default_factory=lambda: list(DDRANKING_SEEDS),
        metadata={"help": "One evaluation round per seed (student init, batch order, augmentation, random subset)."},
    )
    distilled_learning_rate: Optional[float] = field(
        default=None,
        metadata={
            "help": "A fixed learning rate for the distilled set's soft-label students (DD-Ranking's syn_lr); "
            "None searches the grid."
        },
    )
    use_aug_for_hard: bool = field(
        default=True, metadata={"help": "Augment the hard-label students (distilled and full data) too."}
    )
    lrs_lambda: float = field(default=0.5, metadata={"help": "λ of the label-robust score."})
    ars_lambda: float = field(default=0.5, metadata={"help": "λ of the augmentation-robust score."})
    compute_ars: bool = field(
        default=True,
        metadata={"help": "Also train the students without augmentation for the augmentation-robust score."},
    )
    full_data_learning_rate: float = field(default=0.01, metadata={"help": "Full-data cell: learning rate."})
    full_data_epochs: int = field(default=200, metadata={"help": "Full-data cell: epochs."})
    full_data_batch_size: int = field(default=512, metadata={"help": "Full-data cell: batch size."})
    full_data_step_size: Optional[int] = field(
        default=100,
        metadata={"help": "Full-data cell: epochs between learning-rate decays (×lr_decay); None: no decay."},
    )
    full_data_seeds: list[int] = field(
        default_factory=lambda: [0],
        metadata={"help": "Full-data cell: the seeds of its students (their mean accuracy is used)."},
    )

    def __post_init__(self) -> None:
        self.learning_rates = [float(v) for v in self.learning_rates]
        self.seeds = [int(v) for v in self.seeds]
        self.full_data_seeds = [int(v) for v in self.full_data_seeds]
        for name in ("learning_rates", "seeds", "full_data_seeds"):
            values = getattr(self, name)
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{name}: got {values}; expected at least one value and no duplicates")
        if any(not (lr > 0 and math.isfinite(lr)) for lr in self.learning_rates):
            raise ValueError(f"learning_rates: got {self.learning_rates}; expected positive numbers")
        for name in ("full_data_epochs", "full_data_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: got {value!r}; expected an integer >= 1")
        if self.full_data_step_size is not None and not 0 < self.full_data_step_size:
            raise ValueError(f"full_data_step_size: got {self.full_data_step_size}; expected >= 1 epochs or None")
        _check_lambda("lrs_lambda", self.lrs_lambda)
        _check_lambda("ars_lambda", self.ars_lambda)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check(self, config: GIFTConfig) -> None:
        """Refuse a student configuration DD-Ranking's cells cannot use (one clear line)."""
        if not LOSSES[config.loss].needs_teacher:
            soft = sorted(k for k, v in LOSSES.items() if v.needs_teacher)
            raise ValueError(
                f"loss: got {config.loss!r}; expected the soft-label students' loss, one of {soft} "
                "(the hard-label cells use 'ce' themselves)"
            )
        if self.compute_ars and not parse_strategy(config.augmentation) and config.mix == "none":
            raise ValueError(
                "compute_ars: the augmentation-robust score compares training with and without "
                "augmentation, but augmentation='none' and mix='none'; set one or compute_ars=False"
            )

    def student_config(self, config: GIFTConfig, loss: str, augment: bool) -> GIFTConfig:
        """The students of a cell: ``config`` with ``loss`` (``'ce'``: hard labels), with or without augmentation."""
        changes: dict[str, Any] = dict(loss=loss)
        if not augment:
            changes.update(augmentation="none", mix="none", factor_crop=1)
        return config.replace(**changes)

    def full_data_config(self, config: GIFTConfig) -> GIFTConfig:
        """The fixed recipe of the full-data hard-label cell (DD-Ranking: SGD 0.01, 200 epochs, batch 512,
        ×0.1 at epoch 100)."""
        step = self.full_data_step_size
        milestones = [e / self.full_data_epochs for e in range(step, self.full_data_epochs, step)] if step else []
        return self.student_config(config, "ce", self.use_aug_for_hard).replace(
            num_train_epochs=self.full_data_epochs,
            per_device_train_batch_size=self.full_data_batch_size,
            batch_sizes=None,
            learning_rate=self.full_data_learning_rate,
            lr_milestones=milestones,
            lr_decay=config.lr_decay if milestones else 1.0,
            optim="sgd",
            optim_args="momentum=0.9",
        )


# --------------------------------------------------------------------------- data
def _json_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_json(path: str, payload: Any) -> None:
    write_output_text(path, json.dumps(payload, indent=1, default=str))


def _student_records(
    cell: str, round_index: int | None, seeds: Sequence[int], lrs: Sequence[float], results: Sequence[TrainingResult]
) -> list[dict[str, Any]]:
    records = []
    for seed, lr, result in zip(seeds, lrs, results):
        best = result.accuracy
        records.append(
            {
                "cell": cell,
                "round": round_index,
                "seed": seed,
                "learning_rate": lr,
                "accuracies": result.accuracies,
                "best_accuracy": best if best is not None else math.nan,
                "final_accuracy": result.final_accuracy if result.final_accuracy is not None else math.nan,
                "failed": result.failure is not None,
                "failure": result.failure,
                "steps": result.steps,
            }
        )
    return records


# ----------------------------------------------------------------------- full data
def full_data_accuracy(
    real_train: Dataset,
    real_test: Dataset,
    build: Callable[[], nn.Module],
    model: dict[str, Any],
    transform: ImageTransform,
    args: DDRankingArguments,
    config: GIFTConfig,
    *,
    cache_dir: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The full-data hard-label accuracy: its own cell, cached and shared by every distilled set.

    It depends on the real training and test sets, the student (``model``: its architecture
    and arguments, as ``build`` makes it) and the fixed full-data recipe
    (:meth:`DDRankingArguments.full_data_config`) only. With ``cache_dir`` the result is
    stored as ``<cache_dir>/full_data_cache/<data>-<model>-<protocol>.json`` (the datasets'
    fingerprints and preprocessing, a hash of the model, a hash of the recipe and seeds) and
    read back on the next call instead of training again.

    Returns:
        ``{"accuracy": mean best accuracy, "students": [...], "cached": bool, ...}``.
    """
    recipe = args.full_data_config(config)
    protocol = {"recipe": recipe.training_settings(), "seeds": args.full_data_seeds}
    data = {
        "train": real_train._fingerprint,
        "test": real_test._fingerprint,
        "transform": dataclasses.asdict(transform),
    }
    key = {"dataset": _json_hash(data), "model": _json_hash(model), "protocol": _json_hash(protocol)}
    path = (
        os.path.join(cache_dir, FULL_DATA_DIR, f"{key['dataset']}-{key['model']}-{key['protocol']}.json")
        if cache_dir
        else None
    )
    if path and os.path.isfile(path):
        with open(path) as f:
            cached = json.load(f)
        return {**cached, "cached": True, "path": path}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gift_hf_ddranking_") as tmp:
        results = train_students(
            quiet_config(recipe, tmp),
            build,
            real_train.with_transform(transform),
            real_test.with_transform(transform),
            seeds=args.full_data_seeds,
            quiet=True,
        )
    students = _student_records(
        "full_data_hard", None, args.full_data_seeds, [args.full_data_learning_rate] * len(results), results
    )
    accuracy, _ = mean_and_std([r["best_accuracy"] for r in students])
    result = {
        "accuracy": accuracy,
        "students": students,
        "key": key,
        **model,
        "protocol": protocol,
        "train_seconds": time.perf_counter() - start,
    }
    if path:
        _write_json(path, result)
    return {**result, "cached": False, "path": path}


# ------------------------------------------------------------------------ results
@dataclass
class DDRankingResult:
    """The scores (mean and std over rounds, accuracies and gaps as fractions), per round, per student."""

    scores: dict[str, float]
    rounds: list[dict[str, Any]]
    students: list[dict[str, Any]]
    full_data: dict[str, Any]
    settings: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scores": self.scores,
            "rounds": self.rounds,
            "full_data": self.full_data,
            "settings": self.settings,
            "students": self.students,
        }


CELLS = {
    "distilled_hard": ("distilled", "hard labels"),
    "distilled_soft": ("distilled", "soft labels"),
    "random_soft": ("random", "soft labels"),
    "random_hard": ("random", "hard labels"),
    "distilled_soft_noaug": ("distilled", "soft labels, no aug."),
    "random_soft_noaug": ("random", "soft labels, no aug."),
}


def _ipc_of(labels: Sequence[int], num_classes: int) -> int:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).tolist()
    if len(set(counts)) != 1:
        raise ValueError(
            f"distilled: class counts {counts} differ; DD-Ranking compares with a random subset of the "
            "same images per class, so expected a class-balanced distilled set"
        )
    return counts[0]


LABEL_MODES = ("soft", "hard")


def ddranking_scores(
    distilled: Dataset,
    real_train: Dataset,
    real_test: Dataset,
    teacher: nn.Module | str | None,
    *,
    label_mode: str = "soft",
    args: DDRankingArguments | None = None,
    config: GIFTConfig | None = None,
    student_arch: str | None = None,
    student_model_kwargs: dict[str, Any] | None = None,
    transform: ImageTransform | None = None,
    label_column: str = "label",
    output_dir: str | None = None,
    cache_dir: str | None = None,
    progress: bool = False,
) -> DDRankingResult:
    """DD-Ranking's HLR, IOR, label-robust and augmentation-robust scores of a distilled set.

    Args:
        distilled: the distilled set (``image`` and ``label`` columns; class-balanced). With
            ``soft_label_source="dataset"`` its own ``soft_label`` column is used when it has
            one (e.g. learned labels); otherwise the teacher labels it once.
        real_train: the real training split (full-data cell and random subsets).
        real_test: the real test split every student is scored on.
        teacher: the soft-label teacher (instance, saved folder or Hub id); None in the hard mode
            (then pass ``transform`` and ``student_arch``).
        label_mode: ``"soft"`` (DD-Ranking's ``LabelRobustScoreSoft``: IOR between the distilled
            and random sets' soft-label students, and ARS) or ``"hard"`` (``LabelRobustScoreHard``:
            every student learns hard labels, IOR between the distilled and random sets'
            hard-label students, no ARS, no teacher).
        args: DD-Ranking's settings (:class:`DDRankingArguments`).
        config: how every student trains (default: the ``ddranking`` protocol); its
            ``output_dir`` is not used, ``use_cpu`` and the precision are.
        student_arch: the students' timm architecture (default: the teacher's).
        student_model_kwargs: their ``create_model`` arguments (default: the teacher's when
            the architecture is the teacher's).
        transform: how images become ``pixel_values`` (default: the teacher's input spec).
        output_dir: where ``results.json``/``.csv``/``.md`` and ``ddranking.png`` are written.
        cache_dir: where the full-data cell is cached (default: ``output_dir``).
        progress: progress bars over training.

    Returns:
        A :class:`DDRankingResult`; ``scores`` holds ``hlr``, ``ior``, ``lrs``, ``ars``
        (``_mean``/``_std``) and the mean cell accuracies, all as fractions.
    """
    from gift_hf.data.relabel import relabel

    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode: got {label_mode!r}; expected one of {LABEL_MODES}")
    soft = label_mode == "soft"
    args = args or DDRankingArguments()
    config = config or protocol_config("ddranking")
    if soft:
        args.check(config)
    elif args.compute_ars:
        args = dataclasses.replace(args, compute_ars=False)  # the augmentation-robust score is soft-label's
    if teacher is None:
        if soft:
            raise ValueError("teacher: got None; the soft-label scores need a teacher (label_mode='hard' needs none)")
        if transform is None or student_arch is None:
            raise ValueError(
                "transform, student_arch: without a teacher the hard mode needs both (how images become "
                "pixel_values, and the students' architecture)"
            )
        teacher_model = None
    else:
        teacher_model = load_teacher(teacher) if not isinstance(teacher, nn.Module) else teacher.eval()
    transform = transform or image_transform_for(teacher_model)
    if student_arch is None:
        spec = model_spec(teacher_model)  # a timm architecture for our teachers; others: pass student_arch
        student_arch = spec["arch"]
        if student_model_kwargs is None:
            student_model_kwargs = dict(spec["model_kwargs"])
    student_model_kwargs = dict(student_model_kwargs or {})
    for name, ds in (("distilled", distilled), ("real_train", real_train), ("real_test", real_test)):
        if label_column not in ds.column_names:
            raise ValueError(f"{name}: has no {label_column!r} column (label_column); it has {ds.column_names}")
        if len(ds) == 0:
            raise ValueError(f"{name}: is empty (0 rows); expected images to train or evaluate on")
    if label_column != "label":
        distilled, real_train, real_test = (
            ds.rename_column(label_column, "label") for ds in (distilled, real_train, real_test)
        )
    feature = real_train.features.get("label")
    train_labels = np.asarray(real_train.with_format(None)["label"])
    syn_labels = np.asarray(distilled.with_format(None)["label"])
    num_classes = feature.num_classes if isinstance(feature, ClassLabel) else int(train_labels.max()) + 1
    if int(syn_labels.max()) >= num_classes:
        raise ValueError(f"distilled: class id {int(syn_labels.max())} but the real data has {num_classes} classes")
    teacher_classes = num_classes_of(teacher_model) if teacher_model is not None else None
    if teacher_classes is not None and teacher_classes != num_classes:  # else a raw reshape error in round one
        raise ValueError(
            f"teacher: has {teacher_classes} classes but the real data has {num_classes} (column "
            f"{label_column!r}); expected a teacher trained on this dataset's classes"
        )
    ipc = _ipc_of(syn_labels, num_classes)
    cache_dir = cache_dir or output_dir
    model = {"model_name": student_arch, "model_kwargs": student_model_kwargs}

    def build() -> nn.Module:
        return create_model(
            student_arch,
            num_classes,
            in_chans=transform.channels,
            img_size=transform.image_size,
            image_mean=transform.mean,
            image_std=transform.std,
            **student_model_kwargs,
        )

    # One display: every student of every cell (students × steps), an ETA, one line per cell and round.
    syn_lrs = [args.distilled_learning_rate] if args.distilled_learning_rate else args.learning_rates
    per_round = (
        (
            len(args.learning_rates)
            + len(syn_lrs) * (2 if args.compute_ars else 1)
            + len(args.learning_rates) * (2 if args.compute_ars else 1)
        )
        if soft
        else 2 * len(args.learning_rates)
    )
    planned = len(args.seeds) * per_round + len(args.full_data_seeds)
    with job_progress(planned, "ddranking", enabled=progress) as bar:
        full = full_data_accuracy(real_train, real_test, build, model, transform, args, config, cache_dir=cache_dir)
        if full.get("cached"):
            bar.update(len(args.full_data_seeds))
        cached = " (cached)" if full.get("cached") else ""
        progress_line(f"full data, hard labels: {_pct(full['accuracy'])}%{cached}")
        students: list[dict[str, Any]] = []
        # accuracy[cell][round index] = best over the learning-rate grid
        accuracy: dict[str, list[float]] = {}
        best_lr: dict[str, list[float | None]] = {}
        stored = config.soft_label_source == "dataset"

        def labelled(ds: Dataset) -> Dataset:
            """DD-Ranking's "S" labels: the set's own, else the teacher's logits on the un-augmented images, once."""
            if not stored or "soft_label" in ds.column_names:
                return ds
            out, _ = relabel(ds, teacher_model, output="logits", transform=transform, progress=False)
            return out

        test = real_test.with_transform(eval_transform_for(transform, config.eval_transform))

        def train_cell(
            cell: str,
            ds: Dataset,
            loss: str,
            augment: bool,
            seeds: list[int],
            lrs: list[float],
            round_index: int | None,
        ) -> None:
            recipe = args.student_config(config, loss, augment)
            if loss == "ce":
                recipe = recipe.replace(soft_label_source="teacher")  # hard labels: no soft-label column needed
            grid = [(s, lr) for s in seeds for lr in lrs]
            with tempfile.TemporaryDirectory(prefix="gift_hf_ddranking_") as tmp:
                results = train_students(
                    quiet_config(recipe, tmp),
                    build,
                    ds.with_transform(transform),
                    test,
                    seeds=[s for s, _ in grid],
                    learning_rates=[lr for _, lr in grid],
                    teacher=teacher_model if loss != "ce" and not stored else None,
                    quiet=True,
                )
            for i, seed in enumerate(seeds):
                index = round_index if round_index is not None else args.seeds.index(seed)
                share = results[i * len(lrs) : (i + 1) * len(lrs)]
                mine = _student_records(cell, index, [seed] * len(lrs), lrs, share)
                students.extend(mine)
                acc, lr = best_over_learning_rates({r["learning_rate"]: r["best_accuracy"] for r in mine})
                accuracy.setdefault(cell, [math.nan] * len(args.seeds))[index] = acc
                best_lr.setdefault(cell, [None] * len(args.seeds))[index] = lr
                progress_line(f"{cell}, round {index} (seed {args.seeds[index]}): {_pct(acc)}% (lr {lr})")

        # The distilled set is the same training set in every round: all rounds × rates train together.
        train_cell(
            "distilled_hard",
            distilled,
            "ce",
            args.use_aug_for_hard,
            args.seeds,
            args.learning_rates if soft else syn_lrs,
            None,
        )
        if soft:
            syn = labelled(distilled)
            train_cell("distilled_soft", syn, config.loss, True, args.seeds, syn_lrs, None)
            if args.compute_ars:
                train_cell("distilled_soft_noaug", syn, config.loss, False, args.seeds, syn_lrs, None)
        # Each round has its own random subset (same images per class): its rates train together.
        for r, seed in enumerate(args.seeds):
            rows = class_balanced_indices(train_labels.tolist(), ipc, seed=seed)
            if not soft:
                train_cell(
                    "random_hard", real_train.select(rows), "ce", args.use_aug_for_hard, [seed], args.learning_rates, r
                )
                continue
            rdm = labelled(real_train.select(rows))
            train_cell("random_soft", rdm, config.loss, True, [seed], args.learning_rates, r)
            if args.compute_ars:
                train_cell("random_soft_noaug", rdm, config.loss, False, [seed], args.learning_rates, r)

    rounds = []
    for r, seed in enumerate(args.seeds):
        row: dict[str, Any] = {"round": r, "seed": seed, "full_data_hard": full["accuracy"]}
        row.update({cell: accuracy[cell][r] for cell in accuracy})
        row.update({f"{cell}_lr": best_lr[cell][r] for cell in best_lr})
        syn_cell, rdm_cell = ("distilled_soft", "random_soft") if soft else ("distilled_hard", "random_hard")
        if any(math.isnan(row[c]) for c in ("full_data_hard", "distilled_hard", syn_cell, rdm_cell)):
            row.update(hlr=math.nan, ior=math.nan, lrs=math.nan)
        else:
            row["hlr"] = hard_label_recovery(full["accuracy"], row["distilled_hard"])
            row["ior"] = improvement_over_random(row[syn_cell], row[rdm_cell])
            row["lrs"] = label_robust_score(row["hlr"], row["ior"], args.lrs_lambda)
        if args.compute_ars:
            with_gap = row["distilled_soft"] - row["random_soft"]
            without_gap = row["distilled_soft_noaug"] - row["random_soft_noaug"]
            row["ars"] = (
                augmentation_robust_score(with_gap, without_gap, args.ars_lambda)
                if not (math.isnan(with_gap) or math.isnan(without_gap))
                else math.nan
            )
        rounds.append(row)
    scores: dict[str, float] = {}
    for name in ["hlr", "ior", "lrs"] + (["ars"] if args.compute_ars else []) + list(accuracy):
        scores[f"{name}_mean"], scores[f"{name}_std"] = mean_and_std([row[name] for row in rounds])
    scores["full_data_hard"] = full["accuracy"]
    settings = {
        "label_mode": label_mode,
        "protocol": args.to_dict(),
        "config": config.training_settings(),
        "student_arch": student_arch,
        "student_model_kwargs": student_model_kwargs,
        "ipc": ipc,
        "num_classes": num_classes,
        "num_students": len(students),
        "transform": dataclasses.asdict(transform),
    }
    result = DDRankingResult(scores, rounds, students, {k: v for k, v in full.items() if k != "students"}, settings)
    if output_dir:
        result.files = write_ddranking_results(result, output_dir)
    return result


# ------------------------------------------------------------------------ reporting
def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.{digits}f}"


def ddranking_markdown(result: DDRankingResult) -> str:
    """The scores table (in %) and the per-round accuracies, as Markdown."""
    from gift_hf.studies.report import markdown_table

    s = result.scores
    names = [
        ("hlr", "Hard-label recovery HLR (lower is better)"),
        ("ior", "Improvement over random IOR"),
        ("lrs", "Label-robust score LRS"),
        ("ars", "Augmentation-robust score ARS"),
    ]
    score_rows = [
        [label, f"{_pct(s[f'{key}_mean'], 2)} ± {_pct(s[f'{key}_std'], 2)}"]
        for key, label in names
        if f"{key}_mean" in s
    ]
    cells = [c for c in CELLS if c in result.rounds[0]]
    round_rows = [
        [row["seed"], _pct(row["full_data_hard"])]
        + [f"{_pct(row[c])} (lr {row[f'{c}_lr']})" for c in cells]
        + [_pct(row.get(k), 2) for k in ("hlr", "ior", "lrs", "ars") if k in row]
        for row in result.rounds
    ]
    headers = (
        ["seed", "full data, hard"]
        + [f"{CELLS[c][0]}, {CELLS[c][1]}" for c in cells]
        + [k.upper() for k in ("hlr", "ior", "lrs", "ars") if k in result.rounds[0]]
    )
    settings = result.settings
    return (
        f"## DD-Ranking scores ({settings['student_arch']}, IPC {settings['ipc']}, {len(result.rounds)} rounds, "
        f"{settings['num_students']} students + the full-data cell)\n\n"
        + markdown_table(["score", "mean ± std (%)"], score_rows)
        + "\n\nPer round: best test accuracy (%) over the learning-rate grid (best rate in brackets), and "
        "scores (%).\n\n" + markdown_table(headers, round_rows) + "\n"
    )


def write_ddranking_results(result: DDRankingResult, output_dir: str) -> dict[str, str]:
    """``results.json`` (everything), ``results.csv`` (one row per round), ``results.md`` and ``ddranking.png``."""
    from gift_hf.studies.report import bar_plot, write_results

    files = write_results(
        output_dir,
        "ddranking",
        settings=result.settings,
        records=result.students,
        summary=result.rounds,
        table=ddranking_markdown(result),
        extra={"scores": result.scores, "full_data": result.full_data},
    )
    summary = [
        {
            "training set": "full data",
            "labels": "hard labels",
            "mean": 100 * result.scores["full_data_hard"],
            "std": 0.0,
        }
    ]
    for cell, (where, labels) in CELLS.items():
        if f"{cell}_mean" in result.scores:
            summary.append(
                {
                    "training set": where,
                    "labels": labels,
                    "mean": 100 * result.scores[f"{cell}_mean"],
                    "std": 100 * result.scores[f"{cell}_std"],
                }
            )
    summary = [row for row in summary if not math.isnan(row["mean"])]
    title = (
        f"DD-Ranking: LRS {_pct(result.scores['lrs_mean'])}%"
        + (f", ARS {_pct(result.scores['ars_mean'])}%" if "ars_mean" in result.scores else "")
        + f" ({result.settings['student_arch']}, IPC {result.settings['ipc']})"
    )
    files["plot"] = bar_plot(summary, "training set", "labels", os.path.join(output_dir, "ddranking.png"), title)
    return files
