"""``gift-hf expert-epochs``: The label paper's expert-epoch sweep: label random subsets with each saved teacher
checkpoint, at several IPC (recipe: ``recipes/label_paper/expert_epochs.yaml``).

Options: the study's, the data options (``--dataset_name``, default the embedded digits) and
every :class:`gift_hf.GIFTConfig` field of the students (``label_paper`` protocol by default).
Resumable; runs under ``accelerate launch -m gift_hf.scripts.expert_epochs`` with the cells shared
between processes.
"""

from gift_hf.scripts._study import run_as_script, study_script

make_parser, main = study_script(
    "expert-epochs", "expert_epochs", "ExpertEpochArguments", "run_expert_epochs", "label_paper", __doc__
)

if __name__ == "__main__":
    run_as_script(main)
