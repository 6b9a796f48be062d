"""GIFTTrainer end to end on the real digits dataset with real timm models and Trainer."""

import pytest
import torch

from gift_hf import GIFTConfig, GIFTTrainer, get_loss
from gift_hf.evaluation.metrics import build_compute_metrics


def config(tmp_path, **kwargs):
    base = dict(
        output_dir=str(tmp_path / "run"),
        use_cpu=True,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        max_steps=4,
        learning_rate=1e-3,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    base.update(kwargs)
    return GIFTConfig(**base)


@pytest.fixture
def small(digits, digits_transform):
    train = digits["train"].select(range(64)).with_transform(digits_transform)
    test = digits["test"].select(range(100)).with_transform(digits_transform)
    return train, test


def test_train_with_online_teacher_checkpoint_and_evaluate(tmp_path, small, tiny_model):
    train, test = small
    teacher, student = tiny_model(), tiny_model()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    args = config(tmp_path, loss="gift", save_strategy="steps", save_steps=4)
    trainer = GIFTTrainer(
        model=student,
        args=args,
        teacher_model=teacher,
        train_dataset=train,
        eval_dataset=test,
        compute_metrics=build_compute_metrics(10),
    )
    # the teacher is frozen, in eval mode and not wrapped for training
    assert trainer.teacher_model is teacher and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    result = trainer.train()
    assert result.global_step == 4 and torch.isfinite(torch.tensor(result.training_loss))
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.state_dict().items())
    checkpoint = tmp_path / "run" / "checkpoint-4"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "config.json").is_file()
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and "eval_top5_accuracy" in metrics
    assert metrics["eval_top5_accuracy"] >= metrics["eval_accuracy"]
    # eval_loss is hard-label CE on the test split, comparable across training losses
    with torch.no_grad():
        batch = trainer.data_collator([test[i] for i in range(100)])
        student.eval()
        ce = get_loss("ce")(student(pixel_values=batch["pixel_values"]).logits, None, batch["labels"]).item()
    assert metrics["eval_loss"] == pytest.approx(ce, rel=1e-4)


def test_train_from_a_stored_soft_label_column(tmp_path, digits, digits_transform, tiny_model):
    teacher = tiny_model()
    rows = digits["train"].select(range(32))
    batch = torch.stack([digits_transform({"image": [im]})["pixel_values"][0] for im in rows["image"]])
    with torch.no_grad():
        soft = teacher(pixel_values=batch).logits
    stored = rows.add_column("soft_label", soft.tolist()).with_transform(digits_transform)
    args = config(tmp_path, loss="kl", soft_label_source="dataset", max_steps=3)
    trainer = GIFTTrainer(model=tiny_model(), args=args, train_dataset=stored)
    assert trainer.teacher_model is None
    assert trainer.train().global_step == 3
    # the collator hands the stored labels to the loss unchanged
    collated = trainer.data_collator([stored[i] for i in range(4)])
    torch.testing.assert_close(collated["soft_labels"], soft[:4])


def test_accumulation_without_a_label_column_is_a_clear_error(tmp_path, digits, digits_transform, tiny_model):
    """Without labels Trainer cannot count a step's samples; accumulated steps would be weighed
    differently by different transformers releases, so this is refused rather than guessed."""
    rows = digits["train"].select(range(16))
    soft = torch.randn(16, 10, generator=torch.Generator().manual_seed(0))
    stored = rows.add_column("soft_label", soft.tolist()).remove_columns("label").with_transform(digits_transform)
    args = config(tmp_path, loss="kl", soft_label_source="dataset", max_steps=1, per_device_train_batch_size=8)
    assert GIFTTrainer(model=tiny_model(), args=args, train_dataset=stored).train().global_step == 1
    args = config(
        tmp_path,
        loss="kl",
        soft_label_source="dataset",
        max_steps=1,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
    )
    with pytest.raises(ValueError, match="gradient_accumulation_steps=2 needs a label column"):
        GIFTTrainer(model=tiny_model(), args=args, train_dataset=stored).train()


def test_stored_soft_labels_missing_is_a_clear_error(tmp_path, small, tiny_model):
    train, _ = small
    trainer = GIFTTrainer(
        model=tiny_model(), args=config(tmp_path, loss="kl", soft_label_source="dataset"), train_dataset=train
    )
    with pytest.raises(KeyError, match="'soft_label' column"):
        trainer.train()


def test_gradient_accumulation_honours_num_items_in_batch(tmp_path, digits, digits_transform, tiny_model):
    """Uneven accumulated batches (16 + 8 rows) give the same update as one batch of 24.

    Averaging per-batch means would weight the 8 rows twice as much; dividing the summed
    loss by the step's item count (what Trainer passes as num_items_in_batch) does not.
    """
    train = digits["train"].select(range(24)).with_transform(digits_transform)
    teacher = tiny_model()
    results = []
    for batch, accum in ((24, 1), (16, 2)):
        torch.manual_seed(0)
        student = tiny_model()
        args = config(
            tmp_path / f"{batch}",
            loss="gift",
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accum,
            max_steps=1,
            optim="sgd",
            learning_rate=0.5,
            lr_scheduler_type="constant",
            data_seed=0,
        )
        GIFTTrainer(model=student, args=args, teacher_model=teacher, train_dataset=train).train()
        results.append(student.state_dict())
    # float32 summation order (threads, batch split) moves weights by a few 1e-6; weighting the
    # 8 rows twice moves them by orders of magnitude more
    for key in results[0]:
        torch.testing.assert_close(results[0][key], results[1][key], rtol=1e-4, atol=1e-5)


def test_class_count_mismatch_names_both_numbers(tmp_path, tiny_model):
    with pytest.raises(ValueError, match="teacher has 5 classes but the student has 10"):
        GIFTTrainer(model=tiny_model(), args=config(tmp_path), teacher_model=tiny_model(num_classes=5))


def test_teacher_is_required_for_online_soft_labels(tmp_path, tiny_model):
    with pytest.raises(ValueError, match="needs a teacher"):
        GIFTTrainer(model=tiny_model(), args=config(tmp_path, loss="gift"))


def test_teacher_from_a_saved_directory_by_name(tmp_path, small, tiny_model):
    train, _ = small
    tiny_model().save_pretrained(tmp_path / "teacher")
    args = config(tmp_path, loss="cosine", teacher_model_name_or_path=str(tmp_path / "teacher"), max_steps=2)
    trainer = GIFTTrainer(model=tiny_model(), args=args, train_dataset=train)
    assert trainer.train().global_step == 2


def test_config_validation():
    with pytest.raises(ValueError, match="loss: unknown loss 'hinge'"):
        GIFTConfig(output_dir="x", loss="hinge")
    with pytest.raises(ValueError, match="gamma: got -1"):
        GIFTConfig(output_dir="x", gamma=-1)
    with pytest.raises(ValueError, match="smoothing: got 1.0"):
        GIFTConfig(output_dir="x", smoothing=1.0)
    with pytest.raises(ValueError, match="soft_label_source: got 'web'"):
        GIFTConfig(output_dir="x", soft_label_source="web")
    with pytest.raises(ValueError, match="needs soft labels but soft_label_source is 'none'"):
        GIFTConfig(output_dir="x", loss="kl", soft_label_source="none")
    assert GIFTConfig(output_dir="x", teacher_model_init_kwargs='{"num_classes": 3}').teacher_model_init_kwargs == {
        "num_classes": 3
    }
    assert GIFTConfig(output_dir="x").trust_remote_code is False


def test_the_public_trainer_hooks_gift_hf_relies_on():
    """GIFTTrainer overrides no private Trainer method; these public signatures are what it uses."""
    import inspect

    from transformers import Trainer, TrainingArguments

    assert "num_items_in_batch" in inspect.signature(Trainer.compute_loss).parameters
    assert list(inspect.signature(Trainer.training_step).parameters)[:3] == ["self", "model", "inputs"]
    assert list(inspect.signature(Trainer.prediction_step).parameters)[:4] == [
        "self",
        "model",
        "inputs",
        "prediction_loss_only",
    ]
    assert list(inspect.signature(Trainer.save_model).parameters)[:2] == ["self", "output_dir"]
    assert "average_tokens_across_devices" in TrainingArguments.__dataclass_fields__
    overridden = {name for name in vars(GIFTTrainer) if name.startswith("_") and not name.startswith("__")}
    assert not overridden & set(dir(Trainer)), overridden & set(dir(Trainer))
