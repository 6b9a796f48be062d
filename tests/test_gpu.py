"""CUDA paths: bf16 autocast training through GIFTTrainer and the device-resident data on the GPU.

Marked ``gpu``: skipped (with the reason) where CUDA is not available (tests/conftest.py), run
with ``pytest -m gpu`` where a GPU is lent.
"""

import pytest
import torch

from gift_hf import GIFTConfig, GIFTTrainer, create_model
from gift_hf.data.device import DeviceDataLoader, DeviceImageSet
from gift_hf.evaluation.metrics import build_compute_metrics

pytestmark = pytest.mark.gpu


class RecordingTrainer(GIFTTrainer):
    """Records the dtype of every training loss."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if model.training:
            self.loss_dtypes.append((out[0] if return_outputs else out).dtype)
        return out


def test_bf16_autocast_training_of_a_student_on_cuda(tmp_path, digits, digits_transform):
    torch.manual_seed(0)
    student = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8)
    teacher = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8, norm="batchnorm")
    convs: set = set()
    student.timm_model.features[0].register_forward_hook(lambda m, i, o: convs.add((o.dtype, o.device.type)))
    train, test = digits["train"].select(range(256)), digits["test"].select(range(100))
    train.set_transform(digits_transform)
    test.set_transform(digits_transform)
    args = GIFTConfig(
        output_dir=str(tmp_path),
        bf16=True,
        loss="gift",
        max_steps=8,
        per_device_train_batch_size=32,
        learning_rate=1e-3,
        seed=0,
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
    )
    trainer = RecordingTrainer(
        model=student,
        args=args,
        teacher_model=teacher,
        train_dataset=train,
        eval_dataset=test,
        compute_metrics=build_compute_metrics(10),
    )
    trainer.loss_dtypes = []
    before = [p.detach().clone() for p in student.parameters()]
    trainer.train()
    metrics = trainer.evaluate()

    assert trainer.accelerator.mixed_precision == "bf16"
    assert (torch.bfloat16, "cuda") in convs  # the student ran on the GPU under bf16 autocast
    assert trainer.loss_dtypes and set(trainer.loss_dtypes) == {torch.float32}  # the loss is float32
    assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in student.parameters())  # fp32 master
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))  # it trained
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 8 and all(0.0 <= value <= 2.0 for value in losses)  # 1 − cos ∈ [0, 2]
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0
    # a set this small lives on the GPU: batches are gathered there, not collated on the host
    assert isinstance(trainer.get_train_dataloader(), DeviceDataLoader)


def test_device_image_set_on_cuda_matches_the_host_transform(digits, digits_transform):
    rows = digits["train"].select(range(64))
    data = DeviceImageSet.from_dataset(rows, digits_transform, "cuda")
    assert data.pixel_values.device.type == "cuda" and data.labels.device.type == "cuda"

    indices = torch.tensor([5, 0, 63, 5], device="cuda")
    batch = data.batch(indices)
    assert batch["pixel_values"].device.type == "cuda" and batch["pixel_values"].shape == (4, 1, 8, 8)
    host = digits_transform({"image": [rows[i]["image"] for i in indices.tolist()]})["pixel_values"]
    # the same arithmetic as the host transform: equal bit for bit
    torch.testing.assert_close(batch["pixel_values"].cpu(), torch.stack(host), rtol=0, atol=0)
    assert batch["labels"].tolist() == [rows[i]["label"] for i in indices.tolist()]
    # K students: a (K, B) index tensor gives (K, B, ...) batches
    assert data.batch(indices.view(2, 2))["pixel_values"].shape == (2, 2, 1, 8, 8)


@pytest.mark.parametrize("forward", ["vmap", "loop"])
def test_students_trained_together_on_cuda_equal_separate_runs(tmp_path, digits, digits_transform, forward):
    """The population step on the GPU (fp32 and bf16): K = 3 students together, each the run its seed gives alone."""
    from gift_hf import protocol_config
    from gift_hf.engine.training import train_student, train_students

    def build():
        return create_model("gift_convnet_d3", 10, in_chans=1, img_size=8, width=16)

    torch.manual_seed(123)
    teacher = build().eval()
    train = digits["train"].select(range(60)).with_transform(digits_transform)
    test = digits["test"].select(range(100)).with_transform(digits_transform)
    config = protocol_config(
        "gift",
        output_dir=str(tmp_path),
        num_train_epochs=3,
        batch_sizes=None,
        per_device_train_batch_size=20,
        best_of=1,
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    together = train_students(config, build, train, test, seeds=[0, 1, 2], teacher=teacher, forward=forward, quiet=True)
    images = torch.stack(test[:100]["pixel_values"]).cuda()
    for result in together:
        alone = train_student(
            config.replace(seed=result.seed, data_seed=result.seed), build, train, test, teacher=teacher, quiet=True
        )
        assert next(result.model.parameters()).is_cuda
        with torch.no_grad():
            a, b = result.model.eval()(pixel_values=images).logits, alone.model.eval()(pixel_values=images).logits
        assert (a - b).abs().max().item() < 1e-4  # cuDNN's kernels may differ by batch shape
    bf16 = train_students(
        config.replace(bf16=True), build, train, test, seeds=[0, 1, 2], teacher=teacher, forward=forward, quiet=True
    )
    assert all(r.failure is None and r.accuracy > 0.1 for r in bf16)
