#!/usr/bin/env python
"""Train a student on (distilled) image data with GIFT or any soft-label loss.

Runs unchanged on one process or under ``accelerate launch`` (multi-GPU, multi-node,
bf16/fp16), e.g.::

    python recipes/train_student.py --output_dir outputs/student \\
        --teacher_model_name_or_path outputs/teacher --max_steps 500

    accelerate launch --config_file recipes/accelerate/multi_gpu_bf16.yaml \\
        recipes/train_student.py --dataset_name my/distilled-cifar10 --eval_split test \\
        --teacher_model_name_or_path my/teacher --output_dir outputs/student

Options: the data and model dataclasses below (``gift_hf.recipe_utils``) plus every
:class:`gift_hf.GIFTConfig` field (``--loss``, ``--gamma``, ``--soft_label_source``, all of
``TrainingArguments``); ``--help`` lists them. A single YAML/JSON file of options is
accepted instead. Results: ``train_results.json``, ``eval_results.json``,
``all_results.json`` and the student (``save_pretrained``) in ``output_dir``, written by
the main process only. Resume a killed run with ``--resume_from_checkpoint last``.
"""

from __future__ import annotations

import logging
import os
import sys

# Python puts this script's folder first on sys.path, so a recipe named like a library
# (an `evaluate.py` here once shadowed `evaluate`) would break imports. Recipes import
# only installed packages.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import datasets  # noqa: E402
import transformers  # noqa: E402
from transformers import set_seed  # noqa: E402

from gift_hf import GIFTConfig, GIFTTrainer, create_model, load_teacher  # noqa: E402
from gift_hf.commands._args import parse_args as _parse_args  # noqa: E402
from gift_hf.metrics import build_compute_metrics  # noqa: E402
from gift_hf.recipe_utils import (  # noqa: E402
    DataArguments,
    ModelArguments,
    ShardRecordingCollator,
    build_image_transform,
    check_model_input,
    check_output_dir,
    check_soft_label_columns,
    default_collator,
    infer_channels_and_size,
    label_names,
    load_image_dataset,
    resolve_resume_checkpoint,
)

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, GIFTConfig]:
    argv = sys.argv[1:] if argv is None else argv
    return _parse_args((ModelArguments, DataArguments, GIFTConfig), argv, os.path.basename(__file__), __doc__)


def _count_predictions(compute_metrics):
    """Add ``num_predictions``: how many rows reached the metric after gathering over ranks.

    Equal to the split's size when the distributed sampler's padding was dropped.
    """

    def wrapped(eval_pred):
        metrics = compute_metrics(eval_pred)
        metrics["num_predictions"] = len(eval_pred.label_ids)
        return metrics

    return wrapped


def main(argv: list[str] | None = None) -> dict[str, float]:
    model_args, data_args, training_args = parse_args(argv)

    # Logging as in the transformers example scripts: full on the main process only.
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    log_level = training_args.get_process_log_level()
    # This script's own progress lines at INFO on the main process; libraries at log_level.
    logger.setLevel(min(log_level, logging.INFO) if training_args.should_log else log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.warning(
        f"process {training_args.process_index}/{training_args.world_size}, device {training_args.device}, "
        f"mixed precision {training_args.mixed_precision}"
    )
    logger.info(f"training arguments: {training_args}")  # str() masks *_token fields

    # ---- refuse bad input before anything is written
    resume = resolve_resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    check_output_dir(training_args.output_dir, model_args.overwrite_output_dir, resume)
    do_train = training_args.do_train or not training_args.do_eval
    do_eval = (training_args.do_eval or not training_args.do_train) and data_args.eval_split is not None

    with training_args.main_process_first(desc="loading the dataset"):
        data = load_image_dataset(data_args)
    if training_args.soft_label_source == "dataset":
        check_soft_label_columns(data["train"], data_args)
    names = label_names(data["train"], data_args.label_column)
    num_classes = len(names)
    channels, size = infer_channels_and_size(data["train"], data_args)
    transform = build_image_transform(data_args, channels)
    for split in data.values():
        split.set_transform(transform)

    # Seed before the student is created: its initialisation is part of the run (the
    # Trainer seeds only later, in its constructor).
    set_seed(training_args.seed)
    if model_args.student_model_name_or_path is not None:
        student = load_teacher(model_args.student_model_name_or_path, trust_remote_code=training_args.trust_remote_code)
        student.requires_grad_(True)  # load_teacher freezes; a student trains
    else:
        student = create_model(
            model_args.student_arch,
            num_classes,
            in_chans=channels,
            img_size=size,
            id2label=dict(enumerate(names)),
            image_mean=list(transform.mean),
            image_std=list(transform.std),
            **(model_args.student_model_kwargs or {}),
        )
    check_model_input(student, "student", channels, size, num_classes)

    teacher = None
    if training_args.soft_label_source == "teacher" and training_args.build_loss().needs_teacher:
        if training_args.teacher_model_name_or_path is None:
            raise ValueError(
                f"teacher_model_name_or_path: got None; loss {training_args.loss!r} with soft_label_source='teacher' "
                "needs a teacher (or use --soft_label_source dataset / --loss ce --soft_label_source none)"
            )
        teacher = load_teacher(
            training_args.teacher_model_name_or_path,
            trust_remote_code=training_args.trust_remote_code,
            **(training_args.teacher_model_init_kwargs or {}),
        )
        check_model_input(teacher, "teacher_model_name_or_path", channels, size, num_classes)

    collator = default_collator(data_args, num_classes, record=data_args.record_shard_indices)
    trainer = GIFTTrainer(
        model=student,
        args=training_args,
        teacher_model=teacher,
        train_dataset=data["train"] if do_train else None,
        eval_dataset=data["eval"] if do_eval else None,
        data_collator=collator,
        compute_metrics=_count_predictions(build_compute_metrics(num_classes)),
    )

    if trainer.teacher_model is not None:
        # Prepared in evaluation mode: on this process's device, never wrapped for gradient sync.
        logger.info(
            f"teacher: {type(trainer.teacher_model).__name__}, frozen, eval mode, relabels this process's batches"
        )

    results: dict[str, float] = {}
    if do_train:
        train_result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model()  # main process only; config.json + model.safetensors
        metrics = dict(train_result.metrics)
        metrics["train_samples"] = len(data["train"])
        metrics["world_size"] = training_args.world_size
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        results.update({f"train_{k}" if not k.startswith("train_") else k: v for k, v in metrics.items()})
        if isinstance(collator, ShardRecordingCollator):
            collator.dump(training_args.output_dir, training_args.process_index)
    if do_eval:
        # Predictions are gathered over all ranks; the rows the distributed sampler repeats
        # to even out shards are dropped (gather_for_metrics): eval_num_predictions == eval_samples.
        metrics = trainer.evaluate()
        metrics["eval_samples"] = len(data["eval"])
        metrics["eval_world_size"] = training_args.world_size
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        results.update(metrics)
    return results


if __name__ == "__main__":
    main()
