"""Soft-label ablations from "A Label is Worth a Thousand Images in Dataset Distillation"
(Qin, Deng, Alvarez-Melis, NeurIPS 2024).

All functions take an ``(N, C)`` soft-label matrix (a torch tensor or a numpy array) and
return the same type, dtype and device; the input is never modified.

- :func:`swap_topk`: the swap test — per row, swap the k-th largest entry with the
  smallest, which destroys the ranking structure while keeping the set of values.
- :func:`keep_topk`: keep the k largest entries per row, zero the rest, *no*
  renormalisation (the data–knowledge scaling law over IPC × k).
- :func:`remove_class_knowledge`: zero one class's column in the rows of other classes.
- :func:`label_entropy_stats`: entropy statistics of the labels.
- :func:`map_soft_labels`: apply any of these to a dataset's ``soft_label`` column.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

__all__ = ["keep_topk", "label_entropy_stats", "map_soft_labels", "remove_class_knowledge", "swap_topk"]


def _as_tensor(soft: Any, name: str = "soft") -> tuple[torch.Tensor, bool]:
    """(tensor, was_numpy); checks the ``(N, C)`` shape."""
    was_numpy = isinstance(soft, np.ndarray)
    if not (was_numpy or torch.is_tensor(soft)):
        soft = np.asarray(soft, dtype=np.float32)  # lists, a dataset column
    tensor = torch.from_numpy(soft) if isinstance(soft, np.ndarray) else soft
    if tensor.dim() != 2:
        raise ValueError(f"{name} must have shape (N, C), got {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must hold floats (soft labels), got dtype {tensor.dtype}")
    return tensor, was_numpy


def _back(tensor: torch.Tensor, was_numpy: bool) -> Any:
    return tensor.numpy() if was_numpy else tensor


def _check_k(k: int, num_classes: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_classes:
        raise ValueError(f"k: got {k!r}; expected an integer in [1, {num_classes}] (the number of classes)")


def swap_topk(soft: Any, k: int) -> Any:
    """Swap test: per row, exchange the k-th largest entry (k = 1 is the maximum) with the smallest.

    Ties are broken by class index (stable sort), so the result is deterministic.
    """
    tensor, was_numpy = _as_tensor(soft)
    _check_k(k, tensor.shape[1])
    order = torch.sort(tensor, dim=1, descending=True, stable=True).indices
    rows = torch.arange(tensor.shape[0], device=tensor.device)
    kth, smallest = order[:, k - 1], order[:, -1]
    out = tensor.clone()
    out[rows, kth] = tensor[rows, smallest]
    out[rows, smallest] = tensor[rows, kth]
    return _back(out, was_numpy)


def keep_topk(soft: Any, k: int) -> Any:
    """Keep the ``k`` largest entries of each row, set the others to zero; no renormalisation.

    Meant for probability labels (zero = no knowledge). Equals densifying the sparse top-k
    columns that :func:`gift_hf.data.relabel` stores with ``topk=k``.
    """
    tensor, was_numpy = _as_tensor(soft)
    _check_k(k, tensor.shape[1])
    values, indices = torch.topk(tensor, k, dim=1)
    out = torch.zeros_like(tensor).scatter_(1, indices, values)
    return _back(out, was_numpy)


def remove_class_knowledge(soft: Any, cls: int, labels: Any = None) -> Any:
    """Remove the teacher's knowledge about class ``cls``: zero column ``cls`` (no renormalisation).

    Args:
        soft: ``(N, C)`` soft labels.
        cls: the class whose column is zeroed.
        labels: optional ``(N,)`` hard labels; when given, rows *of* class ``cls`` keep
            their entry (the column is zeroed elsewhere); when None, every row is zeroed.
    """
    tensor, was_numpy = _as_tensor(soft)
    num_classes = tensor.shape[1]
    if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)) or not 0 <= int(cls) < num_classes:
        raise ValueError(f"cls: got {cls!r}; expected a class id in [0, {num_classes - 1}]")
    out = tensor.clone()
    if labels is None:
        out[:, int(cls)] = 0
    else:
        labels = torch.as_tensor(np.asarray(labels)).to(tensor.device)
        if labels.shape != (tensor.shape[0],):
            raise ValueError(f"labels must have shape ({tensor.shape[0]},) like soft's rows, got {tuple(labels.shape)}")
        out[labels != int(cls), int(cls)] = 0
    return _back(out, was_numpy)


def label_entropy_stats(
    soft: Any, *, kind: str = "probabilities", temperature: float = 1.0, labels: Any = None
) -> dict[str, float]:
    """Entropy statistics (nats) of soft labels.

    Probability rows are renormalised to sum to 1 first (so top-k-kept rows count as the
    distribution over their kept classes); ``kind="logits"`` rows become
    ``softmax(logits / temperature)``.

    Returns:
        ``mean_entropy``, ``std_entropy``, ``min_entropy``, ``max_entropy``,
        ``mean_normalized_entropy`` (÷ log C), ``mean_max_probability``,
        ``mean_effective_classes`` (exp(entropy)), and with ``labels`` also
        ``top1_agreement`` (share of rows whose largest entry is the hard label).
    """
    tensor, _ = _as_tensor(soft)
    tensor = tensor.detach().double().cpu()
    if kind == "logits":
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature: got {temperature}; expected a positive number")
        probs = torch.softmax(tensor / temperature, dim=1)
    elif kind == "probabilities":
        if (tensor < 0).any():
            raise ValueError(
                "soft has negative entries but kind='probabilities'; expected values >= 0 "
                "(pass kind='logits' for logits)"
            )
        sums = tensor.sum(1, keepdim=True)
        if (sums <= 0).any():
            row = int(torch.nonzero(sums.squeeze(1) <= 0)[0])
            raise ValueError(f"soft row {row} sums to 0; expected a non-zero probability row")
        probs = tensor / sums
    else:
        raise ValueError(f"kind: got {kind!r}; expected 'probabilities' or 'logits'")
    entropy = -(probs * torch.where(probs > 0, probs.log(), torch.zeros_like(probs))).sum(1)
    num_classes = tensor.shape[1]
    stats = {
        "mean_entropy": float(entropy.mean()),
        "std_entropy": float(entropy.std(unbiased=False)),
        "min_entropy": float(entropy.min()),
        "max_entropy": float(entropy.max()),
        "mean_normalized_entropy": float(entropy.mean() / math.log(num_classes)) if num_classes > 1 else 0.0,
        "mean_max_probability": float(probs.max(1).values.mean()),
        "mean_effective_classes": float(entropy.exp().mean()),
    }
    if labels is not None:
        labels = torch.as_tensor(np.asarray(labels))
        if labels.shape != (tensor.shape[0],):
            raise ValueError(f"labels must have shape ({tensor.shape[0]},) like soft's rows, got {tuple(labels.shape)}")
        stats["top1_agreement"] = float((probs.argmax(1) == labels).double().mean())
    return stats


def map_soft_labels(
    dataset: Any, fn: Callable[..., Any], *, column: str = "soft_label", pass_labels: bool = False, **kwargs: Any
) -> Any:
    """Apply an ablation to a dataset's dense soft-label column (all rows at once).

    ``fn(soft, **kwargs)`` gets the ``(N, C)`` matrix (``labels=`` too with ``pass_labels``)
    and returns the new one; the column keeps its feature (width, dtype). Works on a
    ``Dataset`` or every split of a ``DatasetDict``. Example::

        ds = map_soft_labels(ds, keep_topk, k=5)
        ds = map_soft_labels(ds, remove_class_knowledge, cls=3, pass_labels=True)
    """
    from datasets import Dataset, DatasetDict

    if isinstance(dataset, DatasetDict):
        return DatasetDict(
            {
                name: map_soft_labels(ds, fn, column=column, pass_labels=pass_labels, **kwargs)
                for name, ds in dataset.items()
            }
        )
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset: expected a datasets.Dataset or DatasetDict, got {type(dataset).__name__}")
    if column not in dataset.column_names:
        raise ValueError(f"dataset has no {column!r} column (dense soft labels); it has columns {dataset.column_names}")
    from gift_hf.data.distilled import quiet_datasets
    from gift_hf.data.relabel import fixed_size_list

    feature = dataset.features[column]
    plain = dataset.with_format(None)
    soft = np.asarray(plain.select_columns([column]).with_format("numpy")[:][column], dtype=np.float32)
    if pass_labels:
        kwargs["labels"] = np.asarray(plain["label"])
    new = np.asarray(fn(soft, **kwargs))
    if new.shape != soft.shape:
        raise ValueError(f"{getattr(fn, '__name__', fn)} returned shape {new.shape}; expected {soft.shape}")
    dtype = feature.feature.dtype
    with quiet_datasets():
        return dataset.remove_columns([column]).add_column(column, fixed_size_list(new, dtype), feature=feature)
