"""``gift-hf improvement-over-random``: Improvement over random: a distilled set against random
real subsets of the same class counts, same protocol.

Options: the study's (below), the data options (``--dataset_name``, default the embedded
digits) and the protocol options (``--protocol gift`` by default, and any of its fields).
A single YAML/JSON file of options is accepted instead. Resumable; runs under
``accelerate launch`` with the cells shared between processes.
"""

from __future__ import annotations

from ..experiments.random_baseline import ImprovementOverRandomArguments, run_improvement_over_random
from ._experiment import run_experiment_command

HELP = "a distilled set vs random real subsets of the same size: the gap with its uncertainty"


def main(argv: list[str]) -> int:
    return run_experiment_command(
        argv, "improvement-over-random", __doc__, ImprovementOverRandomArguments, run_improvement_over_random,
        default_protocol="gift",
    )
