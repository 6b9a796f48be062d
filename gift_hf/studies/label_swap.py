"""Label swap test: destroy the ranking structure of soft labels and watch accuracy fall.

For each ``k`` the stored soft label of every image has its k-th largest entry swapped
with its smallest (:func:`gift_hf.data.ablations.swap_topk`): the same values, a different
ranking. ``k = 1`` moves the top class to the bottom. Students trained on the swapped
labels are compared with the untouched labels (``none``) and with hard labels (``hard``):
if the ranking carries knowledge, accuracy drops most when the top entries are swapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from datasets import DatasetDict

from gift_hf.data.ablations import map_soft_labels, swap_topk
from gift_hf.data.images import DataArguments
from gift_hf.engine.config import GIFTConfig
from gift_hf.studies.common import ExperimentArguments, ExperimentResult, Study, describe, parse_list
from gift_hf.studies.report import fmt_acc, line_plot, markdown_table, summarize, write_results
from gift_hf.studies.sweep import Cell

__all__ = ["LabelSwapArguments", "default_swap_ks", "run_label_swap"]


def default_swap_ks(num_classes: int) -> list[int]:
    """1, 2, 3, 5, 10, 20, 50, … below ``num_classes``, and ``num_classes − 1``."""
    steps = [1, 2, 3, 5, 10, 20, 50, 100, 200, 500]
    return sorted({k for k in steps if k < num_classes} | {max(1, num_classes - 1)})


@dataclass
class LabelSwapArguments(ExperimentArguments):
    """Options of the label swap test (``gift-hf label-swap``)."""

    grid_fields = ("ks", "include_hard")

    ks: Optional[list[int]] = field(
        default=None,
        metadata={
            "help": "Swap the k-th largest entry with the smallest for each k. Default: 1, 2, 3, 5, 10, … "
            "below the number of classes C, and C − 1."
        },
    )
    ipc: int = field(default=10, metadata={"help": "Images per class of the random subset."})
    expert_epoch: Optional[float] = field(
        default=None, metadata={"help": "Label with the teacher's checkpoint of this epoch (default: final model)."}
    )
    include_hard: bool = field(default=True, metadata={"help": "Also train on hard labels (reference)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ks is not None:
            self.ks = parse_list("ks", [int(k) for k in self.ks])
            if min(self.ks) < 1:
                raise ValueError(f"ks: got {self.ks}; expected ranks >= 1")
        if self.ipc < 1:
            raise ValueError(f"ipc: got {self.ipc}; expected >= 1")


def run_label_swap(
    args: LabelSwapArguments,
    data_args: DataArguments | None = None,
    config: GIFTConfig | str = "label_paper",
    data: DatasetDict | None = None,
) -> ExperimentResult:
    """Train on swapped soft labels for each k, untouched labels and hard labels; table + plot."""
    study = Study("label_swap", args, data_args, config, data)
    base = study.config
    study.require_stored_labels("the swap test")
    ks = args.ks or default_swap_ks(study.num_classes)
    if max(ks) > study.num_classes:
        raise ValueError(f"ks: got {max(ks)}; expected ranks <= the number of classes {study.num_classes}")
    study.expert_path(args.expert_epoch)
    hard = base.replace(loss="ce")

    def run_one(cell: Cell) -> dict[str, Any]:
        swap = cell.params["swap"]
        subset = study.random_subset(args.ipc)
        if swap == "hard":
            return study.train_cell(subset, cell.seed, hard)
        labelled, _ = study.prepare(subset, ("random", args.ipc), expert_epoch=args.expert_epoch)
        if swap != "none":
            labelled = study.cached(("swap", swap), lambda: map_soft_labels(labelled, swap_topk, k=int(swap)))
        return study.train_cell(labelled, cell.seed)

    swaps: list[Any] = ["none", *ks] + (["hard"] if args.include_hard else [])
    cells = [Cell({"swap": s}, seed) for s in swaps for seed in study.seeds()]
    records = study.run(cells, run_one)
    if records is None:
        return ExperimentResult(study.name, study.stats)
    summary = summarize(records, ["swap"])
    index = {row["swap"]: row for row in summary}
    reference = index["none"]["mean"]
    rows = [
        [
            {"none": "none (original labels)", "hard": "hard labels"}.get(s, f"k={s}"),
            fmt_acc(index[s]),
            f"{index[s]['mean'] - reference:+.1f}",
        ]
        for s in swaps
    ]
    table = markdown_table(["swap", "accuracy (%)", "Δ vs original"], rows)
    title = f"Label swap test (IPC={args.ipc})"
    header = (
        f"# {title}\n\nThe k-th largest soft-label entry swapped with the smallest; protocol: "
        f"{describe(base)}; mean ± std over {base.num_students} seeds.\n\n"
    )
    files = write_results(
        study.output_dir,
        study.name,
        settings=study.settings(ks=ks),
        records=records,
        summary=summary,
        table=header + table,
    )
    refs = {"original labels": reference}
    if "hard" in index:
        refs["hard labels"] = index["hard"]["mean"]
    files["plot"] = line_plot(
        [r for r in summary if r["swap"] not in ("none", "hard")],
        "swap",
        None,
        study.path("label_swap.png"),
        title,
        x_label="k (k-th largest ↔ smallest)",
        references=refs,
    )
    return ExperimentResult(study.name, study.stats, records, summary, table, files)
