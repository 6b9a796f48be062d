"""Expert-epoch sweep: soft labels from each saved teacher checkpoint, at several IPC.

The label paper's finding: an early-stopped (weaker, softer) expert labels a tiny set
better, and the best expert epoch grows with IPC. For every IPC a random class-balanced
subset is relabelled by the teacher's checkpoint of every epoch (stored once, or online,
as the protocol says) and students are trained on it; the table marks the best epoch per
IPC and the plot draws accuracy against expert epoch, one line per IPC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from datasets import DatasetDict

from gift_hf.data.images import DataArguments
from gift_hf.engine.config import GIFTConfig
from gift_hf.studies.common import ExperimentArguments, ExperimentResult, Study, describe, parse_list
from gift_hf.studies.report import line_plot, markdown_table, pivot_table, summarize, write_results
from gift_hf.studies.sweep import Cell

__all__ = ["ExpertEpochArguments", "best_by", "run_expert_epochs"]


@dataclass
class ExpertEpochArguments(ExperimentArguments):
    """Options of the expert-epoch sweep (``gift-hf expert-epochs``). The teacher
    (``teacher_model_name_or_path``) is a training run with one checkpoint per epoch."""

    grid_fields = ("expert_epochs", "ipcs")

    expert_epochs: Optional[list[float]] = field(
        default=None, metadata={"help": "Expert epochs to label with. Default: every saved epoch of the teacher run."}
    )
    ipcs: list[int] = field(default_factory=lambda: [1, 10, 50], metadata={"help": "Images per class to sweep."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ipcs = parse_list("ipcs", self.ipcs)
        if min(self.ipcs) < 1:
            raise ValueError(f"ipcs: got {self.ipcs}; expected positive numbers of images per class")
        if self.expert_epochs is not None:
            self.expert_epochs = parse_list("expert_epochs", [float(e) for e in self.expert_epochs])


def best_by(summary: list[dict[str, Any]], group: str, over: str) -> dict[Any, dict[str, Any]]:
    """For each value of ``group``, the summary row with the highest mean (ties: first)."""
    best: dict[Any, dict[str, Any]] = {}
    for row in summary:
        if row[group] not in best or row["mean"] > best[row[group]]["mean"]:
            best[row[group]] = row
    return {k: {over: v[over], "mean": v["mean"], "std": v["std"]} for k, v in best.items()}


def run_expert_epochs(
    args: ExpertEpochArguments,
    data_args: DataArguments | None = None,
    config: GIFTConfig | str = "label_paper",
    data: DatasetDict | None = None,
) -> ExperimentResult:
    """Sweep expert epoch × IPC; table with the best epoch per IPC, line plot."""
    study = Study("expert_epochs", args, data_args, config, data)
    epochs = study.expert_epochs(args.expert_epochs)
    for e in epochs:  # fail before training if an epoch has no checkpoint
        study.expert_path(e)

    def run_one(cell: Cell) -> dict[str, Any]:
        ipc, epoch = cell.params["ipc"], cell.params["expert_epoch"]
        dataset, teacher = study.prepare(study.random_subset(ipc), ("random", ipc), expert_epoch=epoch)
        return study.train_cell(dataset, cell.seed, teacher=teacher)

    cells = [Cell({"ipc": ipc, "expert_epoch": e}, seed) for ipc in args.ipcs for e in epochs for seed in study.seeds()]
    records = study.run(cells, run_one)
    if records is None:
        return ExperimentResult(study.name, study.stats)
    summary = summarize(records, ["ipc", "expert_epoch"])
    best = best_by(summary, "ipc", "expert_epoch")
    table = pivot_table(summary, "expert_epoch", "ipc", row_label="expert epoch", fmt=lambda v: f"{v:g}")
    table += "\n\n" + markdown_table(
        ["IPC", "best expert epoch", "accuracy (%)"],
        [[ipc, f"{b['expert_epoch']:g}", f"{b['mean']:.1f} ± {b['std']:.1f}"] for ipc, b in best.items()],
    )
    p = study.config
    title = "Test accuracy against expert epoch, per IPC"
    header = (
        f"# {title}\n\nRandom class-balanced subsets (seed {args.selection_seed}) labelled by the teacher's "
        f"checkpoint of each epoch; protocol: {describe(p)}; mean ± std over {p.num_students} seeds.\n\n"
    )
    extra = {"best_expert_epoch": {str(k): v for k, v in best.items()}}
    files = write_results(
        study.output_dir,
        study.name,
        settings=study.settings(expert_epochs=epochs),
        records=records,
        summary=summary,
        table=header + table,
        extra=extra,
    )
    files["plot"] = line_plot(
        summary, "expert_epoch", "ipc", study.path("expert_epochs.png"), title, x_label="expert epoch", mark_best=True
    )
    return ExperimentResult(study.name, study.stats, records, summary, table, files, extra)
