"""``gift-hf cross-architecture``: Teachers × student architectures on one distilled set (recipe:
``recipes/gift/cross_architecture.yaml``).

Options: the study's, the data options (``--dataset_name``, default the embedded digits) and
every :class:`gift_hf.GIFTConfig` field of the students (``gift`` protocol by default).
Resumable; runs under ``accelerate launch -m gift_hf.scripts.cross_architecture`` with the cells shared
between processes.
"""

from gift_hf.scripts._study import run_as_script, study_script

make_parser, main = study_script(
    "cross-architecture", "cross_architecture", "CrossArchitectureArguments", "run_cross_architecture", "gift", __doc__
)

if __name__ == "__main__":
    run_as_script(main)
