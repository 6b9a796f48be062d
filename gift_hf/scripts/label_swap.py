"""``gift-hf label-swap``: The label swap test: swap the k-th largest soft-label entry with the smallest, for each k
(recipe: ``recipes/label_paper/label_swap.yaml``).

Options: the study's, the data options (``--dataset_name``, default the embedded digits) and
every :class:`gift_hf.GIFTConfig` field of the students (``label_paper`` protocol by default).
Resumable; runs under ``accelerate launch -m gift_hf.scripts.label_swap`` with the cells shared
between processes.
"""

from gift_hf.scripts._study import run_as_script, study_script

make_parser, main = study_script(
    "label-swap", "label_swap", "LabelSwapArguments", "run_label_swap", "label_paper", __doc__
)

if __name__ == "__main__":
    run_as_script(main)
