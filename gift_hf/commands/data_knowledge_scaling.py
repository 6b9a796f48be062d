"""``gift-hf data-knowledge-scaling``: Data–knowledge scaling: IPC × top-k kept soft-label
entries (k = all … 1) and hard labels, as a heatmap.

Options: the study's (below), the data options (``--dataset_name``, default the embedded
digits) and the protocol options (``--protocol label_paper`` by default, and any of its fields).
A single YAML/JSON file of options is accepted instead. Resumable; runs under
``accelerate launch`` with the cells shared between processes.
"""

from __future__ import annotations

from ..experiments.scaling import DataKnowledgeScalingArguments, run_data_knowledge_scaling
from ._experiment import run_experiment_command

HELP = "IPC × top-k soft-label entries grid incl. hard labels (heatmap)"


def main(argv: list[str]) -> int:
    return run_experiment_command(
        argv, "data-knowledge-scaling", __doc__, DataKnowledgeScalingArguments, run_data_knowledge_scaling,
        default_protocol="label_paper",
    )
