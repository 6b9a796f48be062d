"""The papers' experiments as resumable, process-splittable studies with tables and plots.

Each study trains students (cells) under an evaluation protocol
(:mod:`gift_hf.evaluation.evaluate`) and writes ``results.json`` (settings, every cell, the summary),
``results.csv``, ``results.md`` (a Markdown table) and a PNG plot into its ``output_dir``.
Running again into the same folder skips finished cells; under ``accelerate launch`` the
cells are shared out between processes and the main process merges them
(:mod:`gift_hf.studies.sweep`).

| study | function | command |
|---|---|---|
| losses × optimizers | :func:`run_loss_benchmark` | ``gift-hf loss-benchmark`` |
| teacher × student architectures | :func:`run_cross_architecture` | ``gift-hf cross-architecture`` |
| expert epoch × IPC | :func:`run_expert_epochs` | ``gift-hf expert-epochs`` |
| temperature × expert epoch | :func:`run_temperature_grid` | ``gift-hf temperature-grid`` |
| label swap test over k | :func:`run_label_swap` | ``gift-hf label-swap`` |
| IPC × top-k (data–knowledge scaling) | :func:`run_data_knowledge_scaling` | ``gift-hf data-knowledge-scaling`` |
| distilled vs random subsets | :func:`run_improvement_over_random` | ``gift-hf improvement-over-random`` |
"""

from gift_hf.studies.common import ExperimentArguments, ExperimentResult, Study
from gift_hf.studies.cross_architecture import CrossArchitectureArguments, run_cross_architecture
from gift_hf.studies.expert_epochs import ExpertEpochArguments, run_expert_epochs
from gift_hf.studies.label_swap import LabelSwapArguments, run_label_swap
from gift_hf.studies.loss_benchmark import LossBenchmarkArguments, run_loss_benchmark
from gift_hf.studies.random_baseline import ImprovementOverRandomArguments, run_improvement_over_random
from gift_hf.studies.scaling import DataKnowledgeScalingArguments, run_data_knowledge_scaling
from gift_hf.studies.sweep import Cell, SweepStats, run_cells
from gift_hf.studies.temperature import TemperatureGridArguments, run_temperature_grid

__all__ = [
    "Cell",
    "CrossArchitectureArguments",
    "DataKnowledgeScalingArguments",
    "ExperimentArguments",
    "ExperimentResult",
    "ExpertEpochArguments",
    "ImprovementOverRandomArguments",
    "LabelSwapArguments",
    "LossBenchmarkArguments",
    "Study",
    "SweepStats",
    "TemperatureGridArguments",
    "run_cells",
    "run_cross_architecture",
    "run_data_knowledge_scaling",
    "run_expert_epochs",
    "run_improvement_over_random",
    "run_label_swap",
    "run_loss_benchmark",
    "run_temperature_grid",
]
