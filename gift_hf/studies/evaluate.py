"""Evaluate one distilled set under a protocol (``gift-hf evaluate``), as a resumable study.

The students (one per seed) are the cells, so an interrupted evaluation resumes and
``accelerate launch`` trains students in parallel. The report is mean ± std over students
(each the best of ``best_of`` evaluations where the protocol says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from datasets import DatasetDict

from gift_hf.data.images import DataArguments
from gift_hf.engine.config import GIFTConfig
from gift_hf.studies.common import ExperimentArguments, ExperimentResult, Study, describe
from gift_hf.studies.report import bar_plot, fmt_acc, markdown_table, summarize, write_results
from gift_hf.studies.sweep import Cell

__all__ = ["EvaluateArguments", "run_evaluate"]


@dataclass
class EvaluateArguments(ExperimentArguments):
    """Options of ``gift-hf evaluate``. The real test split comes from the data options
    (``--dataset_name``/``--eval_split``; default: the embedded digits)."""

    distilled: Optional[str] = field(
        default=None, metadata={"help": "The distilled set: a save_distilled folder (Hub layout) or a Hub dataset id."}
    )
    distilled_split: str = field(default="train", metadata={"help": "Split of the distilled set to train on."})
    keep_distilled_labels: bool = field(
        default=True,
        metadata={
            "help": "With a stored-label protocol, use the set's own soft labels when it has some (else the "
            "teacher computes them once)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.distilled:
            raise ValueError("distilled: got none; expected a distilled set (folder or Hub dataset id)")


def run_evaluate(
    args: EvaluateArguments,
    data_args: DataArguments | None = None,
    config: GIFTConfig | str = "gift",
    data: DatasetDict | None = None,
) -> ExperimentResult:
    """Train ``config.num_students`` students on the distilled set; mean ± std on the test split."""
    study = Study("evaluate", args, data_args, config, data)
    distilled = study.load_distilled(args.distilled, args.distilled_split)

    def run_one(cell: Cell) -> dict[str, Any]:
        dataset, teacher = study.prepare(distilled, "distilled", keep_stored=args.keep_distilled_labels)
        return study.train_cell(dataset, cell.seed, teacher=teacher)

    cells = [Cell({"set": "distilled"}, seed) for seed in study.seeds()]
    records = study.run(cells, run_one)
    if records is None:
        return ExperimentResult(study.name, study.stats)
    summary = summarize(records, ["set"])
    p = study.config
    rows = [
        [
            r["seed"],
            f"{100 * r['accuracy']:.2f}" if r["accuracy"] is not None else "failed (diverged)",
            " ".join(f"{100 * a:.1f}" for a in r["accuracies"]) or r.get("failure", ""),
        ]
        for r in records
    ]
    # the evaluations made, not only those asked for: a short run has fewer distinct evaluation points
    made = max((len(r["accuracies"]) for r in records), default=0)
    evaluations = (
        f"evaluations (best of {made})"
        if made == p.best_of or p.eval_every_epochs
        else (f"evaluations (best of {made}; best_of={p.best_of} asked, the run has {made} distinct evaluation points)")
    )
    table = f"**{fmt_acc(summary[0], 2)}** (mean ± std over {len(records)} students)\n\n" + markdown_table(
        ["seed", "reported accuracy (%)", evaluations], rows
    )
    title = f"{args.distilled} ({len(distilled)} images)"
    header = f"# {title}\n\nProtocol: {describe(p, len(distilled))}.\n\n"
    files = write_results(
        study.output_dir, study.name, settings=study.settings(), records=records, summary=summary, table=header + table
    )
    files["plot"] = bar_plot(summary, "set", "set", study.path("evaluate.png"), title)
    return ExperimentResult(study.name, study.stats, records, summary, table, files)
