"""``gift-hf evaluate``: Evaluate a distilled set the papers' way: ``num_students`` students trained under a
protocol (the GIFT paper's by default; ``--config recipes/label_paper/evaluate.yaml`` for the
label paper's), scored on the real test split, mean ± std.

Options: the study's, the data options (``--dataset_name``, default the embedded digits) and
every :class:`gift_hf.GIFTConfig` field of the students (``gift`` protocol by default).
Resumable; runs under ``accelerate launch -m gift_hf.scripts.evaluate`` with the cells shared
between processes.
"""

from gift_hf.scripts._study import run_as_script, study_script

make_parser, main = study_script("evaluate", "evaluate", "EvaluateArguments", "run_evaluate", "gift", __doc__)

if __name__ == "__main__":
    run_as_script(main)
