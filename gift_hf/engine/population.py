"""K students as one model: what lets ``GIFTTrainer`` train a set of students at once.

An evaluation of a distilled set trains many students on the *same* images: one per seed,
and in DD-Ranking one per learning rate of a grid as well. Small students (ConvNet-D3 on
8×8 to 32×32 images, batches of 10–256) leave most of a GPU or CPU idle, so training them
one after another wastes most of the machine, and every Trainer step has a fixed cost.

:class:`StudentPopulation` holds the K students (each an ordinary student: a
``TimmWrapperForImageClassification`` from :func:`gift_hf.create_model`) in one
``nn.ModuleList``, so to ``transformers.Trainer`` they are one model with K times the
parameters. ``GIFTTrainer`` (:mod:`gift_hf.engine.trainer`) trains it with the Trainer's own
loop, optimizer, scheduler, mixed precision, accelerate, logging, checkpoints and resume;
each optimizer and schedule in ``torch.optim`` works element by element, so the students
stay K separate runs. What keeps them separate:

- **initial weights**: student ``k`` is built under its own seed (:meth:`StudentPopulation.build`);
- **batch order and augmentation draws**: ``GIFTTrainer`` gives student ``k`` its own batches
  (its seed's permutation) and its own augmenter (its seed);
- **learning rate**: one optimizer parameter group per student when ``learning_rates`` is set
  (the scheduler scales every group by the same factor);
- **divergence**: a student whose loss turns non-finite is dropped from the loss (no gradient
  from then on) and reported as failed, on the device, with no host read; the others train on.

A step feeds ``(K, B, C, H, W)`` images (student ``k``'s batch is row ``k``) and gets
``(K, B, classes)`` logits; an evaluation feeds one ``(B, C, H, W)`` batch to every student.
The teacher relabels all K·B images in one forward. Two ways to run the K forwards:
``"vmap"`` (``torch.func.vmap`` over the stacked weights: one batched call, grouped
convolutions) and ``"loop"`` (each student on its own batch; the way for batch norm, whose
running statistics vmap cannot update per student).
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap
from transformers.modeling_outputs import ImageClassifierOutput

__all__ = ["FORWARD_MODES", "StudentPopulation", "batch_norm_layers"]

Tensor = torch.Tensor

FORWARD_MODES = ("auto", "vmap", "loop")


def batch_norm_layers(model: nn.Module) -> list[str]:
    """Names of the layers whose running statistics a training step updates (batch norm)."""
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    return [name for name, m in model.named_modules() if isinstance(m, norms) and m.track_running_stats]


def _random_layers(model: nn.Module) -> list[str]:
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)) and m.p > 0
    ]


class StudentPopulation(nn.Module):
    """K students of one architecture, trained together as one model.

    Args:
        students: the K students (same architecture and shapes).
        seeds: student ``k``'s seed: its initial weights (when built by :meth:`build`), batch
            order and augmentation draws.
        learning_rates: one learning rate per student (a grid), or None for the config's.
        forward: ``"vmap"``, ``"loop"`` or ``"auto"``: vmap on CUDA and for images of at most
            16×16 pixels on CPUs (where grouped convolutions of larger images are slower than
            K plain ones), loop for batch-norm or dropout students.
    """

    def __init__(
        self,
        students: Sequence[nn.Module],
        seeds: Sequence[int],
        learning_rates: Sequence[float] | None = None,
        forward: str = "auto",
    ) -> None:
        super().__init__()
        if not students:
            raise ValueError("students: got none; expected at least one student")
        if len(seeds) != len(students):
            raise ValueError(f"seeds: got {len(seeds)} for {len(students)} students; expected one seed per student")
        if learning_rates is not None:
            if len(learning_rates) != len(students):
                raise ValueError(
                    f"learning_rates: got {len(learning_rates)} for {len(students)} students; expected one per student"
                )
            bad = [lr for lr in learning_rates if not (float(lr) > 0 and float(lr) < float("inf"))]
            if bad:
                raise ValueError(f"learning_rates: got {bad[0]!r}; expected positive finite numbers")
        if forward not in FORWARD_MODES:
            raise ValueError(f"forward: got {forward!r}; expected one of {FORWARD_MODES}")
        shapes = [[tuple(p.shape) for p in s.parameters()] for s in students]
        if any(s != shapes[0] for s in shapes):
            raise ValueError("students: expected K students of one architecture (their parameter shapes differ)")
        self.students = nn.ModuleList(students)
        self.seeds = [int(s) for s in seeds]
        self.learning_rates = [float(lr) for lr in learning_rates] if learning_rates is not None else None
        self.forward_mode = forward
        # Layers vmap cannot run per student (running statistics, random draws): found once, not every step.
        self._per_student_layers = batch_norm_layers(students[0]) + _random_layers(students[0])
        config = getattr(students[0], "config", None)
        self.num_classes = int(config.num_labels) if config is not None else getattr(students[0], "num_classes", None)
        # A weightless copy of one student for torch.func.functional_call (vmap forward).
        self._base = [copy.deepcopy(students[0]).to("meta")]  # a list: not a submodule, never saved

    @classmethod
    def build(
        cls,
        build: Callable[[], nn.Module],
        seeds: Sequence[int],
        learning_rates: Sequence[float] | None = None,
        forward: str = "auto",
    ) -> "StudentPopulation":
        """Student ``k`` built by ``build()`` under ``seeds[k]`` (the caller's random state is left as it was)."""
        from transformers import set_seed

        students = []
        with torch.random.fork_rng(devices=[]):
            for seed in seeds:
                set_seed(int(seed))  # as a separate run seeds itself before building its model
                students.append(build())
        return cls(students, seeds, learning_rates, forward)

    def __len__(self) -> int:
        return len(self.students)

    def extra_repr(self) -> str:
        return f"seeds={self.seeds}, learning_rates={self.learning_rates}, forward={self.forward_mode!r}"

    # ---------------------------------------------------------------------------- forward
    def forward_mode_for(self, pixel_values: Tensor) -> str:
        """The forward :meth:`forward` uses for these images (``forward="auto"`` resolved)."""
        if self._per_student_layers:
            if self.forward_mode == "vmap":
                raise ValueError(
                    f"forward: got 'vmap' but the students have {self._per_student_layers[0]!r} (batch norm or "
                    "dropout), which vmap cannot run per student; expected 'loop' or 'auto'"
                )
            return "loop"
        if self.forward_mode != "auto":
            return self.forward_mode
        small = pixel_values.shape[-1] * pixel_values.shape[-2] <= 16 * 16
        return "vmap" if pixel_values.is_cuda or small else "loop"

    def _stacked(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        # Stacked every call (a differentiable copy): each student's own parameters get their gradients.
        per_student = [dict(s.named_parameters()) for s in self.students]
        buffers = [dict(s.named_buffers()) for s in self.students]
        params = {name: torch.stack([p[name] for p in per_student]) for name in per_student[0]}
        stacked_buffers = {name: torch.stack([b[name] for b in buffers]) for name in buffers[0]}
        return params, stacked_buffers

    def forward(self, pixel_values: Tensor, labels: Tensor | None = None, **kwargs) -> ImageClassifierOutput:
        """Logits ``(K, B, classes)``: of ``(K, B, C, H, W)`` images (batch ``k`` to student ``k``) or of
        one ``(B, C, H, W)`` batch shown to every student."""
        shared = pixel_values.dim() == 4
        k = len(self.students)
        if not shared and pixel_values.shape[0] != k:
            raise ValueError(
                f"pixel_values: got shape {tuple(pixel_values.shape)}; expected ({k}, B, C, H, W) or (B, C, H, W)"
            )
        if self.forward_mode_for(pixel_values) == "loop":
            logits = torch.stack(
                [
                    s(pixel_values=pixel_values if shared else pixel_values[i]).logits
                    for i, s in enumerate(self.students)
                ]
            )
            return ImageClassifierOutput(logits=logits)
        base = self._base[0]
        base.train(self.training)
        params, buffers = self._stacked()

        def one(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(base, (p, b), (), {"pixel_values": x}).logits

        run = vmap(one, in_dims=(0, 0, None if shared else 0), randomness="error")
        return ImageClassifierOutput(logits=run(params, buffers, pixel_values))

    # ----------------------------------------------------------------------------- export
    def student(self, index: int) -> nn.Module:
        """Student ``index`` as an ordinary model (shares its weights with the population)."""
        return self.students[index]
