"""``gift-hf train-teacher``: train a teacher ("expert") with hard-label cross-entropy, keeping
one checkpoint per epoch.

Soft labels from an early-stopped expert are often better at small IPC (the label paper:
the best expert epoch grows with IPC), so every epoch's checkpoint is kept
(``save_strategy="epoch"``, no ``save_total_limit``) and can be chosen later with
``gift-hf relabel --teacher <output_dir> --expert_epoch N``. The final model is saved with
``save_pretrained`` into ``output_dir`` itself, and ``expert_epochs.json`` lists each epoch's
checkpoint and evaluation accuracy. Defaults train a ConvNet-D3 on the embedded digits in
seconds::

    gift-hf train-teacher --output_dir outputs/teacher
    gift-hf relabel --dataset outputs/subset --teacher outputs/teacher --expert_epoch 2 \\
        --output_dir outputs/subset-labelled

Options: the teacher model (below), the data (:class:`gift_hf.data.images.DataArguments`) and every
:class:`gift_hf.GIFTConfig` field, with teacher defaults (loss ``ce``, no soft labels, a
checkpoint and an evaluation every epoch); ``--config FILE.yaml`` reads a recipe.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from gift_hf.parser import GIFTParser, parse_dict_option

logger = logging.getLogger(__name__)

#: GIFTConfig defaults of a teacher run.
TEACHER_DEFAULTS: dict[str, Any] = dict(
    output_dir="outputs/teacher",
    loss="ce",
    soft_label_source="none",
    save_strategy="epoch",
    eval_strategy="epoch",
    logging_strategy="epoch",
    num_train_epochs=5,
    per_device_train_batch_size=64,
    per_device_eval_batch_size=256,
)


@dataclass
class TeacherModelArguments:
    """The teacher architecture."""

    teacher_arch: str = field(
        default="gift_convnet_d3",
        metadata={"help": "timm architecture of the teacher (gift_convnet_d3, resnet18, ...)."},
    )
    teacher_model_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Extra timm.create_model keyword arguments (a JSON object on the command line)."},
    )

    def __post_init__(self) -> None:
        self.teacher_model_kwargs = parse_dict_option("teacher_model_kwargs", self.teacher_model_kwargs)


def make_parser() -> GIFTParser:
    from gift_hf.data.images import DataArguments
    from gift_hf.engine.config import GIFTConfig

    parser = GIFTParser(
        (TeacherModelArguments, DataArguments, GIFTConfig), prog="gift-hf train-teacher", description=__doc__
    )
    parser.set_defaults(**TEACHER_DEFAULTS)
    return parser


def expert_epochs(output_dir: str) -> list[dict]:
    """Each complete epoch checkpoint of a run with its evaluation metrics (from ``trainer_state.json``)."""
    from gift_hf.engine.checkpoints import list_checkpoints, read_json

    evals = {}
    for entry in read_json(os.path.join(output_dir, "trainer_state.json")).get("log_history", []):
        if "eval_loss" in entry:
            evals[round(float(entry["epoch"]), 6)] = {k: v for k, v in entry.items() if k.startswith("eval_")}
    return [
        {"epoch": c.epoch, "checkpoint": os.path.basename(c.path), **evals.get(c.epoch, {})}
        for c in list_checkpoints(output_dir)
    ]


def main(argv: list[str] | None = None) -> list[dict]:
    from gift_hf.data.images import default_collator, image_spec, load_image_dataset
    from gift_hf.engine.training import train_student
    from gift_hf.files import write_output_text
    from gift_hf.models.modeling import create_model
    from gift_hf.scripts.train import setup_logging

    model_args, data_args, config = make_parser().parse_args_and_config(argv)
    setup_logging(config)
    if config.loss != "ce" or config.soft_label_source != "none":
        logger.warning(
            f"training a teacher with loss={config.loss!r}, soft_label_source={config.soft_label_source!r} "
            "(defaults: 'ce', 'none')"
        )
    if config.save_total_limit is not None:
        logger.warning(
            f"save_total_limit={config.save_total_limit}: older epoch checkpoints will be deleted, so "
            "those expert epochs cannot be chosen later"
        )

    with config.main_process_first(desc="loading the dataset"):
        data = load_image_dataset(data_args)
    names, channels, size, transform = image_spec(data["train"], data_args)
    for split in data.values():
        split.set_transform(transform)

    def teacher():
        return create_model(
            model_args.teacher_arch,
            len(names),
            in_chans=channels,
            img_size=size,
            id2label=dict(enumerate(names)),
            # stored in config.json: relabelling later normalises images the same way
            image_mean=list(transform.mean),
            image_std=list(transform.std),
            **(model_args.teacher_model_kwargs or {}),
        )

    train_student(
        config,
        teacher,
        data["train"],
        data.get("eval"),
        data_collator=default_collator(data_args, len(names)),
        save=True,
    )
    rows = expert_epochs(config.output_dir)
    if config.should_save:
        write_output_text(os.path.join(config.output_dir, "expert_epochs.json"), json.dumps(rows, indent=2))
        for row in rows:
            logger.info(
                f"expert epoch {row['epoch']:g}: {row['checkpoint']} "
                + " ".join(f"{k}={v:.4f}" for k, v in row.items() if k.startswith("eval_") and isinstance(v, float))
            )
    return rows


if __name__ == "__main__":
    main()
