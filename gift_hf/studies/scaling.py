"""Data–knowledge scaling: IPC × top-k grid, from full soft labels down to hard labels.

Knowledge per image is cut by keeping only the k largest entries of each stored soft
label (:func:`gift_hf.data.ablations.keep_topk`; k = C keeps everything), and hard labels are
the k = 0 end of the axis. Data grows with IPC. The heatmap shows how much data a unit of
label knowledge is worth (the label paper's scaling law); the table adds the soft − hard
gap per IPC, which shrinks as IPC grows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from datasets import DatasetDict

from gift_hf.data.ablations import keep_topk, map_soft_labels
from gift_hf.data.images import DataArguments
from gift_hf.engine.config import GIFTConfig
from gift_hf.studies.common import ExperimentArguments, ExperimentResult, Study, describe, parse_list
from gift_hf.studies.report import heatmap_plot, markdown_table, pivot_table, summarize, write_results
from gift_hf.studies.sweep import Cell

__all__ = ["DataKnowledgeScalingArguments", "default_topks", "run_data_knowledge_scaling", "soft_hard_gap"]


def default_topks(num_classes: int) -> list[int]:
    """C (all), then 50%, 20%, 10%, … of C down to 1, without duplicates."""
    ks = {num_classes}
    for fraction in (0.5, 0.2, 0.1, 0.05, 0.02, 0.01):
        ks.add(max(1, round(num_classes * fraction)))
    ks.add(1)
    return sorted(ks, reverse=True)


@dataclass
class DataKnowledgeScalingArguments(ExperimentArguments):
    """Options of the data–knowledge scaling grid (``gift-hf data-knowledge-scaling``)."""

    grid_fields = ("ipcs", "topks", "include_hard")

    ipcs: list[int] = field(default_factory=lambda: [1, 10, 50], metadata={"help": "Images per class to sweep."})
    topks: Optional[list[int]] = field(
        default=None,
        metadata={"help": "Soft-label entries kept per image (k = C keeps all). Default: C, C/2, C/5, C/10, … 1."},
    )
    include_hard: bool = field(default=True, metadata={"help": "Add the hard-label row (no label knowledge)."})
    expert_epoch: Optional[float] = field(
        default=None, metadata={"help": "Label with the teacher's checkpoint of this epoch (default: final model)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ipcs = parse_list("ipcs", [int(i) for i in self.ipcs])
        if min(self.ipcs) < 1:
            raise ValueError(f"ipcs: got {self.ipcs}; expected positive numbers of images per class")
        if self.topks is not None:
            self.topks = parse_list("topks", [int(k) for k in self.topks])
            if min(self.topks) < 1:
                raise ValueError(f"topks: got {self.topks}; expected k >= 1")


def soft_hard_gap(summary: list[dict[str, Any]], full_k: Any) -> dict[Any, float]:
    """Per IPC: accuracy with all soft-label entries minus accuracy with hard labels (points)."""
    index = {(r["ipc"], r["topk"]): r["mean"] for r in summary}
    ipcs = list(dict.fromkeys(r["ipc"] for r in summary))
    return {
        ipc: index[(ipc, full_k)] - index[(ipc, "hard")]
        for ipc in ipcs
        if (ipc, full_k) in index and (ipc, "hard") in index
    }


def run_data_knowledge_scaling(
    args: DataKnowledgeScalingArguments,
    data_args: DataArguments | None = None,
    config: GIFTConfig | str = "label_paper",
    data: DatasetDict | None = None,
) -> ExperimentResult:
    """Train the IPC × top-k grid (plus hard labels); table with the soft − hard gap, heatmap."""
    study = Study("data_knowledge_scaling", args, data_args, config, data)
    base = study.config
    study.require_stored_labels("top-k truncation")
    if base.soft_label_kind != "probabilities":
        raise ValueError(
            "soft_label_kind: top-k truncation zeroes entries, which means 'no knowledge' only for "
            f"probabilities; got {base.soft_label_kind!r}"
        )
    C = study.num_classes
    ks = args.topks or default_topks(C)
    if max(ks) > C:
        raise ValueError(f"topks: got {max(ks)}; expected k <= the number of classes {C}")
    study.expert_path(args.expert_epoch)
    hard = base.replace(loss="ce")

    def run_one(cell: Cell) -> dict[str, Any]:
        ipc, k = cell.params["ipc"], cell.params["topk"]
        subset = study.random_subset(ipc)
        if k == "hard":
            return study.train_cell(subset, cell.seed, hard)
        labelled, _ = study.prepare(subset, ("random", ipc), expert_epoch=args.expert_epoch)
        if k < C:
            labelled = study.cached(("topk", ipc, k), lambda: map_soft_labels(labelled, keep_topk, k=k))
        return study.train_cell(labelled, cell.seed)

    axis: list[Any] = list(ks) + (["hard"] if args.include_hard else [])
    cells = [Cell({"ipc": ipc, "topk": k}, seed) for ipc in args.ipcs for k in axis for seed in study.seeds()]
    records = study.run(cells, run_one)
    if records is None:
        return ExperimentResult(study.name, study.stats)
    summary = summarize(records, ["ipc", "topk"])
    label = lambda k: f"all ({k})" if k == C else str(k)  # noqa: E731  ("hard" stays "hard")
    table = pivot_table(summary, "topk", "ipc", row_label="top-k kept", fmt=label, col_fmt=str)
    gap = soft_hard_gap(summary, C if C in ks else max(ks))
    if gap:
        table += "\n\n" + markdown_table(
            ["IPC", "soft (all entries) − hard, points"], [[ipc, f"{g:+.1f}"] for ipc, g in gap.items()]
        )
    title = "Data–knowledge scaling: IPC × top-k soft-label entries"
    header = (
        f"# {title}\n\nRandom class-balanced subsets (seed {args.selection_seed}); labels "
        f"softmax(expert logits / {base.label_temperature:g}) truncated to their k largest entries; protocol: "
        f"{describe(base)}; mean ± std over {base.num_students} seeds."
        "\n\n"
    )
    extra = {"soft_minus_hard": {str(k): v for k, v in gap.items()}}
    files = write_results(
        study.output_dir,
        study.name,
        settings=study.settings(topks=ks),
        records=records,
        summary=summary,
        table=header + table,
        extra=extra,
    )
    plot_rows = [dict(r, topk=label(r["topk"])) for r in summary]
    files["plot"] = heatmap_plot(
        plot_rows,
        "topk",
        "ipc",
        study.path("data_knowledge_scaling.png"),
        title,
        row_label="soft-label entries kept (k)",
        col_label="images per class (IPC)",
    )
    return ExperimentResult(study.name, study.stats, records, summary, table, files, extra)
