"""report_to="tensorboard": training and evaluation curves written offline, readable by TensorBoard."""

import pytest
from tensorboard.backend.event_processing import event_accumulator  # the 'tensorboard' extra (in 'dev')

from gift_hf import GIFTConfig, GIFTTrainer, create_model, image_transform_for
from gift_hf.evaluation.metrics import build_compute_metrics


def test_tensorboard_receives_training_and_evaluation_scalars(tmp_path, digits):
    model = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8, width=8)
    transform = image_transform_for(model)
    args = GIFTConfig(
        output_dir=str(tmp_path / "run"),
        report_to="tensorboard",
        use_cpu=True,
        max_steps=4,
        per_device_train_batch_size=8,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="no",
        disable_tqdm=True,
        loss="ce",
        soft_label_source="none",
    )
    trainer = GIFTTrainer(
        model=model,
        args=args,
        train_dataset=digits["train"].select(range(32)).with_transform(transform),
        eval_dataset=digits["test"].select(range(16)).with_transform(transform),
        compute_metrics=build_compute_metrics(10),
    )
    trainer.train()
    events = list((tmp_path / "run" / "runs").rglob("events.out.tfevents.*"))  # output_dir/runs/<date>
    assert events, "no TensorBoard event file was written"
    reader = event_accumulator.EventAccumulator(str(events[0].parent))
    reader.Reload()
    scalars = reader.Tags()["scalars"]
    assert {"train/loss", "eval/loss", "eval/accuracy"} <= set(scalars)
    assert [e.step for e in reader.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [e.step for e in reader.Scalars("eval/accuracy")] == [2, 4]
    logged = [entry["eval_accuracy"] for entry in trainer.state.log_history if "eval_accuracy" in entry]
    assert [e.value for e in reader.Scalars("eval/accuracy")] == pytest.approx(logged)
