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
each round's random subset) train together (:func:`gift_hf.engine.multi_student.train_students`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch
from datasets import ClassLabel, Dataset
from torch import nn

from gift_hf.data.augment import AUGMENTATION_MODES, MIX_MODES, parse_strategy
from gift_hf.data.images import ImageTransform, class_balanced_indices
from gift_hf.engine.losses import LOSSES
from gift_hf.files import atomic_write_text
from gift_hf.models.modeling import image_transform_for, load_teacher, model_spec, teacher_logits
from gift_hf.engine.multi_student import MULTI_OPTIMIZERS, MULTI_SCHEDULES, StudentRun, StudentTrainingArgs, train_students

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
DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"
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
    """DD-Ranking's evaluation protocol. Defaults: its CIFAR-10 ConvNet-3 settings (DSA, SGD,
    soft cross-entropy on stored teacher labels, 1000 epochs, batch 256)."""

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
        metadata={"help": "A fixed learning rate for the distilled set's soft-label students (DD-Ranking's syn_lr); "
                  "None searches the grid."},
    )
    epochs: int = field(default=1000, metadata={"help": "Training epochs of every distilled/random student."})
    batch_size: int = field(default=256, metadata={"help": "Training batch size of the distilled/random students."})
    optimizer: str = field(default="sgd", metadata={"help": f"Optimizer, one of {MULTI_OPTIMIZERS}."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum."})
    weight_decay: float = field(default=5e-4, metadata={"help": "Weight decay."})
    schedule: str = field(default="step", metadata={"help": f"Learning-rate schedule, one of {MULTI_SCHEDULES}."})
    step_size: Optional[int] = field(
        default=None, metadata={"help": "step schedule: epochs between decays (None: half of training)."}
    )
    gamma: float = field(default=0.1, metadata={"help": "step schedule: decay factor."})
    soft_label_loss: str = field(
        default="soft_ce", metadata={"help": f"Loss of the soft-label students ('soft_ce' = DD-Ranking's sce, 'kl'), "
                                     f"one of {sorted(LOSSES)}."}
    )
    temperature: float = field(default=1.0, metadata={"help": "Temperature of the soft-label loss."})
    soft_label_mode: str = field(
        default="S",
        metadata={"help": "'S': one soft label per image, the teacher's logits on the un-augmented images, stored "
                  "once; 'M': the teacher relabels every augmented batch."},
    )
    augmentation: str = field(default=DSA_STRATEGY, metadata={"help": "Training augmentation (DSA ops or 'none')."})
    augmentation_mode: str = field(default="single", metadata={"help": f"One of {AUGMENTATION_MODES}."})
    mix: str = field(default="none", metadata={"help": f"CutMix/MixUp, one of {MIX_MODES}."})
    use_aug_for_hard: bool = field(
        default=True, metadata={"help": "Augment the hard-label students (distilled and full data) too."}
    )
    eval_every: int = field(default=20, metadata={"help": "Evaluate every this many epochs."})
    eval_start_fraction: float = field(
        default=0.8, metadata={"help": "Evaluate only in the last (1 − this) of training; the best is kept."}
    )
    eval_batch_size: int = field(default=512, metadata={"help": "Batch size on the test split."})
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
        default=100, metadata={"help": "Full-data cell: epochs between learning-rate decays (×gamma)."}
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
        if self.soft_label_mode not in ("S", "M"):
            raise ValueError(f"soft_label_mode: got {self.soft_label_mode!r}; expected 'S' (stored) or 'M' (online)")
        if self.soft_label_loss not in LOSSES or not LOSSES[self.soft_label_loss].needs_teacher:
            soft = sorted(k for k, v in LOSSES.items() if v.needs_teacher)
            raise ValueError(f"soft_label_loss: got {self.soft_label_loss!r}; expected a soft-label loss, one of "
                             f"{soft}")
        _check_lambda("lrs_lambda", self.lrs_lambda)
        _check_lambda("ars_lambda", self.ars_lambda)
        if self.compute_ars and not parse_strategy(self.augmentation) and self.mix == "none":
            raise ValueError("compute_ars: the augmentation-robust score compares training with and without "
                             "augmentation, but augmentation='none' and mix='none'; set one or compute_ars=False")
        # every training field is validated by the recipes built here
        self.training_args(self.soft_label_loss, True)
        self.full_data_args()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def training_args(self, loss: str, augment: bool) -> StudentTrainingArgs:
        """The recipe of the distilled/random students (``loss``, with or without augmentation)."""
        return StudentTrainingArgs(
            loss=loss,
            loss_kwargs={"temperature": self.temperature} if loss != "ce" else {},
            optimizer=self.optimizer, weight_decay=self.weight_decay, momentum=self.momentum,
            epochs=self.epochs, batch_size=self.batch_size, schedule=self.schedule, step_size=self.step_size,
            gamma=self.gamma,
            augmentation=self.augmentation if augment else "none",
            augmentation_mode=self.augmentation_mode, mix=self.mix if augment else "none",
            eval_every=self.eval_every, eval_start_fraction=self.eval_start_fraction,
            eval_batch_size=self.eval_batch_size,
        )

    def full_data_args(self) -> StudentTrainingArgs:
        """The fixed recipe of the full-data hard-label cell (DD-Ranking: SGD 0.01, 200 epochs, batch 512, step 100)."""
        return self.training_args("ce", self.use_aug_for_hard).replace(
            epochs=self.full_data_epochs, batch_size=self.full_data_batch_size, schedule="step",
            step_size=self.full_data_step_size, optimizer="sgd",
        )


# --------------------------------------------------------------------------- data
def image_tensors(dataset: Dataset, transform: ImageTransform, label_column: str = "label",
                  batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of ``dataset`` through ``transform`` as ``(N, C, H, W)`` and its labels ``(N,)``."""
    if label_column not in dataset.column_names:
        raise ValueError(f"dataset has no {label_column!r} column (label_column); it has {dataset.column_names}")
    if len(dataset) == 0:
        raise ValueError("dataset is empty (0 rows); expected images to train or evaluate on")
    view = dataset.with_transform(transform)
    chunks = []
    for start in range(0, len(dataset), batch_size):
        rows = view[start:start + batch_size]
        chunks.append(torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in rows["pixel_values"]]))
    labels = torch.as_tensor(np.asarray(dataset.with_format(None)[label_column]), dtype=torch.long)
    return torch.cat(chunks), labels


def _fingerprint(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]


def _json_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _atomic_write_json(path: str, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=1, default=str))


# ----------------------------------------------------------------------- full data
def full_data_accuracy(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    model_name: str,
    model_kwargs: dict[str, Any] | None,
    args: DDRankingArguments,
    *,
    num_classes: int,
    cache_dir: str | None = None,
    device: str | torch.device | None = None,
    vectorized: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """The full-data hard-label accuracy: its own cell, cached and shared by every distilled set.

    It depends on the real training and test images, the student and the fixed full-data
    recipe (:meth:`DDRankingArguments.full_data_args`) only. With ``cache_dir`` the result
    is stored as ``<cache_dir>/full_data_cache/<data>-<model>-<protocol>.json`` (the
    dataset fingerprint, a hash of the model name and arguments, a hash of the recipe and
    seeds) and read back on the next call instead of training again.

    Returns:
        ``{"accuracy": mean best accuracy, "students": [...], "cached": bool, ...}``.
    """
    recipe = args.full_data_args()
    protocol = {"recipe": recipe.to_dict(), "learning_rate": args.full_data_learning_rate,
                "seeds": args.full_data_seeds}
    model = {"model_name": model_name, "model_kwargs": dict(model_kwargs or {})}
    key = {"dataset": _fingerprint(*train, *test), "model": _json_hash(model), "protocol": _json_hash(protocol)}
    path = os.path.join(cache_dir, FULL_DATA_DIR, f"{key['dataset']}-{key['model']}-{key['protocol']}.json") \
        if cache_dir else None
    if path and os.path.isfile(path):
        with open(path) as f:
            cached = json.load(f)
        return {**cached, "cached": True, "path": path}
    start = time.perf_counter()
    runs = train_students(model_name, model_kwargs, *train, *test, seeds=args.full_data_seeds,
                          learning_rates=[args.full_data_learning_rate] * len(args.full_data_seeds), args=recipe,
                          num_classes=num_classes, device=device, vectorized=vectorized, progress=progress,
                          desc="full data (hard labels)")
    accuracy, _ = mean_and_std([r.best_accuracy for r in runs])
    result = {"accuracy": accuracy, "students": [r.to_dict() for r in runs], "key": key, **model,
              "protocol": protocol, "train_seconds": time.perf_counter() - start}
    if path:
        _atomic_write_json(path, result)
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
        return {"scores": self.scores, "rounds": self.rounds, "full_data": self.full_data,
                "settings": self.settings, "students": self.students}


CELLS = {
    "distilled_hard": ("distilled", "hard labels"),
    "distilled_soft": ("distilled", "soft labels"),
    "random_soft": ("random", "soft labels"),
    "distilled_soft_noaug": ("distilled", "soft labels, no aug."),
    "random_soft_noaug": ("random", "soft labels, no aug."),
}


def _stored_logits(teacher: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([teacher_logits(teacher, images[i:i + batch_size]).float()
                          for i in range(0, images.shape[0], batch_size)])


def _ipc_of(labels: torch.Tensor, num_classes: int) -> int:
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    if len(set(counts)) != 1:
        raise ValueError(f"distilled: class counts {counts} differ; DD-Ranking compares with a random subset of the "
                         "same images per class, so expected a class-balanced distilled set")
    return counts[0]


def ddranking_scores(
    distilled: Dataset,
    real_train: Dataset,
    real_test: Dataset,
    teacher: nn.Module | str,
    *,
    args: DDRankingArguments | None = None,
    student_arch: str | None = None,
    student_model_kwargs: dict[str, Any] | None = None,
    transform: ImageTransform | None = None,
    label_column: str = "label",
    output_dir: str | None = None,
    cache_dir: str | None = None,
    device: str | torch.device | None = None,
    vectorized: bool = True,
    progress: bool = False,
) -> DDRankingResult:
    """DD-Ranking's HLR, IOR, label-robust and augmentation-robust scores of a distilled set.

    Args:
        distilled: the distilled set (``image`` and ``label`` columns; class-balanced).
        real_train: the real training split (full-data cell and random subsets).
        real_test: the real test split every student is scored on.
        teacher: the soft-label teacher (instance, saved folder or Hub id).
        args: the protocol (:class:`DDRankingArguments`; default: CIFAR-10 ConvNet-3 settings).
        student_arch: the students' timm architecture (default: the teacher's).
        student_model_kwargs: their ``create_model`` arguments (default: the teacher's when
            the architecture is the teacher's).
        transform: how images become ``pixel_values`` (default: the teacher's input spec).
        output_dir: where ``results.json``/``.csv``/``.md`` and ``ddranking.png`` are written.
        cache_dir: where the full-data cell is cached (default: ``output_dir``).
        device: where students train (default: CUDA if available).
        vectorized: train the students that share a training set together.
        progress: progress bars over training steps.

    Returns:
        A :class:`DDRankingResult`; ``scores`` holds ``hlr``, ``ior``, ``lrs``, ``ars``
        (``_mean``/``_std``) and the mean cell accuracies, all as fractions.
    """
    args = args or DDRankingArguments()
    teacher_model = load_teacher(teacher) if not isinstance(teacher, nn.Module) else teacher.eval()
    transform = transform or image_transform_for(teacher_model)
    if student_arch is None:
        spec = model_spec(teacher_model)  # a timm architecture for our teachers; others: pass student_arch
        student_arch = spec["arch"]
        if student_model_kwargs is None:
            student_model_kwargs = dict(spec["model_kwargs"])
    student_model_kwargs = dict(student_model_kwargs or {})
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else
                                                                           "cpu")
    teacher_model = teacher_model.to(device)
    feature = real_train.features.get(label_column)
    syn_x, syn_y = image_tensors(distilled, transform, label_column)
    train_x, train_y = image_tensors(real_train, transform, label_column)
    test_x, test_y = image_tensors(real_test, transform, label_column)
    num_classes = feature.num_classes if isinstance(feature, ClassLabel) else int(train_y.max()) + 1
    if int(syn_y.max()) >= num_classes:
        raise ValueError(f"distilled: class id {int(syn_y.max())} but the real data has {num_classes} classes")
    ipc = _ipc_of(syn_y, num_classes)
    cache_dir = cache_dir or output_dir
    common = dict(num_classes=num_classes, device=device, vectorized=vectorized, progress=progress)

    full = full_data_accuracy((train_x, train_y), (test_x, test_y), student_arch, student_model_kwargs, args,
                              cache_dir=cache_dir, **common)
    students: list[dict[str, Any]] = []
    # accuracy[cell][round index] = best over the learning-rate grid
    accuracy: dict[str, list[float]] = {}
    best_lr: dict[str, list[float | None]] = {}

    def soft_of(images: torch.Tensor) -> torch.Tensor | None:
        return _stored_logits(teacher_model, images.to(device), args.eval_batch_size) \
            if args.soft_label_mode == "S" else None

    def record(cell: str, round_index: int, runs: Sequence[StudentRun]) -> None:
        for run in runs:
            students.append({"cell": cell, "round": round_index, **run.to_dict()})
        acc, lr = best_over_learning_rates({r.learning_rate: r.best_accuracy for r in runs})
        accuracy.setdefault(cell, [math.nan] * len(args.seeds))[round_index] = acc
        best_lr.setdefault(cell, [None] * len(args.seeds))[round_index] = lr

    def train_cell(cell: str, images, labels, soft, loss: str, augment: bool, seeds: list[int],
                   lrs: list[float], round_index: int | None) -> None:
        recipe = args.training_args(loss, augment)
        grid = [(s, lr) for s in seeds for lr in lrs]
        runs = train_students(student_arch, student_model_kwargs, images, labels, test_x, test_y,
                              seeds=[s for s, _ in grid], learning_rates=[lr for _, lr in grid], args=recipe,
                              teacher=teacher_model if (recipe.loss != "ce" and soft is None) else None,
                              soft_labels=soft if recipe.loss != "ce" else None,
                              desc=f"{cell} ({len(grid)} students)", **common)
        for i, seed in enumerate(seeds):
            index = round_index if round_index is not None else args.seeds.index(seed)
            record(cell, index, runs[i * len(lrs):(i + 1) * len(lrs)])

    soft_lrs = [args.distilled_learning_rate] if args.distilled_learning_rate else args.learning_rates
    syn_soft = soft_of(syn_x)
    # The distilled set is the same training set in every round: all rounds × rates train together.
    train_cell("distilled_hard", syn_x, syn_y, None, "ce", args.use_aug_for_hard, args.seeds, args.learning_rates,
               None)
    train_cell("distilled_soft", syn_x, syn_y, syn_soft, args.soft_label_loss, True, args.seeds, soft_lrs, None)
    if args.compute_ars:
        train_cell("distilled_soft_noaug", syn_x, syn_y, syn_soft, args.soft_label_loss, False, args.seeds, soft_lrs,
                   None)
    # Each round has its own random subset (same images per class): its rates train together.
    for r, seed in enumerate(args.seeds):
        rows = torch.as_tensor(class_balanced_indices(train_y.tolist(), ipc, seed=seed))
        rdm_x, rdm_y = train_x[rows], train_y[rows]
        rdm_soft = soft_of(rdm_x)
        train_cell("random_soft", rdm_x, rdm_y, rdm_soft, args.soft_label_loss, True, [seed], args.learning_rates, r)
        if args.compute_ars:
            train_cell("random_soft_noaug", rdm_x, rdm_y, rdm_soft, args.soft_label_loss, False, [seed],
                       args.learning_rates, r)

    rounds = []
    for r, seed in enumerate(args.seeds):
        row: dict[str, Any] = {"round": r, "seed": seed, "full_data_hard": full["accuracy"]}
        row.update({cell: accuracy[cell][r] for cell in accuracy})
        row.update({f"{cell}_lr": best_lr[cell][r] for cell in best_lr})
        if any(math.isnan(row[c]) for c in ("full_data_hard", "distilled_hard", "distilled_soft", "random_soft")):
            row.update(hlr=math.nan, ior=math.nan, lrs=math.nan)
        else:
            row["hlr"] = hard_label_recovery(full["accuracy"], row["distilled_hard"])
            row["ior"] = improvement_over_random(row["distilled_soft"], row["random_soft"])
            row["lrs"] = label_robust_score(row["hlr"], row["ior"], args.lrs_lambda)
        if args.compute_ars:
            with_gap = row["distilled_soft"] - row["random_soft"]
            without_gap = row["distilled_soft_noaug"] - row["random_soft_noaug"]
            row["ars"] = augmentation_robust_score(with_gap, without_gap, args.ars_lambda) \
                if not (math.isnan(with_gap) or math.isnan(without_gap)) else math.nan
        rounds.append(row)
    scores: dict[str, float] = {}
    for name in ["hlr", "ior", "lrs"] + (["ars"] if args.compute_ars else []) + list(accuracy):
        scores[f"{name}_mean"], scores[f"{name}_std"] = mean_and_std([row[name] for row in rounds])
    scores["full_data_hard"] = full["accuracy"]
    settings = {"protocol": args.to_dict(), "student_arch": student_arch, "student_model_kwargs": student_model_kwargs,
                "ipc": ipc, "num_classes": num_classes, "num_students": len(students),
                "transform": dataclasses.asdict(transform), "vectorized": vectorized}
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
    names = [("hlr", "Hard-label recovery HLR (lower is better)"), ("ior", "Improvement over random IOR"),
             ("lrs", "Label-robust score LRS"), ("ars", "Augmentation-robust score ARS")]
    score_rows = [[label, f"{_pct(s[f'{key}_mean'], 2)} ± {_pct(s[f'{key}_std'], 2)}"]
                  for key, label in names if f"{key}_mean" in s]
    cells = [c for c in CELLS if c in result.rounds[0]]
    round_rows = [[row["seed"], _pct(row["full_data_hard"])] + [f"{_pct(row[c])} (lr {row[f'{c}_lr']})" for c in cells]
                  + [_pct(row.get(k), 2) for k in ("hlr", "ior", "lrs", "ars") if k in row] for row in result.rounds]
    headers = ["seed", "full data, hard"] + [f"{CELLS[c][0]}, {CELLS[c][1]}" for c in cells] + \
        [k.upper() for k in ("hlr", "ior", "lrs", "ars") if k in result.rounds[0]]
    settings = result.settings
    return (
        f"## DD-Ranking scores ({settings['student_arch']}, IPC {settings['ipc']}, {len(result.rounds)} rounds, "
        f"{settings['num_students']} students + the full-data cell)\n\n"
        + markdown_table(["score", "mean ± std (%)"], score_rows)
        + "\n\nPer round: best test accuracy (%) over the learning-rate grid (best rate in brackets), and "
        "scores (%).\n\n"
        + markdown_table(headers, round_rows) + "\n"
    )


def write_ddranking_results(result: DDRankingResult, output_dir: str) -> dict[str, str]:
    """``results.json`` (everything), ``results.csv`` (one row per round), ``results.md`` and ``ddranking.png``."""
    from gift_hf.studies.report import bar_plot, write_results

    files = write_results(output_dir, "ddranking", settings=result.settings, records=result.students,
                          summary=result.rounds, table=ddranking_markdown(result),
                          extra={"scores": result.scores, "full_data": result.full_data})
    summary = [{"training set": "full data", "labels": "hard labels", "mean": 100 * result.scores["full_data_hard"],
                "std": 0.0}]
    for cell, (where, labels) in CELLS.items():
        if f"{cell}_mean" in result.scores:
            summary.append({"training set": where, "labels": labels, "mean": 100 * result.scores[f"{cell}_mean"],
                            "std": 100 * result.scores[f"{cell}_std"]})
    summary = [row for row in summary if not math.isnan(row["mean"])]
    title = (f"DD-Ranking: LRS {_pct(result.scores['lrs_mean'])}%"
             + (f", ARS {_pct(result.scores['ars_mean'])}%" if "ars_mean" in result.scores else "")
             + f" ({result.settings['student_arch']}, IPC {result.settings['ipc']})")
    files["plot"] = bar_plot(summary, "training set", "labels", os.path.join(output_dir, "ddranking.png"), title)
    return files
