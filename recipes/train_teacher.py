#!/usr/bin/env python
"""Train a teacher ("expert") with hard-label cross-entropy, keeping one checkpoint per epoch.

Soft labels from an early-stopped expert are often better at small IPC (the label paper:
the best expert epoch grows with IPC), so every epoch's checkpoint is kept
(``save_strategy="epoch"``, no ``save_total_limit``) and can be chosen later with
``gift-hf relabel --teacher <output_dir> --expert_epoch N``. The final model is saved with
``save_pretrained`` into ``output_dir`` itself, and ``expert_epochs.json`` lists each epoch's
checkpoint and evaluation accuracy. Defaults train a ConvNet-D3 on the embedded digits in
seconds::

    python recipes/train_teacher.py --output_dir outputs/teacher
    gift-hf relabel --dataset outputs/subset --teacher outputs/teacher --expert_epoch 2 \\
        --output_dir outputs/subset-labelled

Options: the data arguments of ``gift_hf.recipe_utils.DataArguments``, the teacher model
below, and every :class:`gift_hf.GIFTConfig` / ``TrainingArguments`` field (``--help``
lists them all). A single YAML/JSON file of options is accepted instead.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Optional, Union


from gift_hf import GIFTConfig, GIFTTrainer, create_model
from gift_hf.commands._args import parse_args as _parse_args
from gift_hf.metrics import build_compute_metrics
from gift_hf.recipe_utils import (
    DataArguments,
    build_image_transform,
    check_output_dir,
    default_collator,
    infer_channels_and_size,
    label_names,
    load_image_dataset,
)

logger = logging.getLogger(__name__)


@dataclass
class TeacherModelArguments:
    """The teacher architecture."""

    teacher_arch: str = field(
        default="gift_convnet_d3",
        metadata={"help": "timm architecture of the teacher (gift_convnet_d3, resnet18, ...)."},
    )
    teacher_model_kwargs: Optional[str] = field(
        default=None, metadata={"help": "Extra timm.create_model keyword arguments, as a JSON object."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Train into an output_dir that already has files (refused otherwise)."}
    )

    def __post_init__(self) -> None:
        if isinstance(self.teacher_model_kwargs, str):
            try:
                self.teacher_model_kwargs = json.loads(self.teacher_model_kwargs)
            except json.JSONDecodeError as err:
                raise ValueError(f"teacher_model_kwargs: got {self.teacher_model_kwargs!r}; expected a JSON object"
                                 ) from err


@dataclass
class TeacherTrainingConfig(GIFTConfig):
    """``GIFTConfig`` with teacher-training defaults: hard-label CE, a checkpoint every epoch."""

    output_dir: Optional[str] = field(
        default="outputs/teacher", metadata={"help": "Where checkpoints, the final teacher and results go."}
    )
    loss: str = field(default="ce", metadata={"help": "Teacher loss: 'ce' (hard labels)."})
    soft_label_source: str = field(default="none", metadata={"help": "'none': a teacher trains on hard labels."})
    save_strategy: Union[str, None] = field(
        default="epoch", metadata={"help": "'epoch' keeps one checkpoint per epoch, to choose an expert epoch later."}
    )
    eval_strategy: Union[str, None] = field(
        default="epoch", metadata={"help": "Evaluate after every epoch (accuracy per expert epoch)."}
    )
    logging_strategy: Union[str, None] = field(default="epoch", metadata={"help": "Log once per epoch."})
    num_train_epochs: float = field(default=5.0, metadata={"help": "Training epochs (= checkpoints kept)."})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "Training batch size per device."})
    per_device_eval_batch_size: int = field(default=256, metadata={"help": "Evaluation batch size per device."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.save_total_limit is not None:
            logger.warning(
                f"save_total_limit={self.save_total_limit}: older epoch checkpoints will be deleted, so those "
                "expert epochs cannot be chosen later"
            )


def parse_args(argv: list[str] | None = None) -> tuple[TeacherModelArguments, DataArguments, TeacherTrainingConfig]:
    argv = sys.argv[1:] if argv is None else argv
    types = (TeacherModelArguments, DataArguments, TeacherTrainingConfig)
    return _parse_args(types, argv, os.path.basename(__file__), __doc__)


def expert_epochs(output_dir: str) -> list[dict]:
    """Each epoch checkpoint of a run with its evaluation metrics (from ``trainer_state.json``)."""
    state_path = os.path.join(output_dir, "trainer_state.json")
    evals = {}
    if os.path.isfile(state_path):
        with open(state_path) as f:
            for entry in json.load(f).get("log_history", []):
                if "eval_loss" in entry:
                    evals[round(float(entry["epoch"]), 6)] = {k: v for k, v in entry.items() if k.startswith("eval_")}
    rows = []
    for name in sorted(os.listdir(output_dir), key=lambda n: int(n.split("-")[1]) if n[11:].isdigit() else -1):
        state = os.path.join(output_dir, name, "trainer_state.json")
        if name.startswith("checkpoint-") and os.path.isfile(state):
            with open(state) as f:
                epoch = round(float(json.load(f)["epoch"]), 6)
            rows.append({"epoch": epoch, "checkpoint": name, **evals.get(epoch, {})})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    model_args, data_args, training_args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    logger.setLevel(training_args.get_process_log_level())
    if training_args.loss != "ce" or training_args.soft_label_source != "none":
        logger.warning(f"training a teacher with loss={training_args.loss!r}, "
                       f"soft_label_source={training_args.soft_label_source!r} (defaults: 'ce', 'none')")
    check_output_dir(training_args.output_dir, model_args.overwrite_output_dir, None)

    with training_args.main_process_first(desc="loading the dataset"):
        data = load_image_dataset(data_args)
    names = label_names(data["train"], data_args.label_column)
    channels, size = infer_channels_and_size(data["train"], data_args)
    transform = build_image_transform(data_args, channels)
    for split in data.values():
        split.set_transform(transform)
    teacher = create_model(
        model_args.teacher_arch, len(names), in_chans=channels, img_size=size, id2label=dict(enumerate(names)),
        # stored in config.json: relabelling later normalises images the same way
        image_mean=list(transform.mean), image_std=list(transform.std), **(model_args.teacher_model_kwargs or {}),
    )
    trainer = GIFTTrainer(
        model=teacher,
        args=training_args,
        train_dataset=data["train"],
        eval_dataset=data.get("eval"),
        data_collator=default_collator(data_args, len(names)),
        compute_metrics=build_compute_metrics(len(names)),
    )
    train_result = trainer.train()
    trainer.save_model()  # the final teacher: output_dir/config.json + model.safetensors
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()
    rows = expert_epochs(training_args.output_dir)
    if trainer.is_world_process_zero():
        with open(os.path.join(training_args.output_dir, "expert_epochs.json"), "w") as f:
            json.dump(rows, f, indent=2)
        for row in rows:
            logger.info(f"expert epoch {row['epoch']:g}: {row['checkpoint']} "
                        + " ".join(f"{k}={v:.4f}" for k, v in row.items() if k.startswith("eval_") and
                                   isinstance(v, float)))
    return rows


if __name__ == "__main__":
    main()
