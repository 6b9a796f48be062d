"""The one training path: :func:`train_students` trains (and scores) a set of students with one ``GIFTTrainer``.

Every way gift_hf trains goes through it: the ``gift-hf train`` and ``gift-hf train-teacher``
scripts (one student, :func:`train_student`), the quickstart (teacher and students),
:func:`gift_hf.evaluate_distilled`, every cell of the studies and DD-Ranking. It applies the
:class:`~gift_hf.GIFTConfig` as given (optimizer, schedule, batch-size rule, best-of-k
evaluations); start-up checks that refuse bad input before anything is written live here too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from torch import nn
from transformers import TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback

from gift_hf.engine.config import GIFTConfig

__all__ = [
    "TrainingResult",
    "check_model_input",
    "check_output_dir",
    "check_resume_checkpoint",
    "quiet_config",
    "resolve_resume_checkpoint",
    "student_accuracies",
    "student_metrics",
    "train_student",
    "train_students",
]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- checks
def resolve_resume_checkpoint(resume_from_checkpoint: Optional[str | bool], output_dir: str) -> Optional[str]:
    """``None``/``"false"`` → None; ``"last"``/``"true"`` → the last *complete* checkpoint of
    this run (:func:`gift_hf.engine.checkpoints.last_checkpoint`); else the path, checked.

    Raises a ``FileNotFoundError`` naming the option when there is nothing to resume from.
    """
    from gift_hf.engine.checkpoints import last_checkpoint

    value = str(resume_from_checkpoint).lower() if resume_from_checkpoint is not None else ""
    if value in ("", "false", "no", "none"):
        return None
    if value in ("last", "true", "yes"):
        found = last_checkpoint(output_dir)
        if found is None:
            raise FileNotFoundError(
                f"resume_from_checkpoint: got {resume_from_checkpoint!r} but output_dir {output_dir!r} has no "
                "complete checkpoint-<step> folder; expected a checkpoint saved by a previous run"
            )
        return found.path
    path = str(resume_from_checkpoint)
    if not os.path.isfile(os.path.join(path, "trainer_state.json")):
        raise FileNotFoundError(
            f"resume_from_checkpoint: got {path!r}; expected a checkpoint folder holding trainer_state.json (or 'last')"
        )
    return path


def check_output_dir(output_dir: str, overwrite: bool, resume_from_checkpoint: Optional[str]) -> None:
    """Refuse to train into a non-empty ``output_dir`` unless overwriting or resuming.

    A second run into the same folder would silently mix its checkpoints and results with
    the first run's; this makes that an explicit choice.
    """
    if overwrite or resume_from_checkpoint is not None:
        return
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise FileExistsError(f"output_dir: {output_dir!r} exists and is a file; expected a folder")
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise FileExistsError(
            f"output_dir: {output_dir!r} exists and is not empty; expected a new or empty folder. Pass "
            "--overwrite_output_dir to train into it anyway, or --resume_from_checkpoint last to continue"
        )


def check_model_input(model: nn.Module, role: str, channels: int, size: int, num_classes: int) -> None:
    """Refuse a student/teacher whose input or class count does not match the data."""
    from gift_hf.models.modeling import model_spec

    config = getattr(model, "config", None)
    num_labels = getattr(config, "num_labels", None)
    if num_labels is not None and num_labels != num_classes:
        raise ValueError(
            f"{role}: the model predicts {num_labels} classes but the data has {num_classes}; expected equal"
        )
    # Input channels and size as saved with the model (TimmWrapper model_args, 0.1 configs, processors).
    spec = model_spec(model) if config is not None else {}
    in_chans = spec.get("in_chans")
    if in_chans is not None and in_chans != channels:
        raise ValueError(
            f"{role}: the model takes {in_chans}-channel images but the data gives {channels}; "
            "set --channels or use a matching model"
        )
    img_size = spec.get("img_size")
    arch = spec.get("arch") or ""
    # Only our ConvNets are tied to one input size; other timm models pool over any size.
    if img_size is not None and arch.startswith("gift_") and img_size != size:
        raise ValueError(
            f"{role}: the model takes {img_size}×{img_size} images but the data gives {size}×{size}; "
            "set --image_size or use a matching model"
        )


def check_resume_checkpoint(checkpoint: str, model: nn.Module) -> None:
    """Refuse a checkpoint whose files are corrupt (naming the file) or whose model is not ``model``'s
    shape (another number of classes or input channels), before the Trainer reads it."""
    import json

    from gift_hf.files import check_saved_files
    from gift_hf.models.modeling import model_spec, num_classes_of

    check_saved_files(checkpoint)
    path = os.path.join(checkpoint, "config.json")
    if not os.path.isfile(path) or getattr(model, "config", None) is None:
        return  # a population's checkpoint: its state dict is checked by the Trainer's load
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    classes = num_classes_of(model)
    # TimmWrapper configs write num_classes; other transformers configs id2label (or num_labels)
    saved_classes = saved.get("num_classes") or saved.get("num_labels")
    if saved_classes is None and isinstance(saved.get("id2label"), dict):
        saved_classes = len(saved["id2label"])
    if saved_classes is not None and classes is not None and int(saved_classes) != classes:
        raise ValueError(
            f"resume_from_checkpoint: {checkpoint!r} holds a model of {saved_classes} classes but this "
            f"run's model has {classes}; resume with the checkpoint's settings or start a new run"
        )
    saved_chans = (saved.get("model_args") or {}).get("in_chans")
    chans = model_spec(model).get("in_chans")
    if saved_chans is not None and chans is not None and int(saved_chans) != int(chans):
        raise ValueError(
            f"resume_from_checkpoint: {checkpoint!r} holds a model of {saved_chans} input channels but "
            f"this run's model takes {chans}; resume with the checkpoint's settings or start a new run"
        )


# ---------------------------------------------------------------------------- training
class _EvaluateAt(TrainerCallback):
    """Evaluate during training and keep the accuracies; the last evaluation is the final one,
    run after training.

    ``best_of − 1`` evaluations evenly spaced over training, or, with ``every_epochs``, one
    at the end of every ``every_epochs``-th epoch past ``start_fraction`` of the epochs
    (RDED: epochs 250, 260, … 290 of 300, then the final one).
    """

    def __init__(self, best_of: int, every_epochs: int = 0, start_fraction: float = 0.0) -> None:
        self.best_of = best_of
        self.every_epochs = every_epochs
        self.start_fraction = start_fraction
        self.steps: set[int] = set()
        self.accuracies: list[list[float]] = []  # per student

    def on_train_begin(self, args, state, control, **kwargs):
        total = state.max_steps
        if self.every_epochs:
            epochs = max(1, math.ceil(state.num_train_epochs))
            per_epoch = math.ceil(total / epochs)
            self.steps = {
                e * per_epoch
                for e in range(self.every_epochs, epochs, self.every_epochs)
                if e > self.start_fraction * epochs
            } - {total}
        else:
            self.steps = {max(1, round(total * j / self.best_of)) for j in range(1, self.best_of)} - {total}
            if len(self.steps) + 1 < self.best_of:
                logger.warning(
                    f"best_of={self.best_of}: {total} training steps give {len(self.steps) + 1} distinct "
                    f"evaluation points; each student reports the best of {len(self.steps) + 1}"
                )

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps:
            control.should_evaluate = True
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        # One list per student: a population's evaluation reports eval_accuracy_s<k>.
        model = kwargs.get("model")
        count = len(getattr(model, "seeds", None) or [0]) if model is not None else 1
        if not self.accuracies:
            self.accuracies = [[] for _ in range(count)]
        for index, found in enumerate(student_accuracies(metrics or {}, count)):
            if found is not None:
                self.accuracies[index].append(found)


@dataclass
class TrainingResult:
    """One trained model: its seed, every evaluation accuracy (fractions), and the run's metrics.

    ``failure`` holds the error of a run that diverged (:class:`~gift_hf.engine.trainer.TrainingDivergedError`):
    such a run has no accuracy and is reported as failed, never scored.
    """

    seed: int
    accuracies: list[float]
    steps: int
    batch_size: int
    train_seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)
    model: Optional[nn.Module] = field(default=None, repr=False, compare=False)
    failure: Optional[str] = None

    @property
    def accuracy(self) -> Optional[float]:
        """The reported accuracy: the best of the evaluations (the final one with ``best_of=1``);
        None for a failed run. A non-finite evaluation is a ``ValueError``, never picked."""
        from gift_hf.evaluation.metrics import best_accuracy

        return best_accuracy(self.accuracies) if self.accuracies and self.failure is None else None

    @property
    def final_accuracy(self) -> Optional[float]:
        return self.accuracies[-1] if self.accuracies and self.failure is None else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record (without the model)."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        record.update(accuracy=self.accuracy, final_accuracy=self.final_accuracy)
        return record


def train_students(
    config: GIFTConfig,
    model: nn.Module | Callable[[], nn.Module],
    train_dataset: Any = None,
    eval_dataset: Any = None,
    *,
    seeds: Sequence[int] | None = None,
    learning_rates: Sequence[float] | None = None,
    teacher: nn.Module | str | None = None,
    compute_metrics: Callable | None = None,
    data_collator: Any = None,
    callbacks: Sequence[TrainerCallback] = (),
    optimizer_cls_and_kwargs: tuple[type, dict[str, Any]] | None = None,
    forward: str = "auto",
    save: bool = False,
    quiet: bool = False,
) -> list[TrainingResult]:
    """Train a set of students on ``train_dataset`` under ``config`` and score each on ``eval_dataset``.

    The one way gift_hf trains: the scripts, the quickstart, :func:`gift_hf.evaluate_distilled`,
    every study and DD-Ranking call it. One student (one seed, the default ``config.seed``)
    is an ordinary ``GIFTTrainer`` run; several are one
    :class:`~gift_hf.engine.population.StudentPopulation` trained by one ``GIFTTrainer``
    (each student keeps its seed's initial weights, batch order and augmentation draws, and
    its learning rate), which equals their separate runs to float tolerance.

    Args:
        config: the :class:`GIFTConfig` (loss, labels, optimizer, schedule, epochs …).
            ``batch_sizes`` set: the batch size follows the batch-size rule for the size of
            ``train_dataset``. ``best_of > 1``: that many evaluations, evenly spaced.
            ``resume_from_checkpoint`` (``"last"`` or a path) is resolved here.
        model: the model (one student), or a function that builds one; it is called after
            seeding with each student's seed, so initial weights depend on the seed alone.
        train_dataset: the training set (None: evaluate only).
        eval_dataset: the set every evaluation scores (None: no evaluation).
        seeds: one per student (default ``[config.seed]``); each student's seed is also its
            ``data_seed``.
        learning_rates: one per student (a grid); default ``config.learning_rate`` for all.
        teacher: the teacher (instance or path) for ``soft_label_source="teacher"``;
            default ``config.teacher_model_name_or_path``. Loaded and checked once.
        compute_metrics: default: top-1/top-5 accuracy over the model's classes.
        data_collator: default: :class:`~gift_hf.SoftLabelCollator`.
        callbacks: extra ``TrainerCallback`` objects.
        optimizer_cls_and_kwargs: an optimizer ``TrainingArguments.optim`` cannot name
            (e.g. ``(torch.optim.Adam, {"lr": 1e-3})``), as ``Trainer`` takes it.
        forward: how several students run their forward (:class:`StudentPopulation`).
        save: save the model (one student), ``train_results.json``/``eval_results.json``
            and the trainer state into ``config.output_dir`` (refused into a non-empty folder
            unless ``overwrite_output_dir`` or resuming); several students are saved as
            ``seed-<seed>/`` folders, each a loadable model.
        quiet: no per-step log lines (a study trains hundreds of students).

    Returns:
        One :class:`TrainingResult` per seed, in order (accuracies as fractions; the trained
        model in ``model``). A student whose loss became non-finite has ``failure`` set; when
        every student diverged, :class:`~gift_hf.engine.trainer.TrainingDivergedError` is raised.
    """
    from gift_hf.engine.population import StudentPopulation
    from gift_hf.engine.progress import StudentProgress, active_progress, quiet_saving
    from gift_hf.engine.trainer import GIFTTrainer
    from gift_hf.evaluation.metrics import build_compute_metrics
    from gift_hf.models.modeling import adapt_teacher, load_teacher, model_spec, num_classes_of

    seeds = [int(s) for s in (seeds if seeds is not None else [config.seed])]
    if not seeds:
        raise ValueError("seeds: got none; expected one seed per student")
    if learning_rates is not None and len(learning_rates) != len(seeds):
        raise ValueError(f"learning_rates: got {len(learning_rates)} for {len(seeds)} seeds; expected one per student")
    together = len(seeds) > 1
    if together and isinstance(model, nn.Module):
        raise ValueError("model: got a model instance for several seeds; expected a function that builds a student")
    resume = resolve_resume_checkpoint(config.resume_from_checkpoint, config.output_dir)
    if save and train_dataset is not None:
        check_output_dir(config.output_dir, config.overwrite_output_dir, resume)
    changes: dict[str, Any] = {}
    bar = active_progress()  # a job's one display: this run advances it and shows nothing of its own
    if bar is not None:
        quiet = True
        if not config.disable_tqdm:
            changes["disable_tqdm"] = True
    if seeds != [config.seed]:
        changes.update(seed=seeds[0], data_seed=seeds[0])
    if not together and learning_rates is not None:
        changes["learning_rate"] = float(learning_rates[0])
    if changes:
        config = config.replace(**changes)

    if together:
        model = StudentPopulation.build(model, seeds, learning_rates, forward)
        one = model.students[0]
    else:
        set_seed(config.seed)  # before the model exists: its initialisation is part of the run
        if not isinstance(model, nn.Module):
            model = model()
        one = model
    num_classes = num_classes_of(one)
    if train_dataset is not None and config.batch_sizes is not None:
        batch_size = config.train_batch_size_for(len(train_dataset), num_classes)
        config = config.replace(per_device_train_batch_size=batch_size)
    teacher = teacher if teacher is not None else config.teacher_model_name_or_path
    if config.label_source != "teacher":
        teacher = None
    elif teacher is not None:
        # Loaded here, once, and checked against the student before anything is written;
        # GIFTTrainer takes the instance as it is. (No teacher: GIFTTrainer says it needs one.)
        teacher = load_teacher(
            teacher, trust_remote_code=config.trust_remote_code, **(config.teacher_model_init_kwargs or {})
        )
        spec = model_spec(one) if getattr(one, "config", None) is not None else {}
        channels, size = spec.get("in_chans"), spec.get("img_size")
        if channels is not None and size is not None and num_classes is not None:
            check_model_input(teacher, "teacher_model_name_or_path", channels, size, num_classes)
        # the teacher sees the images in its own preprocessing (an exact mean/std conversion), or is refused
        teacher = adapt_teacher(teacher, one, teacher_role="teacher_model_name_or_path")
    evaluate_at = None
    if eval_dataset is not None and (config.best_of > 1 or config.eval_every_epochs > 0):
        evaluate_at = _EvaluateAt(config.best_of, config.eval_every_epochs, config.eval_start_fraction)
    trainer = GIFTTrainer(
        model=model,
        args=config,
        teacher_model=teacher,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=data_collator,
        compute_metrics=compute_metrics or (build_compute_metrics(num_classes) if num_classes else None),
        callbacks=[c for c in (evaluate_at, *callbacks) if c is not None],
        # an optimizer `optim` cannot name, with the Trainer's weight-decay groups (one per student
        # of a population with learning rates: GIFTTrainer.create_optimizer)
        optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
    )
    if bar is not None:
        trainer.add_callback(StudentProgress(bar, len(seeds)))
    if trainer.teacher_model is not None:
        # Prepared in evaluation mode: on this process's device, never wrapped for gradient sync.
        logger.info(
            f"teacher: {type(trainer.teacher_model).__name__}, frozen, eval mode, relabels this process's batches"
        )
    if quiet:
        trainer.remove_callback(PrinterCallback)

    with contextlib.ExitStack() as stack:
        if quiet:  # no metric blocks, no model-shard bars: the caller manages the output
            stack.enter_context(quiet_saving())
        return _run(
            trainer,
            config,
            model,
            train_dataset,
            eval_dataset,
            seeds,
            learning_rates,
            together,
            resume,
            one,
            evaluate_at,
            save,
            quiet,
        )


def _run(
    trainer,
    config: GIFTConfig,
    model: nn.Module,
    train_dataset: Any,
    eval_dataset: Any,
    seeds: list[int],
    learning_rates: Sequence[float] | None,
    together: bool,
    resume: str | None,
    one: nn.Module,
    evaluate_at: "_EvaluateAt | None",
    save: bool,
    quiet: bool,
) -> list[TrainingResult]:
    """Train, evaluate and save a prepared ``GIFTTrainer`` run of :func:`train_students`; its results."""
    from gift_hf.hub.model_card import save_model_card

    metrics: dict[str, Any] = {}
    seconds = 0.0
    if train_dataset is not None:
        if resume is not None:
            check_resume_checkpoint(resume, one)
        start = time.perf_counter()
        train_output = trainer.train(resume_from_checkpoint=resume)
        seconds = time.perf_counter() - start
        metrics.update(train_output.metrics)
        metrics["train_samples"] = len(train_dataset)
        metrics["world_size"] = config.world_size
        metrics["students_together"] = len(seeds)
        if save:
            trainer.save_model()  # main process only: config.json + model.safetensors (or the population's)
            if not quiet:
                trainer.log_metrics("train", train_output.metrics)
            trainer.save_metrics("train", metrics)
            trainer.save_state()
    accuracies = (
        [list(a) for a in evaluate_at.accuracies] if evaluate_at and evaluate_at.accuracies else [[] for _ in seeds]
    )
    if eval_dataset is not None:
        # Predictions are gathered over all ranks; the rows the distributed sampler repeats
        # to even out shards are dropped (gather_for_metrics).
        eval_metrics = trainer.evaluate()
        eval_metrics["eval_samples"] = len(eval_dataset)
        eval_metrics["eval_world_size"] = config.world_size
        metrics.update(eval_metrics)
        for index, found in enumerate(student_accuracies(eval_metrics, len(seeds))):
            if found is not None:
                accuracies[index].append(found)
        if save:
            if not quiet:
                trainer.log_metrics("eval", eval_metrics)
            trainer.save_metrics("eval", eval_metrics)
            if not together:
                save_model_card(trainer)  # again, now with the evaluation results
    failed = trainer.failed_students() if together else {}
    if save and together and trainer.args.should_save:
        # each student a loadable model with its own card (its seed, learning rate and scores)
        for index, seed in enumerate(seeds):
            folder = os.path.join(config.output_dir, f"seed-{seed}")
            model.students[index].save_pretrained(folder)
            own = config.replace(
                seed=seed,
                data_seed=seed,
                learning_rate=float(learning_rates[index]) if learning_rates is not None else config.learning_rate,
            )
            scores = student_metrics(metrics, index, len(seeds))
            save_model_card(
                trainer,
                folder,
                model=model.students[index],
                args=own,
                eval_results=scores or None,
                model_name=os.path.basename(folder),
            )
    steps, batch_size = trainer.state.global_step, config.per_device_train_batch_size
    return [
        TrainingResult(
            seed=seed,
            accuracies=accuracies[index] if index not in failed else [],
            steps=steps,
            batch_size=batch_size,
            train_seconds=seconds / len(seeds),
            metrics=metrics,
            model=model.students[index] if together else trainer.model,
            failure=(
                f"TrainingDivergedError: training diverged at step {failed[index]}: the loss became non-finite "
                f"(NaN or inf); trained together with {len(seeds)} students"
                if index in failed
                else None
            ),
        )
        for index, seed in enumerate(seeds)
    ]


def quiet_config(config: GIFTConfig, output_dir: str, **changes: Any) -> GIFTConfig:
    """``config`` for students a caller manages (an evaluation's cells, the quickstart): trained
    into ``output_dir`` with nothing checkpointed, logged or reported, no resume, and the
    evaluations that ``best_of``/``eval_every_epochs`` schedule (not the Trainer's); ``changes``
    win over these."""
    quiet = dict(
        save_strategy="no",
        logging_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        resume_from_checkpoint=None,
    )
    return config.replace(output_dir=output_dir, **{**quiet, **changes})


def train_student(
    config: GIFTConfig,
    model: nn.Module | Callable[[], nn.Module],
    train_dataset: Any = None,
    eval_dataset: Any = None,
    **kwargs: Any,
) -> TrainingResult:
    """One student: :func:`train_students` with the seed ``config.seed`` (same arguments)."""
    return train_students(config, model, train_dataset, eval_dataset, **kwargs)[0]


def student_metrics(metrics: dict[str, Any], index: int, count: int) -> dict[str, Any]:
    """Student ``index``'s metrics under their plain names: all of them for one student; for K
    students evaluated together, those suffixed ``_s<index>``."""
    if count == 1:
        return dict(metrics)
    suffix = f"_s{index}"
    return {name[: -len(suffix)]: value for name, value in metrics.items() if name.endswith(suffix)}


def student_accuracies(metrics: dict[str, Any], count: int) -> list[float | None]:
    """Each student's ``eval_accuracy`` in an evaluation's metrics (None where it has none)."""
    found = [student_metrics(metrics, index, count).get("eval_accuracy") for index in range(count)]
    return [float(value) if value is not None else None for value in found]
