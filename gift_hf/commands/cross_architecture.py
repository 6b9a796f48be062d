"""``gift-hf cross-architecture``: Cross-architecture study: students of several architectures
trained on the labels of several teachers.

Options: the study's (below), the data options (``--dataset_name``, default the embedded
digits) and the protocol options (``--protocol gift`` by default, and any of its fields).
A single YAML/JSON file of options is accepted instead. Resumable; runs under
``accelerate launch`` with the cells shared between processes.
"""

from __future__ import annotations

from ..experiments.cross_architecture import CrossArchitectureArguments, run_cross_architecture
from ._experiment import run_experiment_command

HELP = "teacher × student architectures on one distilled set (heatmap)"


def main(argv: list[str]) -> int:
    return run_experiment_command(
        argv, "cross-architecture", __doc__, CrossArchitectureArguments, run_cross_architecture, default_protocol="gift"
    )
