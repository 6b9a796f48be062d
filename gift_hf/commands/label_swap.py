"""``gift-hf label-swap``: The label paper's swap test: destroy the ranking of stored soft
labels (k-th largest <-> smallest) for each k.

Options: the study's (below), the data options (``--dataset_name``, default the embedded
digits) and the protocol options (``--protocol label_paper`` by default, and any of its fields).
A single YAML/JSON file of options is accepted instead. Resumable; runs under
``accelerate launch`` with the cells shared between processes.
"""

from __future__ import annotations

from ..experiments.label_swap import LabelSwapArguments, run_label_swap
from ._experiment import run_experiment_command

HELP = "label swap test: swap the k-th largest soft-label entry with the smallest, over k"


def main(argv: list[str]) -> int:
    return run_experiment_command(
        argv, "label-swap", __doc__, LabelSwapArguments, run_label_swap, default_protocol="label_paper"
    )
