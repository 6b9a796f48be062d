"""Distilled datasets as Hub datasets: schema, validation, card, save/load (publishing: :mod:`gift_hf.hub.publish`).

A distilled dataset is a ``datasets.Dataset`` (saved as split ``train``) or
``DatasetDict`` with

- ``image`` (``Image``) — or ``pixel_values`` (``Array3D`` float) for synthetic images that
  are not representable as 8-bit (normalised or ZCA data);
- ``label``: a ``ClassLabel`` with class names;
- optionally soft labels: dense ``soft_label`` (float16/float32, width C), or sparse top-k
  ``soft_label_topk_values`` (float) + ``soft_label_topk_indices`` (int, in ``[0, C)``).

On disk it is the Hub's layout, so ``datasets.load_dataset(dir_or_repo)`` reads it::

    README.md                              # dataset card: YAML (configs, dataset_info, gift_hf, …) + body
    data/train-00000-of-00001.parquet      # one or more shards per split

Its provenance (:class:`DistilledInfo`) lives under the card's ``gift_hf`` YAML key.

One module per layer, each importing only those before it:

- :mod:`~gift_hf.data.distilled.info` the column names and :class:`DistilledInfo` (no ``datasets``);
- :mod:`~gift_hf.data.distilled.validation` :func:`validate_distilled` and its checks;
- :mod:`~gift_hf.data.distilled.card` the dataset card: render it, read it back;
- :mod:`~gift_hf.data.distilled.storage` :func:`save_distilled`, :func:`load_distilled`, atomic swap, leftovers.

Every public name is importable from here; ``push_distilled`` (in :mod:`gift_hf.hub.publish`,
which imports this package) loads on first use.
"""

from __future__ import annotations

from typing import Any

from gift_hf.data.distilled.card import (
    card_license,
    distilled_card_info,
    read_distilled_info,
    render_card,
    stored_soft_label_kind,
)
from gift_hf.data.distilled.info import (
    CARD_KEY,
    DEFAULT_TAGS,
    IMAGE_COLUMN,
    LABEL_COLUMN,
    PIXEL_COLUMN,
    SOFT_LABEL_COLUMN,
    SOFT_LABEL_KINDS,
    TOPK_INDICES_COLUMN,
    TOPK_VALUES_COLUMN,
    DistilledInfo,
    read_card_info,
    resolve_soft_label_kind,
)
from gift_hf.data.distilled.storage import load_distilled, quiet_datasets, recover_leftovers, save_distilled
from gift_hf.data.distilled.validation import DatasetLike, soft_label_columns, validate_distilled
from gift_hf.files import check_local_path

__all__ = [
    "CARD_KEY",
    "DEFAULT_TAGS",
    "DatasetLike",
    "DistilledInfo",
    "IMAGE_COLUMN",
    "LABEL_COLUMN",
    "PIXEL_COLUMN",
    "SOFT_LABEL_COLUMN",
    "SOFT_LABEL_KINDS",
    "TOPK_INDICES_COLUMN",
    "TOPK_VALUES_COLUMN",
    "card_license",
    "check_local_path",
    "distilled_card_info",
    "load_distilled",
    "push_distilled",
    "quiet_datasets",
    "read_card_info",
    "read_distilled_info",
    "recover_leftovers",
    "render_card",
    "resolve_soft_label_kind",
    "save_distilled",
    "soft_label_columns",
    "stored_soft_label_kind",
    "validate_distilled",
]


def __getattr__(name: str) -> Any:
    # Lazy, so that gift_hf.hub.publish -> gift_hf.data.distilled.storage stays a one-way import.
    if name == "push_distilled":
        from gift_hf.hub.publish import push_distilled

        return push_distilled
    raise AttributeError(f"module 'gift_hf.data.distilled' has no attribute {name!r}")
