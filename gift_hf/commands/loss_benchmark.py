"""``gift-hf loss-benchmark``: The GIFT paper's loss comparison and cross-optimizer study:
every loss × every optimizer on one distilled set.

Options: the study's (below), the data options (``--dataset_name``, default the embedded
digits) and the protocol options (``--protocol gift`` by default, and any of its fields).
A single YAML/JSON file of options is accepted instead. Resumable; runs under
``accelerate launch`` with the cells shared between processes.
"""

from __future__ import annotations

from ..experiments.loss_benchmark import LossBenchmarkArguments, run_loss_benchmark
from ._experiment import run_experiment_command

HELP = "losses × optimizers on one distilled set, with the spread across optimizers per loss"


def main(argv: list[str]) -> int:
    return run_experiment_command(
        argv, "loss-benchmark", __doc__, LossBenchmarkArguments, run_loss_benchmark, default_protocol="gift"
    )
