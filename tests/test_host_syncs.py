"""No host sync in a GIFTTrainer training step, except on logging steps.

Every read of a tensor value back to the host (``.item()``, ``bool()``, ``int()``,
``float()``, ``.tolist()``) waits for the device on a GPU. Counted here on the CPU, over real
``GIFTTrainer`` training steps (device-resident set, online teacher or stored soft labels,
on-device augmentation and mixing, AdamW, the learning-rate schedule, the divergence guard):
a step that does not log reads nothing back, from the end of the previous step's callbacks
to the next batch included.
"""

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image, List, Value
from host_reads import HostReadCounter, count_host_reads
from PIL import Image as PILImage
from transformers import TrainerCallback

from gift_hf import GIFTConfig, GIFTTrainer
from gift_hf.data.device import DeviceDataLoader
from gift_hf.data.images import ImageTransform


def image_set(n=48, size=8, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    columns = {
        "image": [PILImage.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)],
        "label": [i % classes for i in range(n)],
        "soft_label": rng.standard_normal((n, classes)).astype(np.float32).tolist(),
    }
    features = Features(
        {
            "image": Image(),
            "label": ClassLabel(num_classes=classes),
            "soft_label": List(Value("float32"), length=classes),
        }
    )
    return Dataset.from_dict(columns, features=features)


class StepReads(TrainerCallback):
    """The host reads of each step: from its on_step_begin to the next step's (the next batch included)."""

    def __init__(self, counts, dispatch):
        self.counts, self.dispatch = counts, dispatch
        self.per_step, self.start, self.step = {}, None, None

    def snapshot(self):
        return sum(self.counts.values()) + self.dispatch.count

    def on_step_begin(self, args, state, control, **kwargs):
        now = self.snapshot()
        if self.start is not None:
            self.per_step[self.step] = now - self.start
        self.start, self.step = now, state.global_step + 1


@pytest.mark.parametrize(
    "settings",
    [
        dict(loss="gift", soft_label_source="teacher", augmentation="color_crop_cutout_flip_scale_rotate", mix="both"),
        dict(
            loss="kl",
            soft_label_source="teacher",
            augmentation="patchshuffle_resizedcrop_flip",
            augmentation_mode="all",
            mix="cutmix",
        ),
        dict(loss="gift", soft_label_source="dataset", augmentation="flip_crop", mix="mixup", max_grad_norm=1.0),
    ],
    ids=["gift-dsa-mix", "rded", "stored-labels-clipped"],
)
def test_training_steps_read_nothing_back_except_logging_steps(tmp_path, tiny_model, monkeypatch, settings):
    transform = ImageTransform(channels=1, mean=(0.5,), std=(0.5,))
    train = image_set().with_transform(transform)
    args = GIFTConfig(
        output_dir=str(tmp_path / "run"),
        use_cpu=True,
        per_device_train_batch_size=4,
        max_steps=9,
        logging_steps=4,
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        report_to="none",
        lr_scheduler_type="cosine",
        lr_milestones=[],
        lr_decay=1.0,
        # Unfused AdamW reads its step counters with .item(): tensors it keeps on the
        # host on a GPU too (not capturable), so no device sync there, but the same
        # reads as a sync here on the CPU. The fused kernel reads them itself.
        optim="adamw_torch_fused",
        **settings,
    )
    counts = count_host_reads(monkeypatch)
    dispatch = HostReadCounter()
    reads = StepReads(counts, dispatch)

    def model():
        return tiny_model(num_classes=4, width=8)

    trainer = GIFTTrainer(model=model(), args=args, teacher_model=model(), train_dataset=train, callbacks=[reads])
    assert isinstance(trainer.get_train_dataloader(), DeviceDataLoader)
    # The divergence guard folds its per-step sums every few micro-batches: inside the counted steps here.
    trainer.monitor.FOLD_EVERY = 3
    with dispatch:
        trainer.train()
    assert sorted(reads.per_step) == list(range(1, 9))  # steps 1..8 measured (up to the 9th's beginning)
    logging_steps = {4, 8}
    assert {step: n for step, n in reads.per_step.items() if step not in logging_steps and n} == {}
    assert all(reads.per_step[step] > 0 for step in logging_steps)  # the guard sees the logging steps' reads


def test_the_counter_sees_every_kind_of_read(monkeypatch):
    counts = count_host_reads(monkeypatch)
    with HostReadCounter() as dispatch:
        x = torch.ones(3)
        x.sum().item(), bool(x[0]), int(x[0]), float(x[0]), x.tolist()
        if torch.isnan(x).any():  # an implicit bool
            pass
    assert dispatch.count >= 5
    assert {k: v for k, v in counts.items() if v} == {
        "item": 1,
        "__bool__": 2,
        "__int__": 1,
        "__float__": 1,
        "tolist": 1,
    }
