"""Mixed precision: the loss is float32 whatever the autocast dtype; bf16 training ≈ fp32."""

import pytest
import torch
from recipe_helpers import one_thread

from gift_hf import LOSSES, GIFTConfig, GIFTTrainer, create_model, get_loss


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_is_float32_under_autocast(name, dtype):
    gen = torch.Generator().manual_seed(0)
    z = (3 * torch.randn(8, 10, generator=gen)).to(dtype)
    t = (3 * torch.randn(8, 10, generator=gen)).to(dtype)
    y = torch.randint(0, 10, (8,), generator=gen)
    loss = get_loss(name)
    with torch.autocast("cpu", dtype=dtype):
        value = loss(z, t, y, reduction="none")
    assert value.dtype == torch.float32
    # Identical to the float32 computation on the same (rounded) inputs: nothing inside
    # ran in half precision.
    torch.testing.assert_close(value, loss(z.float(), t.float(), y, reduction="none"), rtol=0, atol=0)


def test_half_precision_cosine_would_be_wrong():
    # Why the float32 rule matters: for nearly parallel logits 1 − cos is ~5e-5, below
    # bf16's resolution near 1, so a bf16 cosine is far off while ours is exact.
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(64, 100, generator=gen).bfloat16()
    t = (z.float() + 1e-2 * torch.randn(64, 100, generator=gen)).bfloat16()
    exact = get_loss("cosine")(z.double(), t.double(), None).item()
    ours = get_loss("cosine")(z, t, None).item()
    naive = (1 - torch.nn.functional.cosine_similarity(z, t, dim=-1)).mean().item()
    assert abs(ours - exact) < 1e-4 * exact
    assert abs(naive - exact) > 0.05 * exact


class DtypeRecordingTrainer(GIFTTrainer):
    """Records the dtype of each training loss and of the student's first conv output."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss = out[0] if return_outputs else out
        if model.training:
            self.loss_dtypes.append(loss.dtype)
        return out


def _train(tmp_path, digits, digits_transform, bf16: bool) -> tuple[DtypeRecordingTrainer, dict, set]:
    """12 GIFT steps of a ConvNet-D3 student with a (random, batch-norm) ConvNet-D3 teacher."""
    torch.manual_seed(0)
    student = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8)
    teacher = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8, norm="batchnorm")
    conv_dtypes: set = set()
    student.timm_model.features[0].register_forward_hook(lambda m, i, o: conv_dtypes.add(o.dtype))
    train, test = digits["train"].select(range(256)), digits["test"].select(range(100))
    train.set_transform(digits_transform)
    test.set_transform(digits_transform)
    args = GIFTConfig(
        output_dir=str(tmp_path / ("bf16" if bf16 else "fp32")),
        bf16=bf16,
        use_cpu=True,
        loss="gift",
        max_steps=12,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=50,
        learning_rate=1e-3,
        seed=0,
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
    )
    trainer = DtypeRecordingTrainer(
        model=student, args=args, teacher_model=teacher, train_dataset=train, eval_dataset=test
    )
    trainer.loss_dtypes = []
    with one_thread():
        trainer.train()
        metrics = trainer.evaluate()
    # read now: the accelerator state is a process-wide singleton the next trainer replaces
    metrics["mixed_precision"] = trainer.accelerator.mixed_precision
    return trainer, metrics, conv_dtypes


def test_bf16_training_is_float32_loss_and_close_to_fp32(tmp_path, digits, digits_transform):
    # bf16 first: the float32 run after it, in the same process, must not inherit its precision
    # (transformers before 5 left it in the environment, where the next run read it).
    bf16, bf16_metrics, bf16_convs = _train(tmp_path, digits, digits_transform, bf16=True)
    fp32, fp32_metrics, fp32_convs = _train(tmp_path, digits, digits_transform, bf16=False)

    assert bf16_metrics["mixed_precision"] == "bf16" and fp32_metrics["mixed_precision"] == "no"
    assert torch.bfloat16 in bf16_convs  # the student really ran under bf16 autocast
    assert fp32_convs == {torch.float32}
    assert bf16.loss_dtypes and set(bf16.loss_dtypes) == {torch.float32}
    assert set(fp32.loss_dtypes) == {torch.float32}

    losses = [[log["loss"] for log in t.state.log_history if "loss" in log] for t in (fp32, bf16)]
    assert len(losses[0]) == len(losses[1]) == 12
    # GIFT's loss is 1 − cos ∈ [0, 2]: bf16 rounding of the convolutions moves it a little.
    for a, b in zip(*losses):
        assert abs(a - b) < 0.02, losses
    assert bf16_metrics["eval_loss"] == pytest.approx(fp32_metrics["eval_loss"], rel=0.02)


def test_teacher_gets_its_own_dtype_when_the_batch_is_half(tmp_path):
    # DeepSpeed hands the step a bf16 batch while the frozen teacher stays float32.
    student = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8)
    teacher = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8)
    trainer = GIFTTrainer(model=student, args=GIFTConfig(output_dir=str(tmp_path), use_cpu=True), teacher_model=teacher)
    pixels = torch.randn(4, 1, 8, 8)
    from gift_hf.engine.step import loss_targets

    targets = loss_targets(trainer.loss_fn, pixels.bfloat16(), None, trainer.teacher_model)
    assert targets.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(targets, teacher(pixel_values=pixels.bfloat16().float()).logits)
