"""What every study shares: its arguments, the data, teachers, students and the cell runner.

A study's options are its own dataclass (a subclass of :class:`ExperimentArguments`), the
data options (:class:`gift_hf.data.images.DataArguments`) and the training configuration of its
students (:class:`gift_hf.GIFTConfig`: the protocol; ``output_dir`` is where the study writes,
``teacher_model_name_or_path`` its teacher, ``seed`` the first student's seed).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Optional

import timm
from datasets import Dataset, DatasetDict
from torch import nn

from gift_hf.data.images import DataArguments, image_spec, label_names, load_image_dataset
from gift_hf.engine.checkpoints import list_checkpoints
from gift_hf.engine.config import GIFTConfig, protocol_config
from gift_hf.engine.training import check_model_input
from gift_hf.evaluation.evaluate import StudentSpec, train_on_distilled
from gift_hf.files import check_outputs
from gift_hf.models.modeling import load_teacher, model_spec
from gift_hf.parser import parse_dict_option
from gift_hf.studies.sweep import Cell, SweepStats, fingerprint_of, run_cells

__all__ = ["ExperimentArguments", "ExperimentResult", "Study", "describe", "parse_list", "saved_expert_epochs"]

logger = logging.getLogger(__name__)


def describe(config: GIFTConfig, num_images: int | None = None) -> str:
    """A one-line description of a protocol for report headers."""
    text = (
        f"loss {config.loss}, labels {config.label_source}, {config.optim} lr {config.learning_rate:g}, "
        f"{config.num_train_epochs:g} epochs"
    )
    if num_images is not None:
        text += f", batch {config.train_batch_size_for(num_images)}"
    return text + f", augmentation {config.augmentation}"


def parse_list(name: str, values: Iterable[Any], allowed: Iterable[Any] | None = None, minimum: int = 1) -> list:
    """Check a grid axis: non-empty, no duplicates, values allowed."""
    values = list(values)
    if len(values) < minimum:
        raise ValueError(f"{name}: got {values}; expected at least {minimum} value(s)")
    if len(set(map(str, values))) != len(values):
        raise ValueError(f"{name}: got {values}; expected no duplicates")
    if allowed is not None:
        allowed = list(allowed)
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ValueError(f"{name}: got {bad[0]!r}; expected values from {allowed}")
    return values


def saved_expert_epochs(run_dir: str) -> list[float]:
    """Epochs of the complete ``checkpoint-*`` folders of a ``Trainer`` run, ascending."""
    return sorted({checkpoint.epoch for checkpoint in list_checkpoints(run_dir)})


@dataclass
class ExperimentArguments:
    """Options every study has (the data options are ``gift_hf.data.images.DataArguments``, the
    students' training options :class:`gift_hf.GIFTConfig`)."""

    student_arch: Optional[str] = field(
        default=None, metadata={"help": "timm architecture of the students. Default: the teacher's."}
    )
    student_model_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "Extra timm.create_model keyword arguments of the students (a JSON object on the command "
            "line). Default: the teacher's when the student has the teacher's architecture."
        },
    )
    selection_seed: int = field(default=0, metadata={"help": "Seed of the random class-balanced subsets."})
    resume: bool = field(
        default=True,
        metadata={"help": "Reuse finished cells found in output_dir (computed with the same settings)."},
    )
    merge_timeout: Optional[float] = field(
        default=None,
        metadata={
            "help": "Under `accelerate launch`: seconds the main process waits for the other processes' "
            "cells before failing (default: no limit)."
        },
    )

    def __post_init__(self) -> None:
        self.student_model_kwargs = parse_dict_option("student_model_kwargs", self.student_model_kwargs)

    #: Options that list the grid's axes: a cell's own params identify it, so growing an
    #: axis keeps the finished cells (subclasses name theirs).
    grid_fields: ClassVar[tuple[str, ...]] = ()

    def fingerprint_settings(self) -> dict[str, Any]:
        """The options every cell's result depends on (not where results go, how cells are
        scheduled, or which cells make up the grid)."""
        skip = {"resume", "merge_timeout", *self.grid_fields}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


class Study:
    """The data, teachers, students and cell runner of one study.

    Args:
        name: the study's name (file names, progress bars).
        args: its :class:`ExperimentArguments` (subclass).
        data_args: where the data comes from (default: the embedded digits).
        config: how students are trained (a :class:`~gift_hf.GIFTConfig`, or a protocol name of
            :data:`gift_hf.engine.config.PROTOCOLS`); its ``output_dir`` is the study's folder.
        data: an already loaded ``DatasetDict`` with ``train`` and ``test`` (or ``eval``) splits;
            ``data_args`` still say how its images are normalised (default: digits statistics
            when ``dataset_name`` is unset).
    """

    def __init__(
        self,
        name: str,
        args: ExperimentArguments,
        data_args: DataArguments | None = None,
        config: GIFTConfig | str = "gift",
        data: DatasetDict | None = None,
    ) -> None:
        self.name = name
        self.args = args
        self.data_args = data_args or DataArguments()
        self.config = protocol_config(config, output_dir=f"outputs/{name}") if isinstance(config, str) else config
        self.output_dir = self.config.output_dir
        if data is None:
            data = load_image_dataset(self.data_args)
        if "train" not in data or not ({"test", "eval"} & set(data)):
            raise ValueError(f"data: got splits {sorted(data)}; expected 'train' and 'test' (or 'eval')")
        self.train: Dataset = data["train"]
        self.test: Dataset = data["test"] if "test" in data else data["eval"]
        self.image_column = self.data_args.image_column
        self.label_column = self.data_args.label_column
        self.class_names, self.channels, self.image_size, transform = image_spec(self.train, self.data_args)
        self.num_classes = len(self.class_names)
        self.image_mean, self.image_std = tuple(transform.mean), tuple(transform.std)
        self._teachers: dict[str, nn.Module] = {}
        self._datasets: dict[Any, Dataset] = {}
        # students trained together, by training set (see train_cell): key → (what the key's ids
        # name, kept alive so no id is reused; {seed: result}, or None when they cannot be)
        self._together: dict[tuple, tuple[tuple, dict[int, Any] | None]] = {}
        # During run(): this process's cells (under `accelerate launch` a share of the grid) and
        # the cell being trained, so that only this process's seeds of a setting train together.
        self._share: list[Cell] | None = None
        self._cell: Cell | None = None
        self.stats: SweepStats | None = None

    # ------------------------------------------------------------------ models
    def teacher_path(self, name_or_path: str | None = None) -> str:
        """``name_or_path``, else ``teacher_model_name_or_path``; an error naming it when neither is set."""
        name_or_path = name_or_path or self.config.teacher_model_name_or_path
        if name_or_path is None:
            raise ValueError("teacher_model_name_or_path: this study needs a teacher (expert); got none")
        return name_or_path

    def teacher(self, name_or_path: str | None = None) -> nn.Module:
        """A teacher, loaded once and checked against the data (classes, channels, size)."""
        name_or_path = self.teacher_path(name_or_path)
        if name_or_path not in self._teachers:
            model = load_teacher(
                name_or_path,
                trust_remote_code=self.config.trust_remote_code,
                **(self.config.teacher_model_init_kwargs or {}),
            )
            check_model_input(model, f"teacher {name_or_path!r}", self.channels, self.image_size, self.num_classes)
            spec = model_spec(model) if getattr(model, "config", None) is not None else {}
            for name, ours in (("image_mean", self.image_mean), ("image_std", self.image_std)):
                theirs = spec.get(name)
                if theirs and len(theirs) == len(ours) and any(abs(a - b) > 1e-4 for a, b in zip(theirs, ours)):
                    # online relabelling converts the students' pixel_values to the teacher's normalisation
                    logger.warning(
                        f"teacher {name_or_path!r} was trained with {name}={list(theirs)} but the data "
                        f"is normalised with {list(ours)}: the teacher's input is converted to its own "
                        "normalisation (exact)"
                    )
            self._teachers[name_or_path] = model
        return self._teachers[name_or_path]

    def student_spec(self, arch: str | None = None, teacher: nn.Module | None = None) -> StudentSpec:
        """The student: ``arch`` (else ``--student_arch``, else the teacher's) on this data's input."""
        explicit = arch or self.args.student_arch
        kwargs = dict(self.args.student_model_kwargs or {})
        if explicit is None:
            teacher = (
                teacher if teacher is not None else (self.teacher() if self.config.teacher_model_name_or_path else None)
            )
            spec = model_spec(teacher) if getattr(teacher, "config", None) is not None else {}
            if not timm.list_models(spec.get("arch") or "-"):
                raise ValueError("student_arch: not set and the teacher's architecture is unknown; pass --student_arch")
            explicit = spec["arch"]
            if self.args.student_model_kwargs is None:
                kwargs = dict(spec["model_kwargs"])
        return StudentSpec(
            arch=explicit,
            in_chans=self.channels,
            img_size=self.image_size,
            image_mean=self.image_mean,
            image_std=self.image_std,
            model_kwargs=kwargs,
        )

    # ------------------------------------------------------------------ data
    def random_subset(self, ipc: int, seed: int | None = None) -> Dataset:
        """``ipc`` random real images per class of the training split (cached per (ipc, seed))."""
        from gift_hf.data.selection import build_random_distilled

        seed = self.args.selection_seed if seed is None else seed
        key = ("random", ipc, seed)
        if key not in self._datasets:
            subset, _ = build_random_distilled(self.train, ipc, seed=seed, label_column=self.label_column)
            self._datasets[key] = subset
        return self._datasets[key]

    def expert_path(self, expert_epoch: float | None, teacher: str | None = None) -> str:
        """The teacher's checkpoint of ``expert_epoch`` (its final model when None)."""
        from gift_hf.data.relabel import resolve_expert_checkpoint

        teacher = self.teacher_path(teacher)
        return teacher if expert_epoch is None else str(resolve_expert_checkpoint(teacher, expert_epoch))

    def expert_epochs(self, requested: list[float] | None = None) -> list[float]:
        """``requested``, or every epoch the teacher run saved a complete checkpoint of."""
        if requested:
            return [float(e) for e in requested]
        run_dir = self.config.teacher_model_name_or_path
        epochs = saved_expert_epochs(run_dir) if run_dir and os.path.isdir(run_dir) else []
        if not epochs:
            raise ValueError(
                f"expert_epochs: not given and teacher_model_name_or_path {run_dir!r} has no checkpoint-* folders; "
                "expected a teacher run saved once per epoch (gift-hf train-teacher)"
            )
        return epochs

    def prepare(
        self,
        dataset: Dataset,
        key: Any,
        config: GIFTConfig | None = None,
        *,
        teacher: str | None = None,
        expert_epoch: float | None = None,
        keep_stored: bool = False,
    ) -> tuple[Dataset, nn.Module | None]:
        """The labels a cell trains with, under ``config``'s label source.

        ``none``: the dataset as is. ``teacher``: the dataset and the teacher (checkpoint
        ``expert_epoch``) for online relabelling. ``dataset``: the dataset with soft labels
        stored once by that teacher (kept as they are with ``keep_stored``), cached under
        ``key`` for the other cells of this process.
        """
        from gift_hf.evaluation.evaluate import has_soft_labels, relabel_for

        config = config or self.config
        source = config.label_source
        if source == "none":
            return dataset, None
        path = self.expert_path(expert_epoch, teacher)
        if source == "teacher":
            return dataset, self.teacher(path)
        if keep_stored and has_soft_labels(dataset):
            return dataset, None
        cache_key = ("labelled", key, path, config.soft_label_kind, config.label_temperature)
        return self.cached(cache_key, lambda: relabel_for(dataset, self.teacher(path), config)), None

    def training_set(self, args: Any) -> tuple[Dataset, str]:
        """``args.distilled`` (split ``args.distilled_split``) if given, else a random IPC subset; with its label."""
        if args.distilled:
            return self.load_distilled(args.distilled, args.distilled_split), args.distilled
        return self.random_subset(args.ipc), f"random IPC={args.ipc} (seed {args.selection_seed})"

    def require_stored_labels(self, why: str) -> None:
        """Refuse a protocol whose students do not train on stored soft labels; ``why`` says what needs them."""
        config = self.config
        if config.label_source != "dataset":
            raise ValueError(
                f"soft_label_source: {why} edits stored soft labels; got soft_label_source="
                f"{config.label_source!r} (loss {config.loss!r}); expected 'dataset' "
                f"(e.g. recipes/label_paper/{self.name}.yaml)"
            )

    def load_distilled(self, repo_id_or_dir: str, split: str = "train") -> Dataset:
        """A distilled set saved with :func:`gift_hf.save_distilled` (local folder or Hub id), checked
        to have this data's classes."""
        from gift_hf.data.distilled import load_distilled, resolve_soft_label_kind
        from gift_hf.evaluation.evaluate import has_soft_labels

        key = ("distilled", repo_id_or_dir, split)
        if key not in self._datasets:
            dataset, info = load_distilled(repo_id_or_dir)
            if split not in dataset:
                raise ValueError(
                    f"distilled_split: split {split!r} not in {repo_id_or_dir!r}; expected one of {sorted(dataset)}"
                )
            ds = dataset[split]
            names = label_names(ds, self.label_column)
            if names != self.class_names:
                raise ValueError(
                    f"distilled: {repo_id_or_dir!r} has classes {names[:5]}… but the test data has "
                    f"{self.class_names[:5]}…; expected the same label set"
                )
            if (
                self.config.label_source == "dataset"
                and has_soft_labels(ds)
                and getattr(self.args, "keep_distilled_labels", True)
            ):
                # The students train on the stored labels: their kind is the card's, and a
                # protocol that says otherwise is refused (never probabilities read as logits).
                kind = resolve_soft_label_kind(
                    info, self.config.soft_label_kind, source=f"the dataset card of {repo_id_or_dir!r}"
                )
                if kind != self.config.soft_label_kind:
                    self.config = self.config.replace(soft_label_kind=kind)
            self._datasets[key] = ds
        return self._datasets[key]

    def cached(self, key: Any, build: Callable[[], Dataset]) -> Dataset:
        """A dataset built once per process (e.g. a relabelled subset shared by many cells)."""
        if key not in self._datasets:
            self._datasets[key] = build()
        return self._datasets[key]

    # ------------------------------------------------------------------ cells
    def train_cell(
        self,
        dataset: Dataset,
        seed: int,
        config: GIFTConfig | None = None,
        teacher: nn.Module | None = None,
        student: StudentSpec | None = None,
        optimizer_cls_and_kwargs: tuple[type, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Train one student (one cell); its record.

        The cells that differ only in seed share their training set: the first of them trains
        all the study's seeds together (:func:`gift_hf.evaluation.evaluate.train_on_distilled`;
        in :meth:`run`, the seeds of this process's cells of that setting) and the others take
        their result.
        """
        config = config or self.config
        needs_teacher = config.label_source == "teacher"
        if needs_teacher and teacher is None:
            teacher = self.teacher()
        student = student or self.student_spec(teacher=teacher)
        key = (
            id(dataset),
            id(teacher),
            repr(student),
            fingerprint_of(config.training_settings()),
            repr(optimizer_cls_and_kwargs),
        )
        _, done = self._together.setdefault(key, ((dataset, teacher), {}))
        if seed not in done:
            # This setting's seeds (this process's share of them) train together, once.
            seeds = sorted((self._seeds_together() | {seed}) - set(done))
            results = train_on_distilled(
                dataset,
                self.test,
                config,
                seeds,
                student,
                teacher if needs_teacher else None,
                num_classes=self.num_classes,
                image_column=self.image_column,
                label_column=self.label_column,
                optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
            )
            done.update({r.seed: r for r in results})
        record = done[seed].to_dict()
        record["num_images"] = len(dataset)
        return record

    def _seeds_together(self) -> set[int]:
        """The seeds a setting's students train together: the study's, or in :meth:`run` those of
        this process's cells with the current cell's setting (never another process's)."""
        if self._share is None or self._cell is None:
            return set(self.seeds())
        return {c.seed for c in self._share if c.params == self._cell.params}

    def settings(self, **extra: Any) -> dict[str, Any]:
        """Everything the results depend on: study options, data options, the students' training."""
        return {
            "experiment": self.name,
            "arguments": self.args.fingerprint_settings(),
            "data": dataclasses.asdict(self.data_args),
            "config": {
                **self.config.training_settings(),
                "seed": self.config.seed,
                "num_students": self.config.num_students,
            },
            **extra,
        }

    def fingerprint(self) -> str:
        """Hash of what every cell depends on: study options (not the grid's axes), data, the
        students' training (not the seed or ``num_students``: the seeds are cells too)."""
        return fingerprint_of(
            {
                "experiment": self.name,
                "arguments": self.args.fingerprint_settings(),
                "data": dataclasses.asdict(self.data_args),
                "config": self.config.training_settings(),
            }
        )

    def run(self, cells: list[Cell], run_one: Callable[[Cell], dict[str, Any]]):
        """Run the grid (resumable, split across processes); the main process gets every record."""
        # refused before any training when the results would replace files gift_hf did not write
        check_outputs(*(self.path(f"results.{ext}") for ext in ("json", "csv", "md")))
        os.makedirs(self.output_dir, exist_ok=True)

        def share(mine: list[Cell]) -> None:
            self._share = mine

        def run_cell(cell: Cell) -> dict[str, Any]:
            self._cell = cell
            return run_one(cell)

        try:
            records, self.stats = run_cells(
                cells,
                run_cell,
                self.output_dir,
                self.fingerprint(),
                desc=self.name,
                resume=self.args.resume,
                timeout=self.args.merge_timeout,
                on_share=share,
            )
        finally:
            self._share = self._cell = None
        return records

    def seeds(self) -> list[int]:
        return self.config.seeds()

    def path(self, filename: str) -> str:
        return os.path.join(self.output_dir, filename)


@dataclass
class ExperimentResult:
    """What a study returns: its summary rows, Markdown table, files and sweep statistics.

    On processes other than the main one of an ``accelerate launch`` the study only trains
    its share of cells: ``records`` is None and nothing is written.
    """

    name: str
    stats: SweepStats
    records: Optional[list[dict[str, Any]]] = None
    summary: list[dict[str, Any]] = field(default_factory=list)
    table: str = ""
    files: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        return self.records is not None
