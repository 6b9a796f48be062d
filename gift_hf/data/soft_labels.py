"""The one check of stored soft-label values, run by every reader.

``load_distilled``/``validate_distilled`` (every split at load), ``gift-hf train`` (the stored
column, before training), :class:`~gift_hf.data.images.SoftLabelCollator` (every batch),
:func:`~gift_hf.data.device.decode_dataset` (once, at decode) and
:func:`~gift_hf.data.relabel.relabel` (the teacher's output) all call
:func:`check_soft_labels`, so a set that one of them refuses is refused by all of them, with
the same message naming the column, the row and what was expected.

By kind: every value finite; dense rows ``num_classes`` wide; ``probabilities`` rows
non-negative and summing to 1 within :data:`PROBABILITY_SUM_TOLERANCE` (a top-k row, which
keeps only the k largest entries, sums to at most 1 and more than 0). ``logits`` may be any
finite numbers; a kind of None (unknown) checks finiteness and width only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PROBABILITY_SUM_TOLERANCE", "check_soft_labels"]

PROBABILITY_SUM_TOLERANCE = 1e-3
"""How far a probability row's sum may be from 1: float16 storage rounds each entry by at most
2**-11 of its value, so a row of any width stays within 5e-4 of its float32 sum."""


def check_soft_labels(
    values: Any,
    kind: str | None,
    *,
    num_classes: int | None = None,
    column: str = "soft_label",
    where: str = "",
    row_word: str = "row",
    topk: bool = False,
    first_row: int = 0,
) -> None:
    """Raise one ``ValueError`` naming ``column``, the row and the expectation on a bad soft label.

    Args:
        values: ``(N, K)`` soft labels (numpy, torch or nested lists).
        kind: ``"logits"``, ``"probabilities"`` or None (unknown: finiteness and width only).
        num_classes: the width dense rows must have (not checked for ``topk`` rows, or when None).
        column, where, row_word: how the message names the place, e.g. ``column 'soft_label'
            (split 'train'), row 3`` or ``column 'soft_label', batch row 3``.
        topk: the rows are the k largest probabilities of a distribution (sum in ``(0, 1]``).
        first_row: the row number of ``values[0]`` (a chunk of a larger column).
    """
    if kind not in (None, "logits", "probabilities"):
        raise ValueError(f"soft_label_kind: got {kind!r}; expected 'logits' or 'probabilities'")
    if hasattr(values, "detach"):  # a torch tensor, on any device
        values = values.detach().float().cpu().numpy()
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"column {column!r}{where}: got shape {tuple(values.shape)}; expected (rows, classes)")
    if num_classes is not None and not topk and values.shape[1] != num_classes:
        raise ValueError(
            f"column {column!r}{where} has width {values.shape[1]}; expected {num_classes}, the number of classes"
        )
    # float64 sums, a chunk at a time: the extra memory stays small for a large relabelled set
    for start in range(0, len(values), _CHUNK_ROWS):
        _check_rows(
            values[start : start + _CHUNK_ROWS].astype(np.float64),
            kind,
            column,
            where,
            row_word,
            topk,
            first_row + start,
        )


_CHUNK_ROWS = 1 << 14


def _check_rows(
    matrix: np.ndarray, kind: str | None, column: str, where: str, row_word: str, topk: bool, first_row: int
) -> None:
    """:func:`check_soft_labels` on one float64 chunk whose first row is ``first_row``."""
    finite = np.isfinite(matrix)
    if not finite.all():
        row, col = (int(i[0]) for i in np.nonzero(~finite))
        raise ValueError(
            f"column {column!r}{where}, {row_word} {first_row + row}: entry {col} is "
            f"{matrix[row, col]}; expected finite values (no NaN/inf)"
        )
    if kind != "probabilities" or matrix.size == 0:
        return
    negative = (matrix < 0).any(axis=1)
    if negative.any():
        row = int(np.flatnonzero(negative)[0])
        col = int(np.flatnonzero(matrix[row] < 0)[0])
        raise ValueError(
            f"column {column!r}{where}, {row_word} {first_row + row}: has negative entries but "
            f"soft_label_kind is 'probabilities' (entry {col} is {matrix[row, col]:.6g}); expected "
            "values >= 0"
        )
    sums = matrix.sum(axis=1)
    tol = PROBABILITY_SUM_TOLERANCE
    bad = (sums <= 0) | (sums > 1 + tol) if topk else np.abs(sums - 1) > tol
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = "is all zero" if sums[row] == 0 else f"sums to {sums[row]:.6g}"
        expected = (
            f"the k kept entries to sum to more than 0 and at most 1 (within {tol:g})"
            if topk
            else f"each row to sum to 1 (within {tol:g})"
        )
        raise ValueError(
            f"column {column!r}{where}, {row_word} {first_row + row}: {what} but soft_label_kind is "
            f"'probabilities'; expected {expected}"
        )
