"""Improvement over random: a distilled set against random real subsets of the same size.

The label paper's point: random real images with good soft labels are a strong baseline,
so a distillation method's gain should be measured against them under the *identical*
protocol — same class counts, same labels source (the teacher labels the random subsets
exactly as it labels the distilled set, unless the distilled set brings its own stored
labels), same students, budget and seeds. ``num_random`` random subsets are drawn; the gap
is the distilled mean minus the mean over all random-subset students, with a Welch
standard error and a 95% confidence interval that include the subset-to-subset variation.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from datasets import Dataset, DatasetDict

from gift_hf.data.images import DataArguments
from gift_hf.engine.config import GIFTConfig
from gift_hf.studies.common import ExperimentArguments, ExperimentResult, Study, describe
from gift_hf.studies.report import fmt_acc, markdown_table, pyplot, save_figure, summarize, write_results
from gift_hf.studies.sweep import Cell

__all__ = ["ImprovementOverRandomArguments", "gap_statistics", "run_improvement_over_random"]


@dataclass
class ImprovementOverRandomArguments(ExperimentArguments):
    """Options of ``gift-hf improvement-over-random``."""

    grid_fields = ("num_random",)

    distilled: Optional[str] = field(
        default=None, metadata={"help": "The distilled set to judge (save_distilled folder or Hub dataset id)."}
    )
    distilled_split: str = field(default="train", metadata={"help": "Split of the distilled set to train on."})
    num_random: int = field(
        default=3, metadata={"help": "Random subsets (seeds selection_seed, selection_seed + 1, …) to compare with."}
    )
    keep_distilled_labels: bool = field(
        default=True,
        metadata={
            "help": "With a stored-label protocol, train on the distilled set's own soft labels when it has "
            "some (else the teacher relabels it like the random subsets)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.distilled:
            raise ValueError("distilled: got none; expected the distilled set to compare (folder or Hub id)")
        if self.num_random < 1:
            raise ValueError(f"num_random: got {self.num_random}; expected >= 1")


def gap_statistics(distilled: list[float], random: list[float]) -> dict[str, float]:
    """Mean gap (distilled − random, points), Welch standard error, df and 95% interval."""
    n1, n2 = len(distilled), len(random)
    m1, m2 = statistics.fmean(distilled), statistics.fmean(random)
    v1 = statistics.variance(distilled) if n1 > 1 else 0.0
    v2 = statistics.variance(random) if n2 > 1 else 0.0
    se = math.sqrt(v1 / n1 + v2 / n2)
    gap = m1 - m2
    if se > 0 and n1 > 1 and n2 > 1:
        df = (v1 / n1 + v2 / n2) ** 2 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1))
        from scipy.stats import t as student_t

        half = float(student_t.ppf(0.975, df)) * se
    else:
        df, half = float("nan"), float("nan")
    return {
        "gap": gap,
        "se": se,
        "df": df,
        "ci95_low": gap - half,
        "ci95_high": gap + half,
        "distilled_mean": m1,
        "random_mean": m2,
        "n_distilled": n1,
        "n_random": n2,
    }


def _matched_random(study: Study, distilled: Dataset, seed: int) -> Dataset:
    """Random real training images with the distilled set's per-class counts."""
    counts = np.bincount(np.asarray(distilled[study.label_column]), minlength=study.num_classes)
    if len(set(counts.tolist())) == 1:
        return study.random_subset(int(counts[0]), seed)
    labels = np.asarray(study.train[study.label_column])
    rng = np.random.default_rng(seed)
    picked = []
    for cls, count in enumerate(counts):
        rows = np.flatnonzero(labels == cls)
        if len(rows) < count:
            raise ValueError(f"distilled: class {cls} has {count} images but the training split only {len(rows)}")
        picked.extend(rng.choice(rows, size=int(count), replace=False).tolist())
    return study.train.select(sorted(picked))


def run_improvement_over_random(
    args: ImprovementOverRandomArguments,
    data_args: DataArguments | None = None,
    config: GIFTConfig | str = "gift",
    data: DatasetDict | None = None,
) -> ExperimentResult:
    """Evaluate the distilled set and ``num_random`` matched random subsets; gap with uncertainty."""
    study = Study("improvement_over_random", args, data_args, config, data)
    distilled = study.load_distilled(args.distilled, args.distilled_split)
    sources = ["distilled"] + [f"random-{args.selection_seed + j}" for j in range(args.num_random)]

    def dataset_of(source: str) -> Dataset:
        if source == "distilled":
            return distilled
        return study.cached(("matched", source), lambda: _matched_random(study, distilled, int(source.split("-")[1])))

    def run_one(cell: Cell) -> dict[str, Any]:
        source = cell.params["source"]
        keep = args.keep_distilled_labels and source == "distilled"
        dataset, teacher = study.prepare(dataset_of(source), source, keep_stored=keep)
        return study.train_cell(dataset, cell.seed, teacher=teacher)

    cells = [Cell({"source": s}, seed) for s in sources for seed in study.seeds()]
    records = study.run(cells, run_one)
    if records is None:
        return ExperimentResult(study.name, study.stats)
    summary = summarize(records, ["source"])
    # diverged cells (accuracy None) are counted as failed in the summary, never scored
    d_acc = [100 * r["accuracy"] for r in records if r["params"]["source"] == "distilled" and r["accuracy"] is not None]
    r_acc = [100 * r["accuracy"] for r in records if r["params"]["source"] != "distilled" and r["accuracy"] is not None]
    gap = gap_statistics(d_acc, r_acc)
    pooled = {"mean": gap["random_mean"], "std": statistics.stdev(r_acc) if len(r_acc) > 1 else 0.0}
    rows = [[row["source"], fmt_acc(row), row["n"]] for row in summary]
    rows.append([f"random (all {args.num_random} subsets)", fmt_acc(pooled), len(r_acc)])
    table = markdown_table(["training set", "accuracy (%)", "students"], rows)
    table += (
        f"\n\n**Gap (distilled − random): {gap['gap']:+.2f} points**, standard error {gap['se']:.2f}, "
        f"95% CI [{gap['ci95_low']:+.2f}, {gap['ci95_high']:+.2f}] (Welch)."
    )
    p = study.config
    title = f"{args.distilled} vs random real subsets ({len(distilled)} images)"
    header = f"# {title}\n\nIdentical protocol: {describe(p)}; {p.num_students} student seeds per set.\n\n"
    files = write_results(
        study.output_dir,
        study.name,
        settings=study.settings(num_images=len(distilled)),
        records=records,
        summary=summary,
        table=header + table,
        extra={"gap": gap},
    )
    files["plot"] = _strip_plot(d_acc, r_acc, records, gap, study.path("improvement_over_random.png"), title)
    return ExperimentResult(study.name, study.stats, records, summary, table, files, {"gap": gap})


def _strip_plot(d_acc, r_acc, records, gap, path, title) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    rng = np.random.default_rng(0)
    for x, accs, color in ((0, d_acc, "#3f7fbf"), (1, r_acc, "#9e9e9e")):
        ax.scatter(x + rng.uniform(-0.08, 0.08, len(accs)), accs, color=color, alpha=0.7, s=18)
        mean = statistics.fmean(accs)
        ax.hlines(mean, x - 0.25, x + 0.25, color=color, lw=2)
    ax.set_xticks([0, 1], ["distilled", "random subsets"])
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{title}\ngap {gap['gap']:+.1f} ± {gap['se']:.1f} (SE)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
