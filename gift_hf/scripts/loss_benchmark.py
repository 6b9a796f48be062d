"""``gift-hf loss-benchmark``: The GIFT paper's loss comparison and cross-optimizer study: every loss × every optimizer
on one distilled set (recipe: ``recipes/gift/loss_benchmark.yaml``).

Options: the study's, the data options (``--dataset_name``, default the embedded digits) and
every :class:`gift_hf.GIFTConfig` field of the students (``gift`` protocol by default).
Resumable; runs under ``accelerate launch -m gift_hf.scripts.loss_benchmark`` with the cells shared
between processes.
"""

from gift_hf.scripts._study import run_as_script, study_script

make_parser, main = study_script(
    "loss-benchmark", "loss_benchmark", "LossBenchmarkArguments", "run_loss_benchmark", "gift", __doc__
)

if __name__ == "__main__":
    run_as_script(main)
