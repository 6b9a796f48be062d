"""DD-Ranking's tensor API: score a distilled set given as an image tensor.

DD-Ranking's users call ``LabelRobustScoreSoft(config).compute_metrics(image_tensor,
soft_labels, syn_lr)`` (and its hard-label twin ``LabelRobustScoreHard``). The classes here
take the same call: the images become a ``datasets.Dataset`` (``pixel_values`` as given,
labels in DD-Ranking's class order: the first ``ipc`` images are class 0, the next class 1,
…) and :func:`gift_hf.evaluation.ddranking.ddranking_scores` scores it against the real
data of the config. Scores are fractions (the Python API's convention; reports show percent).

Example:
    >>> scorer = LabelRobustScoreSoft(DDRankingConfig(real_train=data["train"], real_test=data["test"],
    ...                                               teacher="outputs/teacher"))
    >>> scorer.compute_metrics(images)["label_robust_score_mean"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import numpy as np
import torch
from datasets import Array3D, ClassLabel, Dataset, Features, Sequence, Value

from gift_hf.data.images import ImageTransform
from gift_hf.engine.config import GIFTConfig, protocol_config
from gift_hf.evaluation.ddranking import DDRankingArguments, DDRankingResult, ddranking_scores

__all__ = ["DDRankingConfig", "LabelRobustScoreHard", "LabelRobustScoreSoft", "tensor_dataset"]


@dataclass
class DDRankingConfig:
    """What DD-Ranking's ``Config`` holds, for the tensor API: the real data, the teacher, the
    students and the protocol (:class:`~gift_hf.evaluation.ddranking.DDRankingArguments`)."""

    real_train: Dataset = field(metadata={"help": "The real training split (full-data cell, random subsets)."})
    real_test: Dataset = field(metadata={"help": "The real test split every student is scored on."})
    teacher: Optional[Any] = field(
        default=None,
        metadata={"help": "The soft-label teacher (instance, folder or Hub id); the hard mode needs none."},
    )
    args: Optional[DDRankingArguments] = field(
        default=None,
        metadata={"help": "DD-Ranking's settings: rate grid, rounds, cells (default: DDRankingArguments())."},
    )
    student_config: Optional[GIFTConfig] = field(
        default=None,
        metadata={
            "help": "How every student trains (default: the 'ddranking' protocol, DD-Ranking's "
            "CIFAR-10 settings, soft labels stored once)."
        },
    )
    num_classes: Optional[int] = field(
        default=None, metadata={"help": "Number of classes (default: the real data's ClassLabel)."}
    )
    student_arch: Optional[str] = field(
        default=None, metadata={"help": "Students' timm architecture (default: the teacher's)."}
    )
    student_model_kwargs: Optional[dict] = field(default=None, metadata={"help": "Students' create_model arguments."})
    transform: Optional[ImageTransform] = field(
        default=None,
        metadata={
            "help": "How real images become pixel_values (default: the teacher's input spec); "
            "the image tensor must already be in that form."
        },
    )
    label_column: str = field(default="label", metadata={"help": "Label column of the real data."})
    output_dir: Optional[str] = field(default=None, metadata={"help": "Where the results files are written."})
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Where the full-data cell is cached."})

    def __post_init__(self) -> None:
        for name in ("real_train", "real_test"):
            if not isinstance(getattr(self, name), Dataset):
                raise ValueError(f"{name}: got {type(getattr(self, name)).__name__}; expected a datasets.Dataset")
        if self.num_classes is None:
            feature = self.real_train.features.get(self.label_column)
            if not isinstance(feature, ClassLabel):
                raise ValueError(
                    f"num_classes: not given and the real data's {self.label_column!r} column is not a "
                    "ClassLabel; pass num_classes"
                )
            self.num_classes = feature.num_classes
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes: got {self.num_classes!r}; expected an integer >= 2")
        self.args = self.args or DDRankingArguments()
        self.student_config = self.student_config or protocol_config("ddranking")


def tensor_dataset(image_tensor: torch.Tensor, num_classes: int, soft_labels: torch.Tensor | None = None) -> Dataset:
    """``(N, C, H, W)`` images in DD-Ranking's class order as a ``Dataset`` (``pixel_values``, ``label``
    and, when given, ``soft_label``): image ``i`` has class ``i // (N / num_classes)``."""
    if not isinstance(image_tensor, torch.Tensor) or image_tensor.dim() != 4:
        shape = tuple(image_tensor.shape) if isinstance(image_tensor, torch.Tensor) else type(image_tensor).__name__
        raise ValueError(f"image_tensor: got {shape}; expected a tensor of shape (N, channels, height, width)")
    n = image_tensor.shape[0]
    if n == 0 or n % num_classes:
        raise ValueError(
            f"image_tensor: got {n} images for {num_classes} classes; expected the same number of "
            "images per class, ordered by class (DD-Ranking's layout)"
        )
    images = image_tensor.detach().to("cpu", torch.float32)
    if not torch.isfinite(images).all():
        raise ValueError("image_tensor: contains NaN/inf values; expected finite pixel values")
    ipc = n // num_classes
    columns: dict[str, Any] = {"pixel_values": images.numpy(), "label": np.repeat(np.arange(num_classes), ipc)}
    features = {
        "pixel_values": Array3D(shape=tuple(images.shape[1:]), dtype="float32"),
        "label": ClassLabel(num_classes=num_classes),
    }
    if soft_labels is not None:
        if not isinstance(soft_labels, torch.Tensor) or tuple(soft_labels.shape) != (n, num_classes):
            shape = tuple(soft_labels.shape) if isinstance(soft_labels, torch.Tensor) else type(soft_labels).__name__
            raise ValueError(
                f"soft_labels: got {shape}; expected a tensor of shape ({n}, {num_classes}), one row "
                "of logits per image"
            )
        columns["soft_label"] = soft_labels.detach().to("cpu", torch.float32).numpy()
        features["soft_label"] = Sequence(Value("float32"), length=num_classes)
    return Dataset.from_dict(columns, features=Features(features))


class _LabelRobustScore:
    """Shared by the soft and hard scorers: the config, the call into ``ddranking_scores``."""

    label_mode = "soft"

    def __init__(self, config: DDRankingConfig | Mapping[str, Any]) -> None:
        self.config = config if isinstance(config, DDRankingConfig) else DDRankingConfig(**dict(config))
        self.result: DDRankingResult | None = None  # the last computation, every cell and student

    def _score(
        self, image_tensor: torch.Tensor, soft_labels: torch.Tensor | None, syn_lr: float | None, **extra: Any
    ) -> dict[str, float]:
        config = self.config
        # the label-robust score only: the augmentation-robust score's extra cells are not trained
        args = dataclasses.replace(config.args, compute_ars=False)
        if syn_lr is not None:
            if isinstance(syn_lr, bool) or not (
                isinstance(syn_lr, (int, float)) and syn_lr > 0 and math.isfinite(syn_lr)
            ):
                raise ValueError(f"syn_lr: got {syn_lr!r}; expected a positive learning rate")
            args = dataclasses.replace(args, distilled_learning_rate=float(syn_lr))
        distilled = tensor_dataset(image_tensor, config.num_classes, soft_labels)
        self.result = ddranking_scores(
            distilled,
            config.real_train,
            config.real_test,
            config.teacher,
            args=args,
            config=config.student_config,
            student_arch=config.student_arch,
            student_model_kwargs=config.student_model_kwargs,
            transform=config.transform,
            label_column=config.label_column,
            output_dir=config.output_dir,
            cache_dir=config.cache_dir,
            **extra,
        )
        scores = self.result.scores
        out = {}
        for ours, theirs in (
            ("hlr", "hard_label_recovery"),
            ("ior", "improvement_over_random"),
            ("lrs", "label_robust_score"),
        ):
            out[f"{theirs}_mean"], out[f"{theirs}_std"] = scores[f"{ours}_mean"], scores[f"{ours}_std"]
        return out


class LabelRobustScoreSoft(_LabelRobustScore):
    """DD-Ranking's label-robust score with soft labels: HLR, IOR (soft-label students) and LRS.

    ``compute_metrics`` uses the set's own soft labels when given (``soft_labels``, ``(N,
    num_classes)``, of ``student_config.soft_label_kind``: logits by default), else the
    teacher's logits on the images; the random subsets are always labelled by the teacher.
    """

    def compute_metrics(
        self, image_tensor: torch.Tensor, soft_labels: torch.Tensor | None = None, syn_lr: float | None = None
    ) -> dict[str, float]:
        """Scores of ``image_tensor`` (``(N, C, H, W)``, normalised as the students' input, ordered by
        class): ``{hard_label_recovery, improvement_over_random, label_robust_score}_{mean, std}``."""
        if self.config.teacher is None:
            raise ValueError(
                "teacher: got None; the soft-label score needs a teacher to label the random subsets "
                "(LabelRobustScoreHard needs none)"
            )
        if soft_labels is not None and self.config.student_config.soft_label_source != "dataset":
            raise ValueError(
                f"soft_labels: given, but student_config.soft_label_source is "
                f"{self.config.student_config.soft_label_source!r}; expected 'dataset' (DD-Ranking's 'S' "
                "mode: one stored label per image), or leave soft_labels=None"
            )
        # the set's own labels go in its soft_label column, which ddranking_scores uses instead of the teacher's
        return self._score(image_tensor, soft_labels, syn_lr)


class LabelRobustScoreHard(_LabelRobustScore):
    """DD-Ranking's hard-label twin: every student learns from hard labels (IOR compares the
    distilled and random sets' hard-label students); no teacher is needed."""

    label_mode = "hard"

    def compute_metrics(
        self, image_tensor: torch.Tensor, soft_labels: torch.Tensor | None = None, syn_lr: float | None = None
    ) -> dict[str, float]:
        """Scores of ``image_tensor`` with hard labels (``soft_labels`` is refused: the hard mode uses none)."""
        if soft_labels is not None:
            raise ValueError(
                "soft_labels: the hard-label score trains on hard labels only; use "
                "LabelRobustScoreSoft for a set's soft labels"
            )
        if self.config.teacher is None and self.config.transform is None:
            raise ValueError("transform: got None and no teacher; the hard mode needs the real images' transform")
        if self.config.teacher is None and self.config.student_arch is None:
            raise ValueError("student_arch: got None and no teacher; the hard mode needs the students' architecture")
        return self._score(image_tensor, None, syn_lr, label_mode="hard")
