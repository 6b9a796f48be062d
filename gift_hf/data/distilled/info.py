"""Metadata of a distilled dataset: the schema's column names and :class:`DistilledInfo`.

The provenance lives under the ``gift_hf`` key of the dataset card's YAML; :func:`read_card_info`
reads it back. This layer imports no ``datasets``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CARD_KEY",
    "DEFAULT_TAGS",
    "DistilledInfo",
    "IMAGE_COLUMN",
    "LABEL_COLUMN",
    "PIXEL_COLUMN",
    "SOFT_LABEL_COLUMN",
    "SOFT_LABEL_KINDS",
    "TOPK_INDICES_COLUMN",
    "TOPK_VALUES_COLUMN",
    "read_card_info",
    "resolve_soft_label_kind",
]


# Column names of the schema (the collator, `SoftLabelCollator`, reads the same names).
IMAGE_COLUMN = "image"


PIXEL_COLUMN = "pixel_values"


LABEL_COLUMN = "label"


SOFT_LABEL_COLUMN = "soft_label"


TOPK_VALUES_COLUMN = f"{SOFT_LABEL_COLUMN}_topk_values"


TOPK_INDICES_COLUMN = f"{SOFT_LABEL_COLUMN}_topk_indices"


# YAML key of the card that holds the DistilledInfo mapping.
CARD_KEY = "gift_hf"


SOFT_LABEL_KINDS = ("logits", "probabilities")


DEFAULT_TAGS = ("dataset-distillation", "soft-labels", "gift_hf")


@dataclass
class DistilledInfo:
    """Provenance of a distilled dataset, stored under ``gift_hf:`` in its card's YAML.

    Args:
        source_dataset: the real dataset it was distilled from (Hub id or name).
        method: how the images were made/chosen (``random``, ``difficulty``, ``sre2l``, …).
        ipc: images per class.
        num_classes: number of classes (filled from the ``label`` column when saved).
        teacher_id: the teacher that made the soft labels (Hub id or path; a list for an
            ensemble whose logits were averaged).
        teacher_checkpoint: which training checkpoint(s) of the teacher (e.g. ``checkpoint-40``).
        teacher_epoch: the teacher's training epoch at that checkpoint ("expert epoch").
        teacher_architecture: the teacher's architecture (e.g. ``gift_convnet_d3``).
        soft_label_kind: ``logits`` or ``probabilities`` (``softmax(logits / T)``); None when
            the dataset has no soft labels.
        temperature: the softmax temperature of probability soft labels.
        topk: k of sparse top-k soft labels (``soft_label_topk_*`` columns).
        image_mean, image_std: per-channel normalisation (of the teacher for ``image``
            columns; already applied for ``pixel_values`` columns).
        image_size: ``[height, width]`` of the images.
        seed: the seed of a random selection.
        library_version: the gift_hf version that wrote the dataset.
        extra: any further free-form metadata (and keys written by newer versions).
    """

    source_dataset: str | None = None
    method: str | None = None
    ipc: int | None = None
    num_classes: int | None = None
    teacher_id: str | list[str] | None = None
    teacher_checkpoint: str | list[str] | None = None
    teacher_epoch: float | None = None
    teacher_architecture: str | None = None
    soft_label_kind: str | None = None
    temperature: float | None = None
    topk: int | None = None
    image_mean: list[float] | None = None
    image_std: list[float] | None = None
    image_size: list[int] | None = None
    seed: int | None = None
    library_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.library_version is None:
            from gift_hf import __version__

            self.library_version = __version__
        if self.soft_label_kind is not None and self.soft_label_kind not in SOFT_LABEL_KINDS:
            raise ValueError(
                f"DistilledInfo.soft_label_kind: got {self.soft_label_kind!r}; expected one of "
                f"{SOFT_LABEL_KINDS} or None"
            )
        for name in ("ipc", "num_classes", "topk"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"DistilledInfo.{name}: got {value!r}; expected a positive integer or None")
        if self.temperature is not None and (
            isinstance(self.temperature, bool)
            or not isinstance(self.temperature, (int, float))
            or not (math.isfinite(self.temperature) and self.temperature > 0)
        ):
            raise ValueError(f"DistilledInfo.temperature: got {self.temperature!r}; expected a positive number")
        for name in ("image_mean", "image_std", "image_size"):
            value = getattr(self, name)
            if value is not None:
                try:
                    setattr(self, name, [int(v) if name == "image_size" else float(v) for v in value])
                except (TypeError, ValueError):
                    raise ValueError(f"DistilledInfo.{name}: got {value!r}; expected a list of numbers") from None
        if self.image_size is not None and len(self.image_size) != 2:
            raise ValueError(f"DistilledInfo.image_size: got {self.image_size}; expected [height, width]")
        if self.image_mean is not None and self.image_std is not None and len(self.image_mean) != len(self.image_std):
            raise ValueError(
                f"DistilledInfo.image_mean has {len(self.image_mean)} values but image_std has "
                f"{len(self.image_std)}; expected one per channel in both"
            )
        if self.teacher_epoch is not None:
            if isinstance(self.teacher_epoch, bool) or not isinstance(self.teacher_epoch, (int, float)):
                raise ValueError(f"DistilledInfo.teacher_epoch: got {self.teacher_epoch!r}; expected a number")
            self.teacher_epoch = float(self.teacher_epoch)
        if not isinstance(self.extra, dict):
            raise ValueError(f"DistilledInfo.extra: got {type(self.extra).__name__}; expected a mapping")

    def to_dict(self) -> dict[str, Any]:
        """The YAML mapping (fields that are None or empty are left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and v != {}}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "DistilledInfo":
        """Inverse of :meth:`to_dict`; unknown keys (from newer versions) go to ``extra``."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError(
                f"card key {CARD_KEY!r}: got {type(data).__name__}; expected a mapping of DistilledInfo fields"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        unknown = {k: v for k, v in data.items() if k not in names}
        if unknown:
            known["extra"] = {**dict(known.get("extra") or {}), **unknown}
        return cls(**known)

    def replace(self, **changes: Any) -> "DistilledInfo":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def training_kwargs(self) -> dict[str, Any]:
        """``GIFTConfig`` keyword arguments to train from the stored soft labels."""
        if self.soft_label_kind is None:
            return {"soft_label_source": "teacher"}
        return {"soft_label_source": "dataset", "soft_label_kind": self.soft_label_kind}


def read_card_info(card_text: str) -> DistilledInfo:
    """The :class:`DistilledInfo` of a dataset card's text (empty if it has no ``gift_hf`` block)."""
    from huggingface_hub import DatasetCard

    try:
        card = DatasetCard(card_text)
    except Exception as err:
        raise ValueError(
            f"README.md: cannot parse the card's YAML metadata ({err}); expected a '---' YAML block "
            "as written by save_distilled"
        ) from None
    try:
        return DistilledInfo.from_dict(card.data.to_dict().get(CARD_KEY))
    except (TypeError, ValueError) as err:
        raise ValueError(f"README.md: the card's {CARD_KEY!r} block is invalid: {err}") from None


def resolve_soft_label_kind(
    info: DistilledInfo, requested: str | None = None, *, source: str = "the dataset card"
) -> str:
    """The kind of the stored soft labels to train with: ``requested`` checked against ``info``.

    ``requested`` None takes the card's ``soft_label_kind``; a kind that contradicts the card
    (probabilities trained as logits, or the reverse) is a ``ValueError``, never a silent choice.
    """
    if requested is not None and requested not in SOFT_LABEL_KINDS:
        raise ValueError(f"soft_label_kind: got {requested!r}; expected one of {SOFT_LABEL_KINDS}")
    stored = info.soft_label_kind
    if stored is None and requested is None:
        raise ValueError(
            f"soft_label_kind: {source} records no soft_label_kind; pass --soft_label_kind logits or "
            "probabilities (what the stored soft labels are)"
        )
    if stored is not None and requested is not None and requested != stored:
        detail = f" at temperature {info.temperature:g}" if stored == "probabilities" and info.temperature else ""
        raise ValueError(
            f"soft_label_kind: got {requested!r} but {source} says the stored soft labels are "
            f"{stored!r}{detail}; drop --soft_label_kind to use the card's kind, or relabel the dataset "
            f"as {requested}"
        )
    return stored if stored is not None else requested
