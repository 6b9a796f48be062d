"""``gift-hf improvement-over-random``: A distilled set against random real subsets of the same size
under the identical protocol: the gap with its uncertainty (recipe:
``recipes/gift/improvement_over_random.yaml``).

Options: the study's, the data options (``--dataset_name``, default the embedded digits) and
every :class:`gift_hf.GIFTConfig` field of the students (``gift`` protocol by default).
Resumable; runs under ``accelerate launch -m gift_hf.scripts.improvement_over_random`` with the cells shared
between processes.
"""

from gift_hf.scripts._study import run_as_script, study_script

make_parser, main = study_script(
    "improvement-over-random",
    "random_baseline",
    "ImprovementOverRandomArguments",
    "run_improvement_over_random",
    "gift",
    __doc__,
)

if __name__ == "__main__":
    run_as_script(main)
