"""Shared by the evaluation and experiment tests: a real teacher run with per-epoch checkpoints."""

from __future__ import annotations

from pathlib import Path

from datasets import DatasetDict

_RUNS: dict[str, Path] = {}

# Instance norm sees 2×2 maps in the third block of an 8×8 ConvNet-D3 and learns slowly;
# batch norm makes a 20-step teacher good enough to distil from.
MODEL_KWARGS = {"width": 32, "norm": "batchnorm"}


def teacher_run(tmp_path_factory, epochs: int = 2) -> Path:
    """A ConvNet-D3 teacher trained on digits with hard-label CE by ``GIFTTrainer``, one
    ``checkpoint-*`` per epoch and the final model saved in the run folder (built once)."""
    if "teacher" in _RUNS:
        return _RUNS["teacher"]
    from transformers import set_seed

    from gift_hf import GIFTConfig, GIFTTrainer, create_model, load_digits_dataset
    from gift_hf.data.images import DIGITS_MEAN, DIGITS_STD, ImageTransform

    run = tmp_path_factory.mktemp("teacher_run")
    digits = load_digits_dataset()
    transform = ImageTransform(channels=1, mean=DIGITS_MEAN, std=DIGITS_STD)
    set_seed(0)
    model = create_model(
        "gift_convnet_d3",
        10,
        in_chans=1,
        img_size=8,
        id2label={i: str(i) for i in range(10)},
        image_mean=DIGITS_MEAN,
        image_std=DIGITS_STD,
        **MODEL_KWARGS,
    )
    args = GIFTConfig(
        output_dir=str(run),
        loss="ce",
        soft_label_source="none",
        num_train_epochs=epochs,
        per_device_train_batch_size=64,
        learning_rate=3e-3,
        save_strategy="epoch",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
    )
    train = digits["train"].select(range(640))  # 10 steps per epoch
    trainer = GIFTTrainer(model=model, args=args, train_dataset=train.with_transform(transform))
    trainer.train()
    trainer.save_model()
    _RUNS["teacher"] = run
    return run


def small_digits(test_rows: int = 180) -> DatasetDict:
    """Digits with a smaller (stratified-enough, first N rows) test split: evaluation is per student."""
    from gift_hf import load_digits_dataset

    digits = load_digits_dataset()
    return DatasetDict({"train": digits["train"], "test": digits["test"].select(range(test_rows))})
