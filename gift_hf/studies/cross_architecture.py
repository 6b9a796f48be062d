"""Cross-architecture: teachers × student architectures on one distilled set.

Each teacher labels the set (online or stored, as the protocol says) and students of
every listed architecture are trained on it under the same protocol and seeds; the table
and heatmap show which teacher/student pairs transfer. The diagonal (same architecture)
is the usual setting; off-diagonal cells are the GIFT paper's cross-architecture study.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from datasets import DatasetDict

from gift_hf.data.images import DataArguments
from gift_hf.engine.config import GIFTConfig
from gift_hf.models.modeling import model_spec
from gift_hf.parser import parse_dict_option
from gift_hf.studies.common import ExperimentArguments, ExperimentResult, Study, describe, parse_list
from gift_hf.studies.report import heatmap_plot, pivot_table, summarize, write_results
from gift_hf.studies.sweep import Cell

__all__ = ["CrossArchitectureArguments", "run_cross_architecture"]


@dataclass
class CrossArchitectureArguments(ExperimentArguments):
    """Options of the cross-architecture study (``gift-hf cross-architecture``)."""

    grid_fields = ("student_archs",)  # teachers are rows by folder name: a changed list recomputes

    teachers: Optional[list[str]] = field(
        default=None,
        metadata={
            "help": "Teachers (folders saved with save_pretrained, or Hub ids). Default: "
            "teacher_model_name_or_path alone."
        },
    )
    student_archs: list[str] = field(
        default_factory=lambda: ["gift_convnet_d3"], metadata={"help": "timm architectures of the students."}
    )
    arch_model_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "timm.create_model keyword arguments per student architecture, {arch: {...}} (a JSON "
            'object on the command line, e.g. \'{"gift_convnet_d3": {"width": 32}}\').'
        },
    )
    distilled: Optional[str] = field(
        default=None,
        metadata={
            "help": "The distilled set (save_distilled folder or Hub id). Default: a random class-balanced "
            "subset with `ipc` images per class."
        },
    )
    distilled_split: str = field(default="train", metadata={"help": "Split of the distilled set to train on."})
    ipc: int = field(default=10, metadata={"help": "Images per class of the default random subset."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.teachers is not None:
            self.teachers = parse_list("teachers", self.teachers)
        self.student_archs = parse_list("student_archs", self.student_archs)
        self.arch_model_kwargs = parse_dict_option("arch_model_kwargs", self.arch_model_kwargs) or {}
        unknown = sorted(set(self.arch_model_kwargs) - set(self.student_archs))
        if unknown:
            raise ValueError(
                f"arch_model_kwargs: architectures {unknown} are not in student_archs {self.student_archs}"
            )
        if self.ipc < 1:
            raise ValueError(f"ipc: got {self.ipc}; expected >= 1")


def _teacher_names(paths: list[str]) -> dict[str, str]:
    """Short, unique row names for teachers: the folder name (the full path when ambiguous)."""
    short = {p: os.path.basename(os.path.normpath(p)) or p for p in paths}
    if len(set(short.values())) < len(short):
        return {p: p for p in paths}
    return short


def run_cross_architecture(
    args: CrossArchitectureArguments,
    data_args: DataArguments | None = None,
    config: GIFTConfig | str = "gift",
    data: DatasetDict | None = None,
) -> ExperimentResult:
    """Train every student architecture on every teacher's labels; table + heatmap."""
    study = Study("cross_architecture", args, data_args, config, data)
    distilled, source = study.training_set(args)
    teachers = args.teachers or [study.config.teacher_model_name_or_path]
    if teachers == [None]:
        raise ValueError("teachers: got none and no teacher_model_name_or_path; expected at least one teacher")
    names = _teacher_names(teachers)
    by_name = {v: k for k, v in names.items()}
    # every teacher is checked against the data before any student trains
    architectures = {names[t]: model_spec(study.teacher(t))["arch"] for t in teachers}

    def run_one(cell: Cell) -> dict[str, Any]:
        teacher_path = by_name[cell.params["teacher"]]
        dataset, teacher = study.prepare(distilled, "distilled", teacher=teacher_path)
        arch = cell.params["student"]
        spec = study.student_spec(arch=arch)
        spec.model_kwargs = dict(args.arch_model_kwargs.get(arch, spec.model_kwargs))
        record = study.train_cell(dataset, cell.seed, teacher=teacher, student=spec)
        record["teacher_arch"] = architectures[cell.params["teacher"]]
        return record

    cells = [
        Cell({"teacher": names[t], "student": a}, seed)
        for t in teachers
        for a in args.student_archs
        for seed in study.seeds()
    ]
    records = study.run(cells, run_one)
    if records is None:
        return ExperimentResult(study.name, study.stats)
    summary = summarize(records, ["teacher", "student"])
    for row in summary:
        row["teacher_arch"] = architectures[row["teacher"]]
    table = pivot_table(
        summary,
        "teacher",
        "student",
        row_label="teacher (arch)",
        fmt=lambda v: f"{v} ({architectures[v]})",
        col_fmt=str,
    )
    p = study.config
    title = f"Teacher × student architecture on {source}"
    header = f"# {title}\n\nTest accuracy (%), mean ± std over {p.num_students} seeds; protocol: {describe(p)}.\n\n"
    files = write_results(
        study.output_dir,
        study.name,
        settings=study.settings(teacher_architectures=architectures),
        records=records,
        summary=summary,
        table=header + table,
    )
    files["plot"] = heatmap_plot(
        summary,
        "teacher",
        "student",
        study.path("cross_architecture.png"),
        title,
        row_label="teacher",
        col_label="student architecture",
    )
    return ExperimentResult(study.name, study.stats, records, summary, table, files)
