"""Summaries, Markdown tables, CSV/JSON files and matplotlib plots of a study's cells."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from typing import Any, Callable, Sequence

from gift_hf.files import check_outputs, write_output, write_output_text
from gift_hf.studies.sweep import format_value

__all__ = [
    "bar_plot",
    "fmt_acc",
    "heatmap_plot",
    "line_plot",
    "markdown_table",
    "pyplot",
    "save_figure",
    "pivot_table",
    "summarize",
    "write_results",
]


def summarize(records: Sequence[dict[str, Any]], by: Sequence[str]) -> list[dict[str, Any]]:
    """Group cell records by ``params[by]`` → mean, std (sample; 0 for one) and n of accuracy in %.

    Groups keep the order in which they first appear in ``records`` (the grid's order). A
    cell whose training diverged (``accuracy`` None, ``failure`` set) is counted in
    ``failed``, not scored: mean and std are over the other cells (NaN when all failed).
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(tuple(record["params"][k] for k in by), []).append(record)
    rows = []
    for values, members in groups.items():
        scored = [m for m in members if m.get("accuracy") is not None]
        accs = [100.0 * m["accuracy"] for m in scored]
        rows.append(
            {
                **dict(zip(by, values)),
                "mean": statistics.fmean(accs) if accs else math.nan,
                "std": (statistics.stdev(accs) if len(accs) > 1 else 0.0) if accs else math.nan,
                "n": len(accs),
                "failed": len(members) - len(scored),
                "seeds": [m["seed"] for m in scored],
                "accuracies": accs,
            }
        )
    return rows


def fmt_acc(row: dict[str, Any] | None, digits: int = 1) -> str:
    """``"mean ± std"`` of a summary row ("–" when missing; failed cells are named)."""
    if row is None:
        return "–"
    failed = row.get("failed", 0)
    if not row.get("n", 1):
        return f"failed ({failed} diverged)"
    text = f"{row['mean']:.{digits}f} ± {row['std']:.{digits}f}"
    return text + (f" ({failed} failed)" if failed else "")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def pivot_table(
    summary: Sequence[dict[str, Any]],
    row_key: str,
    col_key: str,
    *,
    row_label: str | None = None,
    fmt: Callable[[Any], str] = str,
    col_fmt: Callable[[Any], str] | None = None,
    extra: Callable[[list[dict[str, Any] | None]], list[str]] | None = None,
    extra_headers: Sequence[str] = (),
) -> str:
    """Rows × columns Markdown table of ``mean ± std``; ``extra(row_cells)`` appends columns.

    ``fmt`` formats row values, ``col_fmt`` column values (default: ``fmt``).
    """
    col_fmt = col_fmt or fmt
    rows = list(dict.fromkeys(s[row_key] for s in summary))
    cols = list(dict.fromkeys(s[col_key] for s in summary))
    index = {(s[row_key], s[col_key]): s for s in summary}
    body = []
    for r in rows:
        cells = [index.get((r, c)) for c in cols]
        body.append([fmt(r)] + [fmt_acc(x) for x in cells] + (extra(cells) if extra else []))
    headers = [row_label or row_key] + [f"{col_key}={col_fmt(c)}" for c in cols] + list(extra_headers)
    return markdown_table(headers, body)


def _csv(summary: Sequence[dict[str, Any]]) -> str:
    if not summary:
        return ""
    fields = [k for k in summary[0] if k not in ("accuracies", "seeds")]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in summary:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return out.getvalue()


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported on first use (plots are files, never windows)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str) -> str:
    """Write ``fig`` to ``path`` as PNG atomically, close it and return ``path``.

    Like every result file, it never replaces a file gift_hf did not write
    (:func:`gift_hf.files.write_output`)."""
    try:
        return write_output(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png", bbox_inches="tight"))
    finally:
        pyplot().close(fig)


def bar_plot(
    summary: Sequence[dict[str, Any]],
    group_key: str,
    bar_key: str,
    path: str,
    title: str,
    ylabel: str = "test accuracy (%)",
    ylim: tuple[float, float] | None = None,
) -> str:
    """Grouped bars: one group per ``group_key`` value, one bar per ``bar_key`` value, ± std.

    ``ylim`` sets the y range (default: from the lowest bar to 100, for accuracies)."""
    plt = pyplot()
    groups = list(dict.fromkeys(s[group_key] for s in summary))
    bars = list(dict.fromkeys(s[bar_key] for s in summary))
    index = {(s[group_key], s[bar_key]): s for s in summary}
    width = 0.8 / max(1, len(bars))
    fig, ax = plt.subplots(figsize=(min(11.0, max(4.0, 2.0 + 0.28 * len(groups) * len(bars))), 4.0))
    for j, b in enumerate(bars):
        xs, means, stds = [], [], []
        for i, g in enumerate(groups):
            if (g, b) in index:
                xs.append(i + (j - (len(bars) - 1) / 2) * width)
                means.append(index[(g, b)]["mean"])
                stds.append(index[(g, b)]["std"])
        ax.bar(xs, means, width=width, yerr=stds, capsize=2, label=str(b))
    ax.set_xticks(range(len(groups)), [str(g) for g in groups], rotation=30 if len(groups) > 5 else 0)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if len(bars) > 1:  # below the axes: the bars reach the top
        ax.legend(
            title=bar_key,
            fontsize=8,
            ncols=min(6, len(bars)),
            loc="upper center",
            bbox_to_anchor=(0.5, -0.18 if len(groups) <= 5 else -0.28),
        )
    if ylim is None:
        low = min((s["mean"] - s["std"] for s in summary), default=0.0)
        ylim = (max(0.0, 10 * (low // 10) - 10), 100)
    else:  # signed values (differences): mark zero
        ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylim(*ylim)
    fig.tight_layout()
    return save_figure(fig, path)


def heatmap_plot(
    summary: Sequence[dict[str, Any]],
    row_key: str,
    col_key: str,
    path: str,
    title: str,
    *,
    row_label: str | None = None,
    col_label: str | None = None,
) -> str:
    """Annotated heatmap of the mean accuracy over ``row_key`` × ``col_key``."""
    plt = pyplot()
    rows = list(dict.fromkeys(s[row_key] for s in summary))
    cols = list(dict.fromkeys(s[col_key] for s in summary))
    index = {(s[row_key], s[col_key]): s for s in summary}
    grid = [[index[(r, c)]["mean"] if (r, c) in index else math.nan for c in cols] for r in rows]
    fig, ax = plt.subplots(figsize=(max(5.0, 2.2 + 1.1 * len(cols)), 1.4 + 0.55 * len(rows)))
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    values = [v for row in grid for v in row if not math.isnan(v)]
    middle = (min(values) + max(values)) / 2 if values else 0.0
    for i in range(len(rows)):
        for j in range(len(cols)):
            if not math.isnan(grid[i][j]):
                # dark text on the bright end of viridis, white on the dark end
                color = "black" if grid[i][j] > middle else "white"
                ax.text(j, i, f"{grid[i][j]:.1f}", ha="center", va="center", color=color, fontsize=8)
    ax.set_xticks(range(len(cols)), [format_value(c) for c in cols])
    ax.set_yticks(range(len(rows)), [format_value(r) for r in rows])
    ax.set_xlabel(col_label or col_key)
    ax.set_ylabel(row_label or row_key)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="test accuracy (%)")
    fig.tight_layout()
    return save_figure(fig, path)


def line_plot(
    summary: Sequence[dict[str, Any]],
    x_key: str,
    line_key: str | None,
    path: str,
    title: str,
    *,
    x_label: str | None = None,
    references: dict[str, float] | None = None,
    mark_best: bool = False,
) -> str:
    """Mean accuracy against ``x_key`` (one line per ``line_key`` value), ± std band."""
    plt = pyplot()
    lines = list(dict.fromkeys(s[line_key] for s in summary)) if line_key else [None]
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for value in lines:
        rows = [s for s in summary if line_key is None or s[line_key] == value]
        xs = [r[x_key] for r in rows]
        means = [r["mean"] for r in rows]
        stds = [r["std"] for r in rows]
        label = f"{line_key}={value}" if line_key else None
        (line,) = ax.plot(xs, means, marker="o", label=label)
        ax.fill_between(
            xs,
            [m - s for m, s in zip(means, stds)],
            [m + s for m, s in zip(means, stds)],
            alpha=0.2,
            color=line.get_color(),
        )
        if mark_best and means:
            best = max(range(len(means)), key=means.__getitem__)
            ax.plot([xs[best]], [means[best]], marker="*", markersize=14, color=line.get_color())
    for (name, y), style in zip((references or {}).items(), ("--", ":", "-.", (0, (5, 5)))):
        ax.axhline(y, ls=style, lw=1.2, color="gray", label=f"{name} ({y:.1f})")
    ax.set_xlabel(x_label or x_key)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    if line_key or references:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def write_results(
    output_dir: str,
    name: str,
    *,
    settings: dict[str, Any],
    records: Sequence[dict[str, Any]],
    summary: Sequence[dict[str, Any]],
    table: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Write ``results.json`` (settings, every cell, summary), ``results.csv`` and ``results.md``."""
    payload = {"experiment": name, "settings": settings, "summary": list(summary), "cells": list(records)}
    if extra:
        payload.update(extra)
    paths = {
        "json": os.path.join(output_dir, "results.json"),
        "csv": os.path.join(output_dir, "results.csv"),
        "markdown": os.path.join(output_dir, "results.md"),
    }
    check_outputs(*paths.values())  # all three or none: never a new results.json beside a user's results.md
    write_output_text(paths["json"], json.dumps(payload, indent=1, default=str))
    write_output_text(paths["csv"], _csv(summary))
    write_output_text(paths["markdown"], table.rstrip() + "\n")
    return paths
