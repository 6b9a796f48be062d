"""``gift-hf ddranking``: DD-Ranking's scores of a distilled set (HLR, IOR, label- and augmentation-robust scores).

Run it with a recipe and overrides::

    gift-hf ddranking --config recipes/ddranking/cifar10_convnet3.yaml \\
        --distilled path/to/distilled --teacher_model_name_or_path outputs/teacher

It writes ``results.json``/``.csv``/``.md`` and ``ddranking.png`` to ``--output_dir``, and
caches the full-data hard-label cell under ``--cache_dir`` (default: the output folder),
so a second distilled set of the same dataset skips it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from gift_hf.evaluation.ddranking import DDRankingArguments, ddranking_scores
from gift_hf.parser import GIFTParser, parse_dict_option

__all__ = ["DDRankingScriptArguments", "load_data", "main", "make_parser"]


@dataclass
class DDRankingScriptArguments:
    """What to score, with which teacher and data, and where results go."""

    cache_dir: Optional[str] = field(
        default=None, metadata={"help": "Where the full-data cell is cached (default: output_dir)."}
    )
    dataset_name: str = field(
        default="digits",
        metadata={"help": "'digits' or 'digit_pairs' (embedded) or a Hub dataset id / local dataset folder."},
    )
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "The dataset's configuration."})
    train_split: str = field(default="train", metadata={"help": "The real training split."})
    test_split: str = field(default="test", metadata={"help": "The real test split every student is scored on."})
    image_column: str = field(default="image", metadata={"help": "The real data's image column."})
    label_column: str = field(default="label", metadata={"help": "The real data's label column."})
    test_rows: Optional[int] = field(
        default=None, metadata={"help": "Score on the first N test rows only (quick runs). Default: all."}
    )
    distilled: str = field(
        default="random",
        metadata={
            "help": "The distilled set: a folder saved with save_distilled or a Hub id; or 'random' / "
            "'difficulty' to select --ipc real images per class (gift_hf.data.selection)."
        },
    )
    distilled_split: str = field(default="train", metadata={"help": "The distilled set's split."})
    ipc: int = field(default=10, metadata={"help": "'random'/'difficulty': images per class."})
    selection_seed: int = field(
        default=100,
        metadata={
            "help": "'random'/'difficulty': selection seed (not a round seed, so the set differs from the "
            "rounds' random subsets)."
        },
    )
    difficulty_band: list[float] = field(
        default_factory=lambda: [0.0, 0.5],
        metadata={"help": "'difficulty': quantile band of teacher cross-entropy (0 0.5 = the easier half)."},
    )
    student_arch: Optional[str] = field(
        default=None, metadata={"help": "Students' timm architecture (default: the teacher's)."}
    )
    student_model_kwargs: Optional[str] = field(
        default=None,
        metadata={
            "help": "Students' create_model arguments: a JSON object (a mapping in YAML); default: the teacher's."
        },
    )
    image_mean: Optional[list[float]] = field(
        default=None, metadata={"help": "Normalisation mean (default: the teacher's)."}
    )
    image_std: Optional[list[float]] = field(
        default=None, metadata={"help": "Normalisation std (default: the teacher's)."}
    )
    progress: bool = field(default=True, metadata={"help": "Progress bars."})

    def __post_init__(self) -> None:
        self.student_model_kwargs = parse_dict_option("student_model_kwargs", self.student_model_kwargs)
        if self.test_rows is not None and self.test_rows < 1:
            raise ValueError(f"test_rows: got {self.test_rows}; expected >= 1 or unset")


def make_parser() -> GIFTParser:
    """The parser over :class:`DDRankingScriptArguments`, :class:`~gift_hf.evaluation.ddranking.DDRankingArguments`
    and the students' :class:`~gift_hf.GIFTConfig` (defaults: the ``ddranking`` protocol)."""
    from gift_hf.engine.config import PROTOCOLS, GIFTConfig

    parser = GIFTParser(
        (DDRankingScriptArguments, DDRankingArguments, GIFTConfig), prog="gift-hf ddranking", description=__doc__
    )
    parser.set_defaults(output_dir="outputs/ddranking", **PROTOCOLS["ddranking"])
    return parser


def load_data(script: DDRankingScriptArguments, teacher_model_name_or_path: str | None):
    """The real train/test splits (``image``/``label`` columns), the teacher and the distilled set."""
    from gift_hf.data.images import embedded_dataset, open_dataset
    from gift_hf.models.modeling import load_teacher

    real = embedded_dataset(script.dataset_name)
    if real is None:
        real = open_dataset(script.dataset_name, "dataset_name", script.dataset_config_name)
    for split in (script.train_split, script.test_split):
        if split not in real:
            raise ValueError(f"split {split!r} not in {script.dataset_name!r}; it has {sorted(real)}")
    train, test = real[script.train_split], real[script.test_split]

    def standard(ds):
        # DD-Ranking's cells share one transform: the real data takes the distilled format's columns.
        if script.image_column != "image":
            ds = ds.rename_column(script.image_column, "image")
        return ds if script.label_column == "label" else ds.rename_column(script.label_column, "label")

    train, test = standard(train), standard(test)
    if script.test_rows is not None:
        test = test.select(range(min(script.test_rows, len(test))))
    if teacher_model_name_or_path is None:
        raise ValueError("teacher_model_name_or_path: DD-Ranking's soft labels need a teacher; got none")
    teacher = load_teacher(teacher_model_name_or_path)
    from gift_hf.data.images import label_names
    from gift_hf.models.modeling import num_classes_of

    classes, teacher_classes = len(label_names(train, "label")), num_classes_of(teacher)
    if teacher_classes is not None and teacher_classes != classes:  # else a raw reshape error in the first round
        raise ValueError(
            f"teacher_model_name_or_path: the teacher {teacher_model_name_or_path!r} has "
            f"{teacher_classes} classes but dataset {script.dataset_name!r} has {classes} (column "
            f"{script.label_column!r}); expected a teacher trained on this dataset's classes"
        )
    if script.distilled == "random":
        from gift_hf.data.selection import build_random_distilled

        distilled, _ = build_random_distilled(train, script.ipc, seed=script.selection_seed)
    elif script.distilled == "difficulty":
        from gift_hf.data.selection import build_difficulty_distilled

        distilled, _ = build_difficulty_distilled(
            train,
            script.ipc,
            teacher,
            band=tuple(script.difficulty_band),
            seed=script.selection_seed,
            transform=_transform(script, teacher),
            progress=False,
        )
    else:
        from gift_hf.data.distilled import load_distilled

        splits, _ = load_distilled(script.distilled)
        if script.distilled_split not in splits:
            raise ValueError(
                f"distilled_split: {script.distilled_split!r} not in {script.distilled!r}; it has {sorted(splits)}"
            )
        distilled = splits[script.distilled_split]
    return train, test, teacher, distilled


def _transform(script: DDRankingScriptArguments, teacher: Any):
    """The teacher's input transform; ``--image_mean``/``--image_std`` override its normalisation."""
    from gift_hf.models.modeling import image_transform_for

    transform = image_transform_for(teacher)
    if script.image_mean is not None:
        transform = dataclasses.replace(transform, mean=tuple(script.image_mean))
    if script.image_std is not None:
        transform = dataclasses.replace(transform, std=tuple(script.image_std))
    return transform


def main(argv: Sequence[str] | None = None):
    """Parse options (``--config FILE.yaml`` plus overrides), score the distilled set, print the table."""
    script, protocol, config = make_parser().parse_args_and_config(argv)
    from gift_hf.files import check_outputs

    # before any training: a user's results file in output_dir is refused now, not after the rounds
    check_outputs(
        *(f"{config.output_dir}/{name}" for name in ("results.json", "results.csv", "results.md", "ddranking.png"))
    )
    train, test, teacher, distilled = load_data(script, config.teacher_model_name_or_path)
    result = ddranking_scores(
        distilled,
        train,
        test,
        teacher,
        args=protocol,
        config=config,
        student_arch=script.student_arch,
        student_model_kwargs=script.student_model_kwargs,
        transform=_transform(script, teacher),
        output_dir=config.output_dir,
        cache_dir=script.cache_dir,
        progress=script.progress,
    )
    with open(result.files["markdown"]) as f:
        print(f.read())
    cached = "reused from " if result.full_data.get("cached") else "written to "
    print(f"full-data cell {cached}{result.full_data.get('path')}")
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    return result


if __name__ == "__main__":
    from gift_hf.scripts._study import run_as_script

    run_as_script(main)
