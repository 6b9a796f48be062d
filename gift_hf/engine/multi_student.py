"""Many students at once: K students that differ only in seed and learning rate, trained as one model.

Evaluations of a distilled set train many students on the *same* images: one per seed,
and in DD-Ranking one per learning rate of a grid as well. Small students (ConvNet-D3 on
8×8 or 32×32 images, batches of 10–256) leave most of a CPU or GPU idle, so training them
one after another wastes most of the machine. :func:`train_students` stacks the K
students' weights (``torch.func.stack_module_state``) and runs them as one vectorised
model (``torch.func.functional_call`` under ``torch.func.vmap``):

- **per-student everything**: initial weights (student ``k`` is created under its seed),
  batch order (its own ``torch.Generator`` seeded with its seed), augmentation draws (its
  own :class:`~gift_hf.data.augment.BatchAugmenter` seeded with its seed), learning rate and
  optimizer state (a vectorised SGD / Adam / AdamW over the stacked weights with one
  learning rate per student, the same arithmetic as ``torch.optim``);
- **one teacher forward**: the K augmented batches are concatenated and relabelled by
  the teacher in one ``(K·B)``-image forward;
- **the same step as GIFTTrainer**: augmentation (:class:`~gift_hf.data.augment.BatchAugmenter`'s
  draws, applied to the K batches in one call per op by :func:`augment_batches`), the
  loss's targets (:func:`gift_hf.engine.step.loss_targets`) and the loss
  (:func:`gift_hf.engine.step.per_sample_loss`, one call of a :func:`gift_hf.engine.losses.get_loss`
  loss on the K·B samples) are the functions ``GIFTTrainer.compute_loss`` calls, and the
  plain one-student loop (``vectorized=False``) calls them too, so nothing is written twice
  and the paths agree to floating-point tolerance (``tests/test_multi_student.py``);
- **no host synchronisation per step**: a student whose loss turns NaN/inf is marked
  failed on the device and reported as such (not scored), the others train on.

Batch norm is refused under ``forward="vmap"``: ``vmap`` cannot update running statistics
per student. Use instance norm (``norm="instancenorm"``, the ConvNet default),
``forward="loop"`` (each student's statistics are updated in place in the stacked buffers;
the default for batch-norm students) or ``vectorized=False``. Random layers (dropout) are refused too (``randomness="error"``),
since student ``k``'s draws could not equal those of a separate run.

Why a second training path rather than ``GIFTTrainer``: the Trainer owns one model, one
optimizer and one data loader per process; K students would need K of each, which is K
separate runs with K times the per-step overhead that dominates small students. The
students of an evaluation are short, checkpoint-free and scored by accuracy only, which
this loop covers while everything that decides what a student learns (augmentation ops,
targets, loss, initial weights) is the Trainer's own code (``docs/ddranking.md``, "Why a
second training path, and one step"). :func:`gift_hf.evaluation.evaluate.evaluate_distilled`, the
studies and :func:`gift_hf.evaluation.ddranking.ddranking_scores` train their students here whenever
their settings allow.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from gift_hf.data.augment import AUGMENTATION_MODES, MIX_MODES, BatchAugmenter, augment_stacked, parse_strategy
from gift_hf.engine.losses import LOSSES, get_loss
from gift_hf.models.modeling import create_model
from gift_hf.engine.step import loss_targets, per_sample_loss

__all__ = [
    "MULTI_OPTIMIZERS",
    "MULTI_SCHEDULES",
    "StudentRun",
    "StudentTrainingArgs",
    "augment_batches",
    "train_students",
]

Tensor = torch.Tensor

MULTI_OPTIMIZERS = ("sgd", "adam", "adamw")
"""Optimizers :func:`train_students` vectorises (same arithmetic as ``torch.optim``)."""
MULTI_SCHEDULES = ("constant", "step", "multistep", "cosine")
"""Learning-rate schedules, stepped once per epoch: ``step`` multiplies by ``gamma`` every
``step_size`` epochs, ``multistep`` by ``gamma`` at each of ``milestones`` (fractions of
training, rounded to epochs, as :func:`gift_hf.evaluation.evaluate.build_scheduler` places them),
``cosine`` anneals to 0 over the epochs (``CosineAnnealingLR``)."""


@dataclass
class StudentTrainingArgs:
    """How the K students are trained; shared by all of them (they differ only in seed and learning rate)."""

    loss: str = field(default="ce", metadata={"help": f"Training loss, one of {sorted(LOSSES)}."})
    loss_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "The loss's parameters (temperature, gamma, ...)."}
    )
    optimizer: str = field(default="sgd", metadata={"help": f"One of {MULTI_OPTIMIZERS}."})
    weight_decay: float = field(default=5e-4, metadata={"help": "L2 (sgd, adam) or decoupled (adamw) weight decay."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum."})
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"help": "Adam/AdamW betas."})
    eps: float = field(default=1e-8, metadata={"help": "Adam/AdamW epsilon."})
    epochs: int = field(default=300, metadata={"help": "Epochs over the training set."})
    batch_size: int = field(default=256, metadata={"help": "Training batch size (the last batch may be smaller)."})
    schedule: str = field(default="step", metadata={"help": f"Learning-rate schedule, one of {MULTI_SCHEDULES}."})
    step_size: Optional[int] = field(
        default=None, metadata={"help": "step: epochs between decays; None = half of training."}
    )
    gamma: float = field(default=0.1, metadata={"help": "step, multistep: decay factor."})
    milestones: list[float] = field(
        default_factory=lambda: [0.5],
        metadata={"help": "multistep: fractions of training at which the rate is multiplied by gamma."},
    )
    augmentation: str = field(default="none", metadata={"help": "DSA ops joined by '_' or 'none' (gift_hf.data.augment)."})
    augmentation_mode: str = field(default="single", metadata={"help": f"One of {AUGMENTATION_MODES}."})
    mix: str = field(default="none", metadata={"help": f"CutMix/MixUp, one of {MIX_MODES}."})
    mix_prob: float = field(default=1.0, metadata={"help": "Probability that a batch is mixed."})
    mix_beta: float = field(default=1.0, metadata={"help": "β of the mixing coefficient λ ~ Beta(β, β)."})
    eval_every: int = field(default=20, metadata={"help": "Evaluate every this many epochs."})
    eval_start_fraction: float = field(
        default=0.0,
        metadata={"help": "Evaluate only after this fraction of training (0.8 = the last 20%); the last epoch is "
                  "always evaluated if no other is."},
    )
    eval_batch_size: int = field(default=512, metadata={"help": "Batch size on the evaluation images."})

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss: got {self.loss!r}; expected one of {sorted(LOSSES)}")
        if self.optimizer not in MULTI_OPTIMIZERS:
            raise ValueError(f"optimizer: got {self.optimizer!r}; expected one of {MULTI_OPTIMIZERS}")
        if self.schedule not in MULTI_SCHEDULES:
            raise ValueError(f"schedule: got {self.schedule!r}; expected one of {MULTI_SCHEDULES}")
        for name in ("epochs", "batch_size", "eval_every", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: got {value!r}; expected an integer >= 1")
        if self.step_size is not None and self.step_size < 1:
            raise ValueError(f"step_size: got {self.step_size}; expected >= 1 epochs or None (half of training)")
        self.milestones = [float(m) for m in self.milestones]
        if any(not 0 < m < 1 for m in self.milestones) or self.milestones != sorted(self.milestones):
            raise ValueError(f"milestones: got {self.milestones}; expected increasing fractions in (0, 1)")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma: got {self.gamma}; expected a factor in (0, 1]")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay: got {self.weight_decay}; expected a finite number >= 0")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum: got {self.momentum}; expected a value in [0, 1)")
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas: got {self.betas}; expected two values in [0, 1)")
        if not 0 <= self.eval_start_fraction < 1:
            raise ValueError(f"eval_start_fraction: got {self.eval_start_fraction}; expected a fraction in [0, 1)")
        parse_strategy(self.augmentation)
        if self.augmentation_mode not in AUGMENTATION_MODES:
            raise ValueError(f"augmentation_mode: got {self.augmentation_mode!r}; expected one of {AUGMENTATION_MODES}")
        if self.mix not in MIX_MODES:
            raise ValueError(f"mix: got {self.mix!r}; expected one of {MIX_MODES}")
        get_loss(self.loss, **self.loss_kwargs)  # validates the loss's parameters

    def replace(self, **changes: Any) -> "StudentTrainingArgs":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # --------------------------------------------------------------- derived values
    def lr_factor(self, epoch: int) -> float:
        """Multiplier of the base learning rate during (0-based) ``epoch``."""
        if self.schedule == "step":
            step = self.step_size or max(1, self.epochs // 2)
            return self.gamma ** (epoch // step)
        if self.schedule == "multistep":
            return self.gamma ** sum(epoch >= max(1, round(m * self.epochs)) for m in self.milestones)
        if self.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))
        return 1.0

    def eval_epochs(self) -> list[int]:
        """The (0-based) epochs after which students are evaluated.

        Every ``eval_every``-th epoch once more than ``eval_start_fraction`` of the epochs are
        done (DD-Ranking: every 20th epoch of the last 20%); the last epoch if none qualifies.
        """
        epochs = [e for e in range(self.epochs)
                  if (e + 1) % self.eval_every == 0 and e + 1 > self.eval_start_fraction * self.epochs]
        return epochs or [self.epochs - 1]


@dataclass
class StudentRun:
    """One trained student: its seed and learning rate, and its accuracy at every evaluation.

    ``finite`` is False when its loss became NaN/inf (a diverged student): it is
    reported as failed and not scored (``best_accuracy`` is NaN); ``diverged_step`` is
    the (1-based) optimizer step whose loss was the first non-finite one.
    """

    seed: int
    learning_rate: float
    eval_epochs: list[int]
    accuracies: list[float]
    finite: bool
    model: Optional[nn.Module] = field(default=None, repr=False)
    diverged_step: Optional[int] = None

    @property
    def failed(self) -> bool:
        return not self.finite

    @property
    def best_accuracy(self) -> float:
        return max(self.accuracies) if self.finite and self.accuracies else math.nan

    @property
    def final_accuracy(self) -> float:
        return self.accuracies[-1] if self.finite and self.accuracies else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "learning_rate": self.learning_rate,
            "eval_epochs": [e + 1 for e in self.eval_epochs],  # 1-based, as logged
            "accuracies": self.accuracies,
            "best_accuracy": self.best_accuracy,
            "final_accuracy": self.final_accuracy,
            "failed": self.failed,
            "diverged_step": self.diverged_step,
        }


# ----------------------------------------------------------------------- shared step
def augment_batches(
    augmenters: Sequence[BatchAugmenter | None],
    images: Tensor,
    labels: Tensor,
    soft_labels: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Augment each student's batch with its own augmenter: ``(K, B, …)`` in, ``(K, B, …)`` out.

    Each augmenter draws its own parameters, then the batches are transformed in one call
    per op (:func:`gift_hf.data.augment.augment_stacked`). Labels come back as class ids
    ``(K, B)``, or as distributions ``(K, B, C)`` when any student's batch was mixed.
    """
    return augment_stacked(augmenters, images, labels, soft_labels)


# ----------------------------------------------------------------- building blocks
def _new_student(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """A student whose initial weights depend on ``seed`` only (the caller's RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _batches(generator: torch.Generator, n: int, batch_size: int) -> list[Tensor]:
    """One epoch of shuffled row indices in batches (the last may be smaller)."""
    return list(torch.randperm(n, generator=generator).split(batch_size))


def _slice(tensors: dict[str, Tensor], index: int) -> dict[str, Tensor]:
    return {name: t[index] for name, t in tensors.items()}


def _batch_norm_layers(model: nn.Module) -> list[str]:
    """Names of the layers whose running statistics a training step updates (batch norm)."""
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    return [name for name, m in model.named_modules() if isinstance(m, norms) and m.track_running_stats]


def _check_vectorizable(model: nn.Module) -> None:
    bad = _batch_norm_layers(model)
    if bad:
        raise ValueError(
            f"model_kwargs: the students have batch norm ({bad[0]!r}…), whose running statistics cannot be updated "
            "per student under vmap; use norm='instancenorm' (or 'none'), forward='loop', or vectorized=False to "
            "train them one after another"
        )


def _mark_diverged(finite: Tensor, diverged_at: Tensor, losses: Tensor, step: int) -> None:
    """On the device (no host read): students whose loss is non-finite now fail, and the
    first such step is kept in ``diverged_at`` (0: never)."""
    ok = torch.isfinite(losses.detach())
    diverged_at.masked_fill_(finite & ~ok, step)
    finite &= ok


def _accuracy_counts(logits: Tensor, labels: Tensor) -> Tensor:
    """Correct predictions per student: logits ``(K, B, C)``, labels ``(B,)`` → ``(K,)``."""
    return (logits.argmax(dim=-1) == labels.unsqueeze(0)).sum(dim=1)


class _StackedOptimizer:
    """SGD / Adam / AdamW over stacked weights ``(K, …)`` with one learning rate per student.

    The arithmetic is that of ``torch.optim`` (single-tensor path, default options), so
    student ``k`` gets exactly the update a separate ``torch.optim`` optimizer would give.
    """

    def __init__(self, params: dict[str, Tensor], args: StudentTrainingArgs) -> None:
        self.args = args
        self.step_count = 0
        self.state: dict[str, dict[str, Tensor]] = {}
        for name, p in params.items():
            if args.optimizer == "sgd":
                self.state[name] = {"momentum": torch.zeros_like(p)}
            else:
                self.state[name] = {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}

    @torch.no_grad()
    def step(self, params: dict[str, Tensor], grads: dict[str, Tensor], lr: Tensor) -> None:
        args = self.args
        self.step_count += 1
        wd = args.weight_decay
        beta1, beta2 = args.betas
        for name, p in params.items():
            g = grads[name]
            lr_k = lr.view(-1, *([1] * (p.dim() - 1)))
            state = self.state[name]
            if args.optimizer == "sgd":
                if wd:
                    g = g.add(p, alpha=wd)
                if args.momentum:
                    buf = state["momentum"]
                    if self.step_count == 1:
                        buf.copy_(g)
                    else:
                        buf.mul_(args.momentum).add_(g)
                    g = buf
                p.sub_(lr_k * g)
                continue
            if args.optimizer == "adamw":
                p.mul_(1 - lr_k * wd)
            elif wd:
                g = g.add(p, alpha=wd)
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(g, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            bias_correction1 = 1 - beta1**self.step_count
            bias_correction2_sqrt = (1 - beta2**self.step_count) ** 0.5
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(args.eps)
            p.sub_((lr_k / bias_correction1) * exp_avg / denom)


def _torch_optimizer(model: nn.Module, lr: float, args: StudentTrainingArgs) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if args.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=args.momentum, weight_decay=args.weight_decay)
    if args.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=args.betas, eps=args.eps, weight_decay=args.weight_decay)
    return torch.optim.AdamW(params, lr=lr, betas=args.betas, eps=args.eps, weight_decay=args.weight_decay)


def _check_inputs(
    images: Tensor, labels: Tensor, soft_labels: Tensor | None, eval_images: Tensor, eval_labels: Tensor,
    seeds: Sequence[int], learning_rates: Sequence[float],
) -> None:
    if images.dim() != 4 or images.shape[0] < 1:
        raise ValueError(f"train_images: got shape {tuple(images.shape)}; expected (N >= 1, C, H, W)")
    if labels.shape != (images.shape[0],) or labels.dtype.is_floating_point:
        raise ValueError(f"train_labels: got {tuple(labels.shape)} {labels.dtype}; expected ({images.shape[0]},) "
                         "integer class ids")
    if soft_labels is not None and (soft_labels.dim() != 2 or soft_labels.shape[0] != images.shape[0]):
        raise ValueError(f"soft_labels: got shape {tuple(soft_labels.shape)}; expected ({images.shape[0]}, "
                         "num_classes) logits")
    if eval_images.dim() != 4 or tuple(eval_images.shape[1:]) != tuple(images.shape[1:]):
        raise ValueError(f"eval_images: got shape {tuple(eval_images.shape)}; expected (M, "
                         f"{', '.join(map(str, images.shape[1:]))}) like the training images")
    if eval_labels.shape != (eval_images.shape[0],):
        raise ValueError(f"eval_labels: got shape {tuple(eval_labels.shape)}; expected ({eval_images.shape[0]},)")
    if not seeds:
        raise ValueError("seeds: got none; expected one seed per student")
    if len(learning_rates) != len(seeds):
        raise ValueError(f"learning_rates: got {len(learning_rates)} for {len(seeds)} seeds; expected one learning "
                         "rate per student (repeat values to share one)")
    bad = [lr for lr in learning_rates if not (lr > 0 and math.isfinite(lr))]
    if bad:
        raise ValueError(f"learning_rates: got {bad[0]!r}; expected positive numbers")


# ------------------------------------------------------------------------ training
def train_students(
    model_name: str,
    model_kwargs: dict[str, Any] | None,
    train_images: Tensor,
    train_labels: Tensor,
    eval_images: Tensor,
    eval_labels: Tensor,
    *,
    seeds: Sequence[int],
    learning_rates: Sequence[float],
    args: StudentTrainingArgs | None = None,
    num_classes: int | None = None,
    teacher: nn.Module | None = None,
    soft_labels: Tensor | None = None,
    soft_label_kind: str = "logits",
    device: str | torch.device | None = None,
    vectorized: bool = True,
    forward: str | None = None,
    return_models: bool = False,
    progress: bool = False,
    desc: str = "students",
) -> list[StudentRun]:
    """Train K students on one training set and evaluate them; student ``k`` has ``seeds[k]`` and ``learning_rates[k]``.

    Args:
        model_name: a timm architecture (ours: ``gift_convnet_d3`` …), built with
            :func:`gift_hf.create_model` for the images' channels and size.
        model_kwargs: extra ``create_model`` arguments (e.g. ``{"width": 16}``).
        train_images: ``(N, C, H, W)`` normalised training images (on any device).
        train_labels: ``(N,)`` class ids.
        eval_images: ``(M, C, H, W)`` evaluation images, normalised the same way.
        eval_labels: ``(M,)`` class ids.
        seeds: one per student: initial weights, batch order and augmentation draws.
        learning_rates: one per student.
        args: the shared recipe (:class:`StudentTrainingArgs`).
        num_classes: number of classes (default: from the labels).
        teacher: relabels each augmented batch online (soft-label losses), all K batches in one forward.
        soft_labels: ``(N, C)`` stored soft labels instead of a teacher (mixed with the images); when
            given, the teacher is not run.
        soft_label_kind: what ``soft_labels`` hold: ``"logits"`` or ``"probabilities"``
            (used as ``log p``, as :class:`~gift_hf.GIFTTrainer` does).
        device: where to train (default: the training images' device).
        vectorized: train the K students together (``vmap``); False trains them one after
            another with ``torch.optim`` (the reference, and the way for batch-norm students).
        forward: how students trained together run their model: ``"vmap"`` (one batched
            call: grouped convolutions) or ``"loop"`` (the stacked weights sliced per
            student). Default: ``"vmap"`` on CUDA and, on CPUs, for images of at most
            16×16 pixels (there it is 3× faster than the loop at batch 10, 8×8; at 32×32
            the CPU's grouped convolutions are slower than K plain ones, so ``"loop"``);
            ``"loop"`` for batch-norm students (whose running statistics ``vmap`` cannot
            update). Everything else (batches,
            augmentation, the teacher, the loss, the optimizer) is batched either way.
        return_models: attach each trained student (a ``GIFTClassifier``) to its result.
        progress: a tqdm bar over the training steps.

    Returns:
        One :class:`StudentRun` per student, in the order of ``seeds``.
    """
    args = args or StudentTrainingArgs()
    _check_inputs(train_images, train_labels, soft_labels, eval_images, eval_labels, seeds, learning_rates)
    device = torch.device(device) if device is not None else train_images.device
    num_classes = num_classes or int(max(int(train_labels.max()), int(eval_labels.max()))) + 1
    channels, height = train_images.shape[1], train_images.shape[2]
    img_size = height if train_images.shape[2] == train_images.shape[3] else tuple(train_images.shape[2:])
    kwargs = dict(model_kwargs or {})

    def build() -> nn.Module:
        return create_model(model_name, num_classes, in_chans=channels, img_size=img_size, **kwargs)

    loss_fn = get_loss(args.loss, **args.loss_kwargs)
    if loss_fn.needs_teacher and teacher is None and soft_labels is None:
        raise ValueError(f"loss {args.loss!r} needs soft labels: pass teacher= or soft_labels=")
    if soft_label_kind not in ("logits", "probabilities"):
        raise ValueError(f"soft_label_kind: got {soft_label_kind!r}; expected 'logits' or 'probabilities'")
    stored = soft_labels is not None and loss_fn.needs_teacher
    # stored soft labels win over a teacher: it is not run at all then
    teacher = teacher.to(device).eval() if teacher is not None and not stored else None
    data = _Data(
        train_images.to(device), train_labels.to(device).long(),
        soft_labels.to(device) if stored else None,
        eval_images.to(device), eval_labels.to(device).long(), soft_label_kind,
    )
    if forward not in ("vmap", "loop", None):
        raise ValueError(f"forward: got {forward!r}; expected 'vmap', 'loop' or None (by device, image size and norm)")
    common = (build, data, list(seeds), [float(lr) for lr in learning_rates], args, loss_fn, teacher, num_classes,
              device, return_models, progress, desc)
    if vectorized:
        return _train_vectorized(*common, forward=forward)
    return _train_one_by_one(*common)


@dataclass
class _Data:
    images: Tensor
    labels: Tensor
    soft_labels: Tensor | None
    eval_images: Tensor
    eval_labels: Tensor
    soft_label_kind: str = "logits"


def _augmenter(args: StudentTrainingArgs, seed: int, num_classes: int) -> BatchAugmenter | None:
    if not parse_strategy(args.augmentation) and args.mix == "none":
        return None
    return BatchAugmenter(args.augmentation, mode=args.augmentation_mode, mix=args.mix, mix_prob=args.mix_prob,
                          mix_beta=args.mix_beta,
                          num_classes=num_classes, seed=seed)


def _gather(data: _Data, idx: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    """Rows ``idx`` ``(K, B)`` of the training set: images ``(K, B, C, H, W)``, labels, soft labels."""
    idx = idx.to(data.images.device)
    soft = data.soft_labels[idx] if data.soft_labels is not None else None
    return data.images[idx], data.labels[idx], soft


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)


def _train_vectorized(build, data: _Data, seeds, lrs, args, loss_fn, teacher, num_classes, device, return_models,
                      progress, desc, forward: str | None = None) -> list[StudentRun]:
    k = len(seeds)
    students = [_new_student(build, s).to(device) for s in seeds]
    if forward is None:
        small = data.images.shape[2] * data.images.shape[3] <= 16 * 16
        forward = "vmap" if (device.type == "cuda" or small) and not _batch_norm_layers(students[0]) else "loop"
    if forward == "vmap":
        _check_vectorizable(students[0])
    params, buffers = stack_module_state(students)
    params = {name: p.detach().clone().requires_grad_(True) for name, p in params.items()}
    base = copy.deepcopy(students[0]).to("meta")
    base.train()

    def logits_of(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(base, (p, b), (), {"pixel_values": x}).logits

    if forward == "vmap":
        train_forward = vmap(logits_of, in_dims=(0, 0, 0), randomness="error")
        eval_forward = vmap(logits_of, in_dims=(0, 0, None), randomness="error")
    else:
        # The stacked weights sliced per student: on CPU the K small convolutions run faster
        # one after another than as vmap's grouped convolution (everything else stays batched).
        def train_forward(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
            return torch.stack([logits_of(_slice(p, i), _slice(b, i), x[i]) for i in range(k)])

        def eval_forward(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
            return torch.stack([logits_of(_slice(p, i), _slice(b, i), x) for i in range(k)])

    optimizer = _StackedOptimizer(params, args)
    base_lrs = torch.tensor(lrs, dtype=torch.float32, device=device)
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    augmenters = [_augmenter(args, s, num_classes) for s in seeds]
    finite = torch.ones(k, dtype=torch.bool, device=device)
    diverged_at = torch.zeros(k, dtype=torch.long, device=device)
    eval_epochs = args.eval_epochs()
    history: list[Tensor] = []
    n = data.images.shape[0]
    steps_per_epoch = math.ceil(n / args.batch_size)
    with _progress(steps_per_epoch * args.epochs, progress, desc) as bar:
        for epoch in range(args.epochs):
            lr = base_lrs * args.lr_factor(epoch)
            orders = [_batches(g, n, args.batch_size) for g in generators]
            for step in range(steps_per_epoch):
                idx = torch.stack([order[step] for order in orders])
                x, y, s = _gather(data, idx)
                x, y, s = augment_batches(augmenters, x, y, s)
                targets = loss_targets(loss_fn, x, s, teacher, data.soft_label_kind)
                per_student = per_sample_loss(loss_fn, train_forward(params, buffers, x), targets, y).mean(dim=1)
                _mark_diverged(finite, diverged_at, per_student, epoch * steps_per_epoch + step + 1)
                grads = torch.autograd.grad(per_student.sum(), list(params.values()))
                optimizer.step(params, dict(zip(params, grads)), lr)
                bar.update(1)
            if epoch in eval_epochs:
                base.eval()
                history.append(_evaluate(lambda x: eval_forward(params, buffers, x), data, args.eval_batch_size))
                base.train()
    accuracies = torch.stack(history).T.tolist() if history else [[] for _ in seeds]
    finite_list, diverged_list = finite.tolist(), diverged_at.tolist()
    runs = []
    for i, (seed, lr) in enumerate(zip(seeds, lrs)):
        model = None
        if return_models:
            model = students[i]
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.copy_(params[name][i])
                for name, b in model.named_buffers():
                    b.copy_(buffers[name][i])
        runs.append(StudentRun(int(seed), lr, eval_epochs, accuracies[i], bool(finite_list[i]), model,
                               diverged_list[i] or None))
    return runs


@torch.no_grad()
def _evaluate(forward: Callable[[Tensor], Tensor], data: _Data, batch_size: int) -> Tensor:
    """Accuracy of every student ``(K,)`` on the evaluation images (kept on the device)."""
    correct = None
    for start in range(0, data.eval_images.shape[0], batch_size):
        logits = forward(data.eval_images[start:start + batch_size])
        counts = _accuracy_counts(logits, data.eval_labels[start:start + batch_size])
        correct = counts if correct is None else correct + counts
    return correct.double() / data.eval_images.shape[0]


def _train_one_by_one(build, data: _Data, seeds, lrs, args, loss_fn, teacher, num_classes, device, return_models,
                      progress, desc) -> list[StudentRun]:
    """The plain loop: one model, ``torch.optim`` and ``LambdaLR``, one student after another."""
    eval_epochs = args.eval_epochs()
    n = data.images.shape[0]
    steps_per_epoch = math.ceil(n / args.batch_size)
    runs = []
    with _progress(steps_per_epoch * args.epochs * len(seeds), progress, desc) as bar:
        for seed, lr in zip(seeds, lrs):
            model = _new_student(build, seed).to(device)
            optimizer = _torch_optimizer(model, lr, args)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, args.lr_factor)
            generator = torch.Generator().manual_seed(int(seed))
            augmenters = [_augmenter(args, seed, num_classes)]
            finite = torch.ones(1, dtype=torch.bool, device=device)
            diverged_at = torch.zeros(1, dtype=torch.long, device=device)
            history: list[Tensor] = []
            global_step = 0

            def forward(x: Tensor) -> Tensor:
                return model(pixel_values=x).logits.unsqueeze(0)

            for epoch in range(args.epochs):
                model.train()
                for batch in _batches(generator, n, args.batch_size):
                    x, y, s = _gather(data, batch.unsqueeze(0))
                    x, y, s = augment_batches(augmenters, x, y, s)
                    targets = loss_targets(loss_fn, x, s, teacher, data.soft_label_kind)
                    logits = model(pixel_values=x[0]).logits.unsqueeze(0)
                    loss = per_sample_loss(loss_fn, logits, targets, y).mean(dim=1)
                    global_step += 1
                    _mark_diverged(finite, diverged_at, loss, global_step)
                    optimizer.zero_grad(set_to_none=True)
                    loss.sum().backward()
                    optimizer.step()
                    bar.update(1)
                scheduler.step()
                if epoch in eval_epochs:
                    model.eval()
                    history.append(_evaluate(forward, data, args.eval_batch_size))
            accuracies = torch.cat(history).tolist() if history else []
            runs.append(StudentRun(int(seed), lr, eval_epochs, accuracies, bool(finite.item()),
                                   model if return_models else None, int(diverged_at.item()) or None))
    return runs
