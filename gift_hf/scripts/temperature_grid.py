"""``gift-hf temperature-grid``: Label temperature × expert epoch at one IPC (recipe:
``recipes/label_paper/temperature_grid.yaml``).

Options: the study's, the data options (``--dataset_name``, default the embedded digits) and
every :class:`gift_hf.GIFTConfig` field of the students (``label_paper`` protocol by default).
Resumable; runs under ``accelerate launch -m gift_hf.scripts.temperature_grid`` with the cells shared
between processes.
"""

from gift_hf.scripts._study import run_as_script, study_script

make_parser, main = study_script(
    "temperature-grid", "temperature", "TemperatureGridArguments", "run_temperature_grid", "label_paper", __doc__
)

if __name__ == "__main__":
    run_as_script(main)
