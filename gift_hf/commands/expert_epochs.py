"""``gift-hf expert-epochs``: The label paper's expert-epoch sweep: label random subsets with
each saved teacher checkpoint, at several IPC.

Options: the study's (below), the data options (``--dataset_name``, default the embedded
digits) and the protocol options (``--protocol label_paper`` by default, and any of its fields).
A single YAML/JSON file of options is accepted instead. Resumable; runs under
``accelerate launch`` with the cells shared between processes.
"""

from __future__ import annotations

from ..experiments.expert_epochs import ExpertEpochArguments, run_expert_epochs
from ._experiment import run_experiment_command

HELP = "soft labels from each saved teacher epoch at several IPC: where the best expert epoch moves"


def main(argv: list[str]) -> int:
    return run_experiment_command(
        argv, "expert-epochs", __doc__, ExpertEpochArguments, run_expert_epochs, default_protocol="label_paper"
    )
