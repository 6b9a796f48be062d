"""Temperature grid: label temperature × expert epoch at one IPC.

With stored probability labels (the label paper's protocol) the temperature is the one
the labels are made with, ``softmax(expert logits / T)``; with logits or online labels it
is the loss's temperature (``kl``, ``soft_ce``). A heatmap shows the accuracy over
T × expert epoch: softer labels (higher T) and earlier experts trade off.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from datasets import DatasetDict

from gift_hf.data.images import DataArguments
from gift_hf.engine.config import GIFTConfig
from gift_hf.studies.common import (
    ExperimentArguments,
    ExperimentResult,
    Study,
    describe,
    parse_list,
    saved_expert_epochs,
)
from gift_hf.studies.expert_epochs import best_by
from gift_hf.studies.report import heatmap_plot, pivot_table, summarize, write_results
from gift_hf.studies.sweep import Cell

__all__ = ["TemperatureGridArguments", "run_temperature_grid"]


@dataclass
class TemperatureGridArguments(ExperimentArguments):
    """Options of the temperature grid (``gift-hf temperature-grid``)."""

    grid_fields = ("temperatures", "expert_epochs")

    temperatures: list[float] = field(
        default_factory=lambda: [0.5, 1.0, 2.0, 4.0, 8.0], metadata={"help": "Temperatures to sweep."}
    )
    expert_epochs: Optional[list[float]] = field(
        default=None,
        metadata={
            "help": "Expert epochs to sweep. Default: every saved epoch of the teacher run, or only the "
            "final teacher when it has no checkpoints."
        },
    )
    ipc: int = field(default=10, metadata={"help": "Images per class of the random subset."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.temperatures = parse_list("temperatures", [float(t) for t in self.temperatures])
        if min(self.temperatures) <= 0:
            raise ValueError(f"temperatures: got {self.temperatures}; expected positive numbers")
        if self.expert_epochs is not None:
            self.expert_epochs = parse_list("expert_epochs", [float(e) for e in self.expert_epochs])
        if self.ipc < 1:
            raise ValueError(f"ipc: got {self.ipc}; expected >= 1")


def run_temperature_grid(
    args: TemperatureGridArguments,
    data_args: DataArguments | None = None,
    config: GIFTConfig | str = "label_paper",
    data: DatasetDict | None = None,
) -> ExperimentResult:
    """Sweep temperature × expert epoch; table, heatmap, best temperature per expert epoch."""
    study = Study("temperature_grid", args, data_args, config, data)
    base = study.config
    if base.label_source == "none":
        raise ValueError(f"loss: {base.loss!r} uses no soft labels, so a temperature changes nothing")
    stored_probabilities = base.label_source == "dataset" and base.soft_label_kind == "probabilities"
    knob = "label_temperature" if stored_probabilities else "temperature"
    if args.expert_epochs or _has_checkpoints(study):
        epochs: list[Any] = study.expert_epochs(args.expert_epochs)
    else:
        epochs = ["final"]
    for e in epochs:
        study.expert_path(None if e == "final" else e)

    def run_one(cell: Cell) -> dict[str, Any]:
        epoch = cell.params["expert_epoch"]
        p = base.replace(**{knob: cell.params["temperature"]})
        dataset, teacher = study.prepare(
            study.random_subset(args.ipc), ("random", args.ipc), p, expert_epoch=None if epoch == "final" else epoch
        )
        return study.train_cell(dataset, cell.seed, p, teacher)

    cells = [
        Cell({"temperature": t, "expert_epoch": e}, seed)
        for t in args.temperatures
        for e in epochs
        for seed in study.seeds()
    ]
    records = study.run(cells, run_one)
    if records is None:
        return ExperimentResult(study.name, study.stats)
    summary = summarize(records, ["temperature", "expert_epoch"])
    best = best_by(summary, "expert_epoch", "temperature")
    fmt = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    table = pivot_table(summary, "temperature", "expert_epoch", row_label="T", fmt=fmt)
    table += "\n\nBest T per expert epoch: " + ", ".join(
        f"epoch {fmt(e)} → T={b['temperature']:g} ({b['mean']:.1f}%)" for e, b in best.items()
    )
    title = f"Temperature × expert epoch (IPC={args.ipc})"
    header = (
        f"# {title}\n\nT is the {'labels’ softmax temperature' if stored_probabilities else 'loss temperature'}"
        f" (`{knob}`); protocol: {describe(base)}; "
        f"mean ± std over {base.num_students} seeds.\n\n"
    )
    extra = {"knob": knob, "best_temperature": {str(k): v for k, v in best.items()}}
    files = write_results(
        study.output_dir,
        study.name,
        settings=study.settings(expert_epochs=epochs, knob=knob),
        records=records,
        summary=summary,
        table=header + table,
        extra=extra,
    )
    files["plot"] = heatmap_plot(
        summary,
        "temperature",
        "expert_epoch",
        study.path("temperature_grid.png"),
        title,
        row_label="temperature T",
        col_label="expert epoch",
    )
    return ExperimentResult(study.name, study.stats, records, summary, table, files, extra)


def _has_checkpoints(study: Study) -> bool:
    path = study.config.teacher_model_name_or_path
    return bool(path and os.path.isdir(path) and saved_expert_epochs(path))
