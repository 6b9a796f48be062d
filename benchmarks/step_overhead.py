"""Data-path throughput and the bare training step, measured in one run.

**Data path** (``--images`` RGB images of ``--img_size`` px, batch ``--batch_size``), images
per second over ``--epochs`` epochs (and more, to at least half a second) *after* a first,
untimed epoch (which decodes and caches):

- ``hub``: the images as PNGs in the Hub layout (a parquet shard read by
  ``datasets.load_dataset``), through ``ImageTransform`` in a shuffling ``DataLoader`` with
  ``SoftLabelCollator`` (``--workers`` workers) — the path of sets too large for the device;
- ``device``: the same dataset decoded once into a :class:`gift_hf.data.device.DeviceImageSet`
  on ``--device``, batches gathered and normalised there by a ``DeviceDataLoader``;
- ``tensor``: the already-normalised images as one float tensor on the device, indexed by
  a random permutation — the ceiling.

- ``GIFTTrainer loader (hub)``: the loader ``GIFTTrainer.get_train_dataloader`` builds for the
  Hub-layout set by default (``device_resident="auto"``).

Printed: the rates and the ratios ``device / tensor``, ``hub / tensor`` and
``GIFTTrainer loader (hub) / tensor`` (goal ≥ 0.9).

**Bare step** (``--steps`` timed steps after ``--warmup``): a hand-written loop over the
device-resident set doing the work a GIFT training step does — DSA augmentation on the
batch's device, the frozen teacher on the augmented batch, the GIFT loss, backward, AdamW
and the learning-rate schedule ``GIFTTrainer`` runs by default (×0.2 at 2/3 and 5/6 of
training) — at a GPU-like size (ConvNet-D3 of width 8, 8×8 grayscale, batch 10) and at the
quickstart's size (ConvNet-D3 of width 128, 16×16 grayscale, batch 50); and ``GIFTTrainer``
doing the same work (same model, teacher, loss, AdamW, schedule and augmentation) on the
same images through its default, device-resident data path, timed from one ``on_step_end``
to the next. A plain ``transformers.Trainer`` whose ``compute_loss`` does the bare loop's work, with the bare
loop's optimizer and schedule, is timed the same way: the cost any Trainer adds. Printed:
milliseconds per step of the three and their ratios (goal: ``GIFTTrainer / bare`` ≤ 1.25 at
the GPU-like size), then the per-step work of ``Trainer``'s own loop that the bare loop does
not do, each piece timed alone.
Run it with one thread (``OMP_NUM_THREADS=1 --threads 1``) on a quiet machine.

Usage::

    python benchmarks/step_overhead.py                 # CPU
    python benchmarks/step_overhead.py --device cuda   # also the peak CUDA memory
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import tempfile
import time

import numpy as np
import torch


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--img_size", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument(
        "--epochs",
        type=int,
        default=3,
        help="timed epochs of the data path (at least: more to fill half a second), after one untimed",
    )
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the hub path")
    parser.add_argument("--steps", type=int, default=200, help="timed steps of the bare loop and of GIFTTrainer")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each step timing; the best counts")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--forbid_syncs",
        action="store_true",
        help="CUDA: raise on any implicit synchronisation in the bare loop's data gather and "
        "augmentation (torch.cuda.set_sync_debug_mode('error'))",
    )
    return parser.parse_args(argv)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- data path
def write_hub_dataset(root: str, n: int, size: int, classes: int = 10):
    """``n`` random RGB PNGs with labels as a parquet shard in the Hub layout, loaded back."""
    from datasets import ClassLabel, Dataset, Features, Image, load_dataset
    from PIL import Image as PILImage

    rng = np.random.default_rng(0)
    images = [PILImage.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]
    features = Features({"image": Image(), "label": ClassLabel(num_classes=classes)})
    data = Dataset.from_dict({"image": images, "label": rng.integers(0, classes, n).tolist()}, features=features)
    os.makedirs(os.path.join(root, "data"))
    data.to_parquet(os.path.join(root, "data", "train-00000-of-00001.parquet"))
    return load_dataset(root, split="train")


def images_per_second(loader, device: torch.device, epochs: int, min_seconds: float = 0.5) -> float:
    """Rate over ``epochs`` full passes (more until ``min_seconds`` have passed: the fast paths
    finish an epoch in a millisecond) after one untimed pass; each batch lands on ``device``."""
    for batch in loader:  # first epoch: decode, cache, warm up
        batch["pixel_values"].to(device)
    _sync(device)
    start, seen, done = time.perf_counter(), 0, 0
    while done < epochs or time.perf_counter() - start < min_seconds:
        for batch in loader:
            x = batch["pixel_values"].to(device, non_blocking=True)
            seen += x.shape[0]
        done += 1
        _sync(device)
    return seen / (time.perf_counter() - start)


class TensorLoader:
    """The ceiling: normalised images already in one device tensor, indexed by a permutation."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size

    def __iter__(self):
        order = torch.randperm(len(self.images)).to(self.images.device)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield {"pixel_values": self.images.index_select(0, index), "labels": self.labels.index_select(0, index)}


def data_path(args, device: torch.device) -> dict[str, float]:
    from torch.utils.data import DataLoader

    from gift_hf.data.device import DeviceBatchSampler, DeviceDataLoader, DeviceImageSet
    from gift_hf.data.images import ImageTransform, SoftLabelCollator

    transform = ImageTransform(channels=3, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
    with tempfile.TemporaryDirectory() as tmp:
        hub = write_hub_dataset(os.path.join(tmp, "set"), args.images, args.img_size)
        hub_loader = DataLoader(
            hub.with_transform(transform),
            batch_size=args.batch_size,
            shuffle=True,
            collate_fn=SoftLabelCollator(),
            num_workers=args.workers,
            pin_memory=device.type == "cuda",
            persistent_workers=args.workers > 0,
        )
        device_set = DeviceImageSet.from_dataset(hub, transform, device, cache_dir=os.path.join(tmp, "cache"))
        device_loader = DeviceDataLoader(
            device_set, DeviceBatchSampler(len(device_set), args.batch_size, device=device)
        )
        everything = device_set.batch(torch.arange(len(device_set), device=device))
        tensor_loader = TensorLoader(everything["pixel_values"], everything["labels"], args.batch_size)
        # interleaved, twice, best of two: load changes hit every path alike
        rates: dict[str, list[float]] = {"hub": [], "device": [], "tensor": []}
        for _ in range(2):
            for name, loader in (("hub", hub_loader), ("device", device_loader), ("tensor", tensor_loader)):
                rates[name].append(images_per_second(loader, device, args.epochs))
    return {name: max(values) for name, values in rates.items()}


# ---------------------------------------------------------------------------- bare loop
@contextlib.contextmanager
def _no_implicit_syncs(device: torch.device, forbid: bool):
    if not (forbid and device.type == "cuda"):
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


class StepWork:
    """What the bare loop and the plain Trainer train with: ``batch_size · 20`` random uint8
    images on the device (normalised once, as GIFTTrainer keeps them), a frozen teacher and a
    student ConvNet-D3, AdamW with the schedule GIFTTrainer runs by default (GIFTConfig: ×0.2
    at 2/3 and 5/6 of ``total_steps``), the DSA augmenter and the GIFT loss."""

    def __init__(
        self, device: torch.device, width: int, size: int, batch_size: int, total_steps: int, augmentation: str
    ) -> None:
        from gift_hf import create_model, get_loss
        from gift_hf.data.augment import BatchAugmenter
        from gift_hf.data.device import DeviceImageSet

        torch.manual_seed(0)
        self.device, self.batch_size, n = device, batch_size, batch_size * 20
        images = torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8)
        labels = torch.randint(0, 10, (n,))
        self.data = DeviceImageSet(images, labels, mean=(0.5,), std=(0.5,), device=device, normalize=True)

        def model():
            return create_model("gift_convnet_d3", 10, in_chans=1, img_size=size, width=width).to(device)

        self.teacher = model().eval().requires_grad_(False)
        self.student = model()
        self.optimizer = torch.optim.AdamW(self.student.parameters(), lr=1e-3, weight_decay=1e-4)
        milestones = [round(total_steps * 2 / 3), round(total_steps * 5 / 6)]
        self.schedule = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones, 0.2)
        self.augmenter = BatchAugmenter(augmentation, mode="single", seed=0)
        self.loss_fn = get_loss("gift")

    def sampler(self):
        from gift_hf.data.device import DeviceBatchSampler

        return DeviceBatchSampler(len(self.data), self.batch_size, device=self.device)

    def loss(self, student: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The GIFT loss of ``student`` on the augmented batch, the teacher relabelling it."""
        from gift_hf.models.modeling import teacher_logits

        with torch.no_grad():
            targets = teacher_logits(self.teacher, x)
        return self.loss_fn(student(pixel_values=x).logits, targets, y)


def bare_loop_ms(
    device: torch.device,
    width: int,
    size: int,
    batch_size: int,
    steps: int,
    warmup: int,
    forbid_syncs: bool = False,
    augmentation: str = "color_crop_cutout_scale_rotate",
) -> float:
    """Median ms per step of a hand-written GIFT step over a device-resident set."""
    from gift_hf.data.device import DeviceDataLoader

    work = StepWork(device, width, size, batch_size, steps + warmup, augmentation)
    loader = DeviceDataLoader(work.data, work.sampler())
    student, optimizer, schedule, augmenter = work.student.train(), work.optimizer, work.schedule, work.augmenter
    times = []
    iterator = iter(loader)
    for step in range(steps + warmup):
        start = time.perf_counter()
        augmenter.set_step(step)  # as GIFTTrainer does: the same ops drawn at the same steps
        # The data gather and the augmentation must not wait for the GPU: under
        # --forbid_syncs any implicit CUDA synchronisation there raises.
        with _no_implicit_syncs(device, forbid_syncs):
            batch = next(iterator, None)
            if batch is None:  # next epoch
                iterator = iter(loader)
                batch = next(iterator)
            x, y, _ = augmenter(batch["pixel_values"], batch["labels"])
        loss = work.loss(student, x, y)
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[warmup:])


def _image_dataset(images: torch.Tensor, labels: torch.Tensor):
    """The uint8 ``(N, 1, H, W)`` images as a ``datasets.Dataset`` of PNG-able grayscale images."""
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage

    pictures = [PILImage.fromarray(image[0].numpy(), mode="L") for image in images]
    features = Features({"image": Image(), "label": ClassLabel(num_classes=10)})
    return Dataset.from_dict({"image": pictures, "label": labels.tolist()}, features=features)


def step_timer(device: torch.device):
    """A ``TrainerCallback`` noting when each optimizer step ends (the device's work included)."""
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            _sync(device)
            self.times.append(time.perf_counter())

        def median_ms(self, warmup: int) -> float:
            """Median milliseconds between consecutive step ends, after ``warmup`` steps."""
            deltas = [b - a for a, b in zip(self.times, self.times[1:])]
            return 1000 * statistics.median(deltas[warmup:])

    return StepTimes()


def trainer_ms(
    device: torch.device,
    width: int,
    size: int,
    batch_size: int,
    steps: int,
    warmup: int,
    augmentation: str = "color_crop_cutout_scale_rotate",
) -> float:
    """Median ms per step of ``GIFTTrainer`` doing the bare loop's work (same model, teacher,
    loss, optimizer and augmentation) on the same images, fed by its default data path."""
    from gift_hf import GIFTConfig, GIFTTrainer, create_model
    from gift_hf.data.device import DeviceDataLoader
    from gift_hf.data.images import ImageTransform

    torch.manual_seed(0)
    n = batch_size * 20
    images = torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,))
    train = _image_dataset(images, labels).with_transform(ImageTransform(channels=1, mean=(0.5,), std=(0.5,)))

    def model():
        return create_model("gift_convnet_d3", 10, in_chans=1, img_size=size, width=width)

    times = step_timer(device)
    with tempfile.TemporaryDirectory() as tmp:
        config = GIFTConfig(
            output_dir=tmp,
            use_cpu=device.type == "cpu",
            per_device_train_batch_size=batch_size,
            max_steps=steps + warmup + 1,
            loss="gift",
            soft_label_source="teacher",
            augmentation=augmentation,
            augmentation_mode="single",
            learning_rate=1e-3,
            weight_decay=1e-4,
            optim="adamw_torch",
            logging_steps=10**6,
            save_strategy="no",
            eval_strategy="no",
            disable_tqdm=True,
            report_to="none",
            seed=0,
        )
        trainer = GIFTTrainer(model=model(), args=config, teacher_model=model(), train_dataset=train, callbacks=[times])
        assert isinstance(trainer.get_train_dataloader(), DeviceDataLoader), "expected the device-resident path"
        trainer.train()
    return times.median_ms(warmup)


def plain_trainer_ms(
    device: torch.device,
    width: int,
    size: int,
    batch_size: int,
    steps: int,
    warmup: int,
    augmentation: str = "color_crop_cutout_scale_rotate",
) -> float:
    """Median ms per step of a plain ``transformers.Trainer`` whose ``compute_loss`` does the bare
    loop's work (its optimizer and schedule, over the same device-resident batches): what any
    Trainer costs, against which GIFTTrainer's own per-step cost shows."""
    from transformers import Trainer, TrainingArguments

    from gift_hf.data.device import DeviceDataLoader

    total = steps + warmup + 1
    work = StepWork(device, width, size, batch_size, total, augmentation)

    class PlainTrainer(Trainer):
        def get_train_dataloader(self):
            return DeviceDataLoader(work.data, work.sampler())

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            work.augmenter.set_step(self.state.global_step)
            x, y, _ = work.augmenter(inputs["pixel_values"], inputs["labels"])
            return work.loss(model, x, y)

    times = step_timer(device)
    with tempfile.TemporaryDirectory() as tmp:
        # GIFTConfig's defaults where they differ: no clipping, and no per-step read of the loss
        # (logging_nan_inf_filter, a host sync).
        args = TrainingArguments(
            output_dir=tmp,
            use_cpu=device.type == "cpu",
            per_device_train_batch_size=batch_size,
            max_steps=total,
            max_grad_norm=0.0,
            logging_nan_inf_filter=False,
            logging_steps=10**6,
            save_strategy="no",
            eval_strategy="no",
            disable_tqdm=True,
            report_to="none",
            seed=0,
        )
        trainer = PlainTrainer(
            model=work.student, args=args, optimizers=(work.optimizer, work.schedule), callbacks=[times]
        )
        trainer.train()
    return times.median_ms(warmup)


def trainer_fixed_costs_us(device: torch.device, width: int, size: int) -> dict[str, float]:
    """Microseconds per step of work ``Trainer``'s own loop adds to *every* trainer's step, each
    timed alone on the GPU-like student: transformers' gradient norm (computed every step for
    the logs, even without clipping), accelerate's optimizer wrapper looking up the optional
    ``lomo_optim`` package (twice per step) and transformers' ``model.train()``. No setting of
    ``TrainingArguments`` turns them off; they are printed so the ratio can be read against them."""
    import timeit

    from accelerate import Accelerator
    from accelerate.utils import is_lomo_available

    from gift_hf import create_model

    model = create_model("gift_convnet_d3", 10, in_chans=1, img_size=size, width=width).to(device)
    model(pixel_values=torch.randn(10, 1, size, size, device=device)).logits.sum().backward()
    accelerator = Accelerator(cpu=device.type == "cpu")

    def per_call(fn, calls: int = 2000) -> float:
        return 1e6 * min(timeit.repeat(fn, number=calls, repeat=5)) / calls

    return {
        "transformers: gradient norm for the logs": per_call(
            lambda: (accelerator.clip_grad_norm_(model.parameters(), float("inf")), _sync(device))
        ),
        "accelerate: optimizer wrapper's package lookups (2)": 2 * per_call(is_lomo_available),
        "transformers: model.train()": per_call(model.train),
    }


def trainer_data_rate(args, device: torch.device) -> float:
    """Images/s of the loader ``GIFTTrainer.get_train_dataloader`` builds for the Hub-layout set (its default)."""
    from gift_hf import GIFTConfig, GIFTTrainer, create_model
    from gift_hf.data.images import ImageTransform

    transform = ImageTransform(channels=3, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
    with tempfile.TemporaryDirectory() as tmp:
        hub = write_hub_dataset(os.path.join(tmp, "set"), args.images, args.img_size)
        config = GIFTConfig(
            output_dir=tmp,
            use_cpu=device.type == "cpu",
            per_device_train_batch_size=args.batch_size,
            loss="ce",
            soft_label_source="none",
            report_to="none",
        )
        model = create_model("gift_convnet_d3", 10, in_chans=3, img_size=args.img_size, width=8)
        trainer = GIFTTrainer(model=model, args=config, train_dataset=hub.with_transform(transform))
        loader = trainer.get_train_dataloader()
        return max(images_per_second(loader, device, args.epochs) for _ in range(2))


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rates = data_path(args, device)
    rates["GIFTTrainer loader (hub)"] = trainer_data_rate(args, device)
    gpu_like = "GPU-like (ConvNet-D3 width 8, 1×8×8, batch 10)"
    sizes = {
        gpu_like: (8, 8, 10),
        "quickstart (ConvNet-D3 width 128, 1×16×16, batch 50)": (128, 16, 50),
    }
    steps, trainer_steps, plain_steps = {}, {}, {}
    for name, (width, size, batch_size) in sizes.items():
        # interleaved, best of --repeats (as the data path): load changes hit both alike
        bare, trained, plain = [], [], []
        for _ in range(args.repeats):
            bare.append(bare_loop_ms(device, width, size, batch_size, args.steps, args.warmup, args.forbid_syncs))
            trained.append(trainer_ms(device, width, size, batch_size, args.steps, args.warmup))
            plain.append(plain_trainer_ms(device, width, size, batch_size, args.steps, args.warmup))
        steps[name], trainer_steps[name], plain_steps[name] = min(bare), min(trained), min(plain)
    print(
        f"Setting: {args.images} RGB images of {args.img_size} px, batch {args.batch_size}, at least "
        f"{args.epochs} timed epochs (and half a second) after one untimed, hub workers {args.workers}, "
        f"device {device} "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs), torch threads "
        f"{torch.get_num_threads()}; best of 2 interleaved runs (data path) and of {args.repeats} (steps)."
    )
    print()
    print("| data path | images/s |")
    print("|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} |")
    print()
    ratios = {
        "device / tensor": rates["device"] / rates["tensor"],
        "hub / tensor": rates["hub"] / rates["tensor"],
        "device / hub": rates["device"] / rates["hub"],
        "GIFTTrainer loader (hub) / tensor (goal ≥ 0.9)": rates["GIFTTrainer loader (hub)"] / rates["tensor"],
    }
    print("| ratio | value |")
    print("|---|---|")
    for name, value in ratios.items():
        print(f"| {name} | {value:.2f} |")
    print()
    print(
        "| GIFT step (DSA, online teacher, AdamW) | bare loop ms/step | GIFTTrainer ms/step | GIFTTrainer / bare "
        "| plain Trainer ms/step | plain Trainer / bare | GIFTTrainer / plain Trainer |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, ms in steps.items():
        gift, plain = trainer_steps[name], plain_steps[name]
        print(
            f"| {name} | {ms:.2f} | {gift:.2f} | {gift / ms:.2f} | {plain:.2f} | {plain / ms:.2f} "
            f"| {gift / plain:.2f} |"
        )
    print("\n(goal: GIFTTrainer / bare ≤ 1.25 at the GPU-like size)")
    fixed = trainer_fixed_costs_us(device, *sizes[gpu_like][:2])
    print("\nWork every Trainer step does that the bare loop does not, timed alone (GPU-like student):\n")
    print("| per step | µs |")
    print("|---|---|")
    for what, us in fixed.items():
        print(f"| {what} | {us:.1f} |")
    upstream_ms = sum(fixed.values()) / 1000
    print(f"| total | {1000 * upstream_ms:.1f} |")
    print(
        f"\nGIFTTrainer / bare at the GPU-like size without those: "
        f"{(trainer_steps[gpu_like] - upstream_ms) / steps[gpu_like]:.2f}"
    )
    if device.type == "cuda":
        print(f"\npeak CUDA memory allocated: {torch.cuda.max_memory_allocated(device) / 2**20:,.1f} MiB")
    return {
        "rates": rates,
        "ratios": ratios,
        "step_ms": steps,
        "trainer_step_ms": trainer_steps,
        "plain_trainer_step_ms": plain_steps,
        "trainer_fixed_us": fixed,
    }


if __name__ == "__main__":
    main()
