"""``gift-hf train``: train a student on (distilled) image data with GIFT or any soft-label loss.

Runs unchanged on one process or under ``accelerate launch`` (multi-GPU, multi-node,
bf16/fp16), e.g.::

    gift-hf train --output_dir outputs/student --teacher_model_name_or_path outputs/teacher

    accelerate launch --config_file recipes/accelerate/multi_gpu_bf16.yaml -m gift_hf.scripts.train \\
        --config recipes/gift/train.yaml --dataset_name my/distilled-cifar10 \\
        --teacher_model_name_or_path my/teacher --output_dir outputs/student

Options: the student (below), the data (:class:`gift_hf.data.images.DataArguments`) and every
:class:`gift_hf.GIFTConfig` field (``--loss``, ``--gamma``, ``--soft_label_source``, all of
``TrainingArguments``); ``--help`` lists them, ``--config FILE.yaml`` reads a recipe.
Results: ``train_results.json``, ``eval_results.json``, ``all_results.json`` and the student
(``save_pretrained``) in ``output_dir``, written by the main process only. Resume a killed
run with ``--resume_from_checkpoint last``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from gift_hf.parser import GIFTParser, parse_dict_option

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    """The student (the teacher is ``GIFTConfig.teacher_model_name_or_path``)."""

    student_arch: str = field(
        default="gift_convnet_d3",
        metadata={"help": "timm architecture of a freshly initialised student (gift_convnet_d3, resnet18, ...)."},
    )
    student_model_name_or_path: Optional[str] = field(
        default=None, metadata={"help": "Start from a student saved with save_pretrained instead."}
    )
    student_model_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Extra timm.create_model keyword arguments (a JSON object on the command line)."},
    )

    def __post_init__(self) -> None:
        self.student_model_kwargs = parse_dict_option("student_model_kwargs", self.student_model_kwargs)


def make_parser() -> GIFTParser:
    from gift_hf.data.images import DataArguments
    from gift_hf.engine.config import GIFTConfig

    return GIFTParser((ModelArguments, DataArguments, GIFTConfig), prog="gift-hf train", description=__doc__)


def setup_logging(config: Any) -> None:
    """Logging as in the transformers example scripts: full on the main process only."""
    import datasets
    import transformers

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    log_level = config.get_process_log_level()
    # The scripts' own progress lines at INFO on the main process; libraries at log_level.
    logging.getLogger("gift_hf").setLevel(min(log_level, logging.INFO) if config.should_log else log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.warning(
        f"process {config.process_index}/{config.world_size}, device {config.device}, "
        f"mixed precision {'bf16' if config.bf16 else 'fp16' if config.fp16 else 'no'}"
    )
    if config.should_log:  # the main process only, and only what differs from GIFTConfig's defaults
        logger.info(f"training arguments (not GIFTConfig's defaults): {config.changed_settings()}")


def _count_predictions(compute_metrics):
    """Add ``num_predictions``: how many rows reached the metric after gathering over ranks
    (the split's size when the distributed sampler's padding was dropped)."""

    def wrapped(eval_pred):
        metrics = compute_metrics(eval_pred)
        metrics["num_predictions"] = len(eval_pred.label_ids)
        return metrics

    return wrapped


def main(argv: list[str] | None = None) -> dict[str, float]:
    from gift_hf.data.distilled import distilled_card_info, stored_soft_label_kind
    from gift_hf.data.images import (
        ShardRecordingCollator,
        check_soft_label_columns,
        check_stored_soft_labels,
        default_collator,
        eval_transform_for,
        image_spec,
        load_image_dataset,
    )
    from gift_hf.engine.training import check_model_input, train_student
    from gift_hf.evaluation.metrics import build_compute_metrics
    from gift_hf.hub.model_card import ModelCardCallback
    from gift_hf.models.modeling import create_model, image_transform_for, load_teacher

    model_args, data_args, config = make_parser().parse_args_and_config(argv)
    setup_logging(config)
    do_train = config.do_train or not config.do_eval
    do_eval = (config.do_eval or not config.do_train) and data_args.eval_split is not None

    with config.main_process_first(desc="loading the dataset"):
        data = load_image_dataset(data_args)
    if config.label_source == "dataset":
        check_soft_label_columns(data["train"], data_args)
        # What the stored soft labels are comes from the set's card; a contradicting
        # --soft_label_kind is refused (probabilities are never trained as logits).
        config.soft_label_kind = stored_soft_label_kind(
            data_args.dataset_name, config.soft_label_kind, revision=data_args.dataset_revision
        )
        logger.info(f"stored soft labels: soft_label_kind={config.soft_label_kind}")
    names, channels, size, transform = image_spec(data["train"], data_args)
    if config.label_source == "dataset":
        # The values, as load_distilled checks them (probabilities >= 0 summing to 1, ...):
        # this set may come from anywhere, and a bad row would otherwise train silently.
        check_stored_soft_labels(data["train"], data_args, config.soft_label_kind, len(names))
    saved_student = model_args.student_model_name_or_path
    if (
        saved_student is not None
        and os.path.isdir(saved_student)
        and data_args.channels is None
        and data_args.image_size is None
        and data_args.image_mean is None
        and data_args.image_std is None
    ):
        # A saved student carries its preprocessing (stated once, at create_model).
        transform = image_transform_for(saved_student, image_column=data_args.image_column)
        channels, size = transform.channels, transform.image_size
    for name, split in data.items():
        split.set_transform(eval_transform_for(transform, config.eval_transform) if name == "eval" else transform)

    def student():
        if model_args.student_model_name_or_path is not None:
            model = load_teacher(
                model_args.student_model_name_or_path,
                trust_remote_code=config.trust_remote_code,
                role="student_model_name_or_path",
            )
            model.requires_grad_(True)  # load_teacher freezes; a student trains
        else:
            model = create_model(
                model_args.student_arch,
                len(names),
                in_chans=channels,
                img_size=size,
                id2label=dict(enumerate(names)),
                image_mean=list(transform.mean),
                image_std=list(transform.std),
                **(model_args.student_model_kwargs or {}),
            )
        check_model_input(model, "student", channels, size, len(names))
        return model

    collator = default_collator(
        data_args,
        len(names),
        record=data_args.record_shard_indices,
        soft_label_kind=config.soft_label_kind if config.label_source == "dataset" else None,
    )
    # The student's model card names the set it learnt from, with the set's provenance.
    card = ModelCardCallback(
        dataset=data_args.dataset_name or "digits",
        distilled_info=distilled_card_info(data_args.dataset_name, data_args.dataset_revision),
    )
    result = train_student(
        config,
        student,
        data["train"] if do_train else None,
        data["eval"] if do_eval else None,
        data_collator=collator,
        compute_metrics=_count_predictions(build_compute_metrics(len(names))),
        callbacks=[card],
        save=True,
    )
    if isinstance(collator, ShardRecordingCollator):
        collator.dump(config.output_dir, config.process_index)
    return result.metrics


if __name__ == "__main__":
    main()
