"""Loss benchmark: losses × optimizers on one distilled set (GIFT paper, Tables 1–2 and the
cross-optimizer study).

Every loss is trained on the same distilled set with the same protocol, budget and student
seeds; only the optimizer changes across columns (each with its own learning rate from
:data:`OPTIMIZERS`, the same for every loss). The table reports each
loss under each optimizer, its mean over optimizers and its *spread* (best − worst
optimizer): a loss that generalises across optimizers has a small spread.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Optional

from datasets import DatasetDict

from gift_hf.data.images import DataArguments
from gift_hf.engine.config import GIFTConfig
from gift_hf.engine.losses import LOSSES
from gift_hf.parser import parse_dict_option
from gift_hf.studies.common import ExperimentArguments, ExperimentResult, Study, describe, parse_list
from gift_hf.studies.report import bar_plot, fmt_acc, markdown_table, summarize, write_results
from gift_hf.studies.sweep import Cell

__all__ = ["DEFAULT_LOSSES", "OPTIMIZERS", "LossBenchmarkArguments", "optimizer_settings", "run_loss_benchmark"]

DEFAULT_LOSSES = ["ce", "kl", "soft_ce", "mse", "mse_ce", "soft_ce_ce", "cosine", "gift"]

#: The optimizers of the cross-optimizer study, with the learning rate each uses when not
#: given (the same for every loss).
OPTIMIZERS: dict[str, float] = {"sgd": 0.01, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3}


def optimizer_settings(name: str, learning_rate: float) -> tuple[dict[str, Any], tuple[type, dict] | None]:
    """``GIFTConfig`` changes for the study's optimizer ``name``, and the optimizer class the
    Trainer is given when ``TrainingArguments.optim`` has no name for it (plain Adam: L2
    weight decay coupled to the gradient, unlike AdamW)."""
    if name == "adam":
        import torch

        return {"optim": "adamw_torch", "learning_rate": learning_rate}, (torch.optim.Adam, {"lr": learning_rate})
    optim = {"sgd": "sgd", "adamw": "adamw_torch", "rmsprop": "rmsprop"}[name]
    return {
        "optim": optim,
        "optim_args": "momentum=0.9" if name == "sgd" else None,
        "learning_rate": learning_rate,
    }, None


@dataclass
class LossBenchmarkArguments(ExperimentArguments):
    """Options of the loss benchmark (``gift-hf loss-benchmark``)."""

    grid_fields = ("losses", "optimizers")

    losses: list[str] = field(
        default_factory=lambda: list(DEFAULT_LOSSES), metadata={"help": f"Losses to compare, from {sorted(LOSSES)}."}
    )
    optimizers: list[str] = field(
        default_factory=lambda: ["sgd", "adam", "adamw", "rmsprop"],
        metadata={"help": f"Student optimizers, from {sorted(OPTIMIZERS)}."},
    )
    optimizer_learning_rates: dict | str | None = field(
        default=None,
        metadata={
            "help": "Learning rate per optimizer as a JSON object, e.g. '{\"sgd\": 0.05}'; the others keep "
            f"their defaults {OPTIMIZERS}. The same rate is used for every loss."
        },
    )
    distilled: Optional[str] = field(
        default=None,
        metadata={
            "help": "The distilled set (a folder saved by save_distilled or a Hub dataset id). Default: a "
            "random class-balanced subset of the training split with `ipc` images per class."
        },
    )
    distilled_split: str = field(default="train", metadata={"help": "Split of the distilled set to train on."})
    ipc: int = field(default=10, metadata={"help": "Images per class of the default random subset."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.losses = parse_list("losses", self.losses, allowed=sorted(LOSSES))
        self.optimizers = parse_list("optimizers", self.optimizers, allowed=sorted(OPTIMIZERS))
        rates = parse_dict_option("optimizer_learning_rates", self.optimizer_learning_rates) or {}
        for name, rate in rates.items():
            if name not in OPTIMIZERS:
                raise ValueError(
                    f"optimizer_learning_rates: unknown optimizer {name!r}; expected keys from {sorted(OPTIMIZERS)}"
                )
            if not isinstance(rate, (int, float)) or rate <= 0:
                raise ValueError(f"optimizer_learning_rates: {name} got {rate!r}; expected a positive number")
        self.optimizer_learning_rates = rates
        if self.ipc < 1:
            raise ValueError(f"ipc: got {self.ipc}; expected >= 1")

    def learning_rate(self, optimizer: str, config: GIFTConfig) -> float:
        """The rate of ``optimizer``: an explicit one, the config's for its own optimizer, else the default."""
        if optimizer in self.optimizer_learning_rates:
            return float(self.optimizer_learning_rates[optimizer])
        own = {"adamw_torch": "adamw", "sgd": "sgd", "rmsprop": "rmsprop"}.get(getattr(config.optim, "value", ""))
        return config.learning_rate if optimizer == own else OPTIMIZERS[optimizer]


def _spread_rows(summary: list[dict[str, Any]], losses: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for loss in losses:
        means = [s["mean"] for s in summary if s["loss"] == loss]
        out[loss] = {
            "mean_over_optimizers": statistics.fmean(means),
            "worst": min(means),
            "best": max(means),
            "spread": max(means) - min(means),
            "std_over_optimizers": statistics.stdev(means) if len(means) > 1 else 0.0,
        }
    return out


def loss_optimizer_table(summary: list[dict[str, Any]], losses: list[str], optimizers: list[str]) -> str:
    """Loss rows × optimizer columns (best loss per column in bold), mean over optimizers and spread."""
    index = {(s["loss"], s["optimizer"]): s for s in summary}
    best = {o: max(losses, key=lambda loss: index[(loss, o)]["mean"]) for o in optimizers}
    spreads = _spread_rows(summary, losses)
    rows = []
    for loss in losses:
        cells = []
        for o in optimizers:
            text = fmt_acc(index[(loss, o)])
            cells.append(f"**{text}**" if best[o] == loss else text)
        sp = spreads[loss]
        rows.append([loss, *cells, f"{sp['mean_over_optimizers']:.1f}", f"{sp['spread']:.1f}"])
    return markdown_table(["loss", *optimizers, "mean over optimizers", "spread (best − worst)"], rows)


def run_loss_benchmark(
    args: LossBenchmarkArguments,
    data_args: DataArguments | None = None,
    config: GIFTConfig | str = "gift",
    data: DatasetDict | None = None,
) -> ExperimentResult:
    """Run the loss × optimizer grid; write results.{json,csv,md} and ``loss_benchmark.png``."""
    study = Study("loss_benchmark", args, data_args, config, data)
    distilled, source = study.training_set(args)
    base = study.config
    rates = {o: args.learning_rate(o, base) for o in args.optimizers}

    def run_one(cell: Cell) -> dict[str, Any]:
        changes, optimizer = optimizer_settings(cell.params["optimizer"], rates[cell.params["optimizer"]])
        p = base.replace(loss=cell.params["loss"], **changes)
        dataset, teacher = study.prepare(distilled, "distilled", p, keep_stored=True)
        return study.train_cell(dataset, cell.seed, p, teacher, optimizer_cls_and_kwargs=optimizer)

    cells = [
        Cell({"loss": loss, "optimizer": o}, seed)
        for loss in args.losses
        for o in args.optimizers
        for seed in study.seeds()
    ]
    records = study.run(cells, run_one)
    if records is None:
        return ExperimentResult(study.name, study.stats)
    summary = summarize(records, ["loss", "optimizer"])
    table = loss_optimizer_table(summary, args.losses, args.optimizers)
    spreads = _spread_rows(summary, args.losses)
    title = f"Loss × optimizer on {source} ({len(distilled)} images)"
    header = (
        f"# {title}\n\nTest accuracy (%) of students, mean ± std over {base.num_students} seeds; "
        f"{describe(base)}; learning rates {rates}.\n\n"
    )
    files = write_results(
        study.output_dir,
        study.name,
        settings=study.settings(learning_rates=rates),
        records=records,
        summary=summary,
        table=header + table,
        extra={"spread": spreads},
    )
    files["plot"] = bar_plot(summary, "loss", "optimizer", study.path("loss_benchmark.png"), title)
    return ExperimentResult(study.name, study.stats, records, summary, table, files, {"spread": spreads})
