"""``gift-hf evaluate``: Evaluate a distilled set the papers' way: ``num_students`` students
trained with GIFTTrainer under a protocol (``gift`` or ``label_paper``, every field
overridable), scored on the real test split, mean ± std.

Options: the study's (below), the data options (``--dataset_name``, default the embedded
digits) and the protocol options (``--protocol gift`` by default, and any of its fields).
A single YAML/JSON file of options is accepted instead. Resumable; runs under
``accelerate launch`` with the cells shared between processes.
"""

from __future__ import annotations

from ..experiments.evaluate import EvaluateArguments, run_evaluate
from ._experiment import run_experiment_command

HELP = "evaluate a distilled set (folder or Hub id) under a protocol: N students, mean ± std on the real test split"


def main(argv: list[str]) -> int:
    return run_experiment_command(
        argv, "evaluate", __doc__, EvaluateArguments, run_evaluate, default_protocol="gift"
    )
