"""``gift-hf temperature-grid``: Temperature × expert epoch grid at one IPC (label temperature
for stored probabilities, loss temperature otherwise).

Options: the study's (below), the data options (``--dataset_name``, default the embedded
digits) and the protocol options (``--protocol label_paper`` by default, and any of its fields).
A single YAML/JSON file of options is accepted instead. Resumable; runs under
``accelerate launch`` with the cells shared between processes.
"""

from __future__ import annotations

from ..experiments.temperature import TemperatureGridArguments, run_temperature_grid
from ._experiment import run_experiment_command

HELP = "label temperature × expert epoch grid (heatmap)"


def main(argv: list[str]) -> int:
    return run_experiment_command(
        argv, "temperature-grid", __doc__, TemperatureGridArguments, run_temperature_grid,
        default_protocol="label_paper",
    )
