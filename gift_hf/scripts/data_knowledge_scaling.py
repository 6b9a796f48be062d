"""``gift-hf data-knowledge-scaling``: Data–knowledge scaling: IPC × top-k soft-label entries, and the
soft − hard gap (recipe: ``recipes/label_paper/data_knowledge_scaling.yaml``).

Options: the study's, the data options (``--dataset_name``, default the embedded digits) and
every :class:`gift_hf.GIFTConfig` field of the students (``label_paper`` protocol by default).
Resumable; runs under ``accelerate launch -m gift_hf.scripts.data_knowledge_scaling`` with the cells shared
between processes.
"""

from gift_hf.scripts._study import run_as_script, study_script

make_parser, main = study_script(
    "data-knowledge-scaling",
    "scaling",
    "DataKnowledgeScalingArguments",
    "run_data_knowledge_scaling",
    "label_paper",
    __doc__,
)

if __name__ == "__main__":
    run_as_script(main)
