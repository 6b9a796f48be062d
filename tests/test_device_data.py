"""Device-resident training sets: exact batches, decode-once cache, DDP shards, exact resume."""

import json
import logging
import os

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image, List, Value, load_dataset
from host_reads import count_host_reads
from PIL import Image as PILImage

from gift_hf import GIFTConfig, GIFTTrainer
from gift_hf.data.device import (
    DeviceBatchSampler,
    DeviceDataLoader,
    DeviceImageSet,
    dataloader_kwargs,
    decode_dataset,
    decoded_cache_path,
    device_resident,
    fits_on_device,
)
from gift_hf.data.images import ImageTransform, ResizeCenterCropTransform

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def write_hub_dataset(root, n=40, size=20, classes=4, soft=True, sizes=None, seed=0):
    """A real image dataset in the Hub layout (PNG bytes in a parquet shard), loaded back with load_dataset."""
    rng = np.random.default_rng(seed)
    images = [
        PILImage.fromarray(rng.integers(0, 256, ((sizes or {}).get(i, size),) * 2 + (3,), dtype=np.uint8))
        for i in range(n)
    ]
    columns = {"image": images, "label": [i % classes for i in range(n)]}
    features = {"image": Image(), "label": ClassLabel(num_classes=classes)}
    if soft:
        columns["soft_label"] = rng.standard_normal((n, classes)).astype(np.float32).tolist()
        features["soft_label"] = List(Value("float32"), length=classes)
    os.makedirs(root / "data", exist_ok=True)
    shard = root / "data" / "train-00000-of-00001.parquet"
    Dataset.from_dict(columns, features=Features(features)).to_parquet(str(shard))
    return load_dataset(str(root), split="train")


def transformed_rows(dataset, transform, indices):
    rows = dataset.with_transform(transform)[indices]
    return torch.stack(rows["pixel_values"])


@pytest.fixture
def hub(tmp_path):
    return write_hub_dataset(tmp_path / "set")


# ------------------------------------------------------------------------------ batches
@pytest.mark.parametrize("image_size", [None, 16])
def test_gathered_batches_equal_image_transform(tmp_path, hub, image_size):
    transform = ImageTransform(image_size=image_size, channels=3, mean=MEAN, std=STD)
    data = DeviceImageSet.from_dataset(hub, transform, "cpu", cache_dir=str(tmp_path / "cache"), num_classes=4)
    indices = [5, 0, 39, 12, 12]
    batch = data.batch(torch.tensor(indices))
    assert torch.equal(batch["pixel_values"], transformed_rows(hub, transform, indices))  # bit for bit
    assert batch["pixel_values"].shape == (5, 3, image_size or 20, image_size or 20)
    assert torch.equal(batch["labels"], torch.tensor([i % 4 for i in indices]))
    assert torch.equal(batch["soft_labels"], torch.tensor(np.asarray(hub[indices]["soft_label"], dtype=np.float32)))
    assert data.pixel_values.dtype == torch.uint8 and data.nbytes == 40 * (3 * (image_size or 20) ** 2 + 8 + 16)


def test_validation_transform_matches_torchvision_resize_and_center_crop(tmp_path):
    from torchvision import transforms

    hub = write_hub_dataset(tmp_path / "val", n=3, size=80, soft=False, sizes={1: 70})
    transform = ResizeCenterCropTransform(image_size=64, channels=3, mean=MEAN, std=STD)
    assert transform.resize_size == 72 and ResizeCenterCropTransform(image_size=224).resize_size == 256
    reference = transforms.Compose(
        [transforms.Resize(72), transforms.CenterCrop(64), transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    )
    ours = transformed_rows(hub, transform, [0, 1, 2])
    expected = torch.stack([reference(hub[i]["image"].convert("RGB")) for i in range(3)])
    assert ours.shape == (3, 3, 64, 64)
    assert torch.allclose(ours, expected, atol=1e-5)
    # the device-resident evaluation split gives the same pixels
    data = DeviceImageSet.from_dataset(hub, transform, "cpu", cache_dir=str(tmp_path / "cache"))
    assert torch.equal(data.batch(torch.arange(3))["pixel_values"], ours)


# -------------------------------------------------------------------------------- cache
def test_decoded_once_then_read_from_the_fingerprint_cache(tmp_path, hub, monkeypatch):
    calls = []
    original = ImageTransform.decode
    monkeypatch.setattr(ImageTransform, "decode", lambda self, image: calls.append(1) or original(self, image))
    cache = str(tmp_path / "cache")
    transform = ImageTransform(channels=3, mean=MEAN, std=STD)
    first = decode_dataset(hub, transform, cache_dir=cache)
    path = decoded_cache_path(hub, transform, cache)
    assert len(calls) == 40 and os.path.isfile(path)
    assert not [f for f in os.listdir(cache) if f.endswith(".tmp")]  # the atomic write left no temp file
    mtime = os.path.getmtime(path)
    # a second load of the same files has the same fingerprint: no decoding, the file is read
    again = load_dataset(str(tmp_path / "set"), split="train")
    second = decode_dataset(again, ImageTransform(channels=3, mean=(0.0,), std=(1.0,)), cache_dir=cache)
    assert len(calls) == 40 and os.path.getmtime(path) == mtime
    assert all(torch.equal(first[k], second[k]) for k in first)
    # a different decode (another size) or other rows is another cache entry
    assert decoded_cache_path(hub, ImageTransform(image_size=16), cache) != path
    assert decoded_cache_path(hub.select(range(10)), transform, cache) != path
    decode_dataset(hub.select(range(10)), transform, cache_dir=cache)
    assert len(calls) == 50


def test_bad_rows_are_named(tmp_path):
    mixed_sizes = write_hub_dataset(tmp_path / "a", n=4, soft=False, sizes={2: 12})
    with pytest.raises(ValueError, match=r"row 2 decodes to 12×12×3 but row 0 to 20×20×3; set image_size"):
        decode_dataset(mixed_sizes, ImageTransform(), cache_dir=str(tmp_path / "c"))
    hub = write_hub_dataset(tmp_path / "b", n=8, classes=4)
    with pytest.raises(ValueError, match=r"column 'label': row 3 has label 3; expected a class id in \[0, 2\]"):
        decode_dataset(hub, ImageTransform(), cache_dir=str(tmp_path / "c"), num_classes=3)
    broken = Dataset.from_dict(
        {
            "pixel_values": np.zeros((3, 1, 2, 2), np.float32).tolist(),
            "label": [0, 1, 0],
            "soft_label": [[0.0, 1.0], [np.nan, 0.0], [1.0, 0.0]],
        }
    )
    with pytest.raises(ValueError, match=r"column 'soft_label', row 1: entry 0 is nan; expected finite values"):
        decode_dataset(broken, ImageTransform(channels=1), cache_dir=str(tmp_path / "c"), num_classes=2)


# ------------------------------------------------------------------------------ sampler
@pytest.mark.parametrize("n, drop_last", [(10, False), (11, False), (11, True)])
def test_two_rank_shards_are_disjoint_and_cover_the_set(n, drop_last):
    ranks = [DeviceBatchSampler(n, batch_size=2, seed=3, rank=r, world_size=2, drop_last=drop_last) for r in (0, 1)]
    for epoch in (0, 1):
        for sampler in ranks:
            sampler.set_epoch(epoch)
        shards = [torch.cat(list(sampler)).tolist() for sampler in ranks]
        assert len(shards[0]) == len(shards[1])  # every rank runs the same steps
        assert len(list(ranks[0])) == len(ranks[0])
        if n % 2 == 0:
            assert not set(shards[0]) & set(shards[1]) and sorted(shards[0] + shards[1]) == list(range(n))
        elif drop_last:
            # truncated to 5 rows per rank, then the last, smaller batch is dropped: 2 batches of 2
            assert not set(shards[0]) & set(shards[1]) and len(shards[0]) == len(shards[1]) == 4
        else:  # padded with the permutation's first row, as DistributedSampler
            assert set(shards[0]) | set(shards[1]) == set(range(n)) and len(shards[0] + shards[1]) == 12
    epoch0 = DeviceBatchSampler(n, 2, seed=3, rank=0, world_size=2, drop_last=drop_last)
    assert torch.cat(list(epoch0)).tolist() != shards[0]  # each epoch its own permutation


def test_sampler_state_round_trip_resumes_the_same_indices():
    reference = DeviceBatchSampler(10, batch_size=3, seed=7)
    stream = [b.tolist() for _ in range(3) for b in reference]  # three epochs of 4 batches
    sampler = DeviceBatchSampler(10, batch_size=3, seed=7)
    iterator = iter(sampler)
    seen = [next(iterator).tolist() for _ in range(2)]  # the first epoch's first two batches
    state = json.loads(json.dumps(sampler.state_dict()))
    assert state == {"epoch": 0, "position": 2, "seed": 7}
    resumed = DeviceBatchSampler(10, batch_size=3, seed=0)
    resumed.load_state_dict(state)
    resumed.set_epoch(0)  # a loop's set_epoch of the current epoch continues where it was
    rest = [b.tolist() for b in resumed] + [b.tolist() for _ in range(2) for b in resumed]
    assert seen + rest == stream
    with pytest.raises(KeyError, match="position"):
        resumed.load_state_dict({"epoch": 0, "seed": 0})
    with pytest.raises(ValueError, match="position 9"):
        resumed.load_state_dict({"epoch": 0, "position": 9, "seed": 0})


# ------------------------------------------------------------------------------ trainer
def test_trainer_resume_on_the_device_resident_set_is_exact(tmp_path, tiny_model):
    hub = write_hub_dataset(tmp_path / "set", n=24, size=8, classes=10, soft=False)
    transform = ImageTransform(channels=1, mean=(0.5,), std=(0.5,))
    seen = []

    def run(name, resume=None):
        torch.manual_seed(0)
        args = GIFTConfig(
            output_dir=str(tmp_path / name),
            use_cpu=True,
            per_device_train_batch_size=5,
            max_steps=8,
            save_strategy="steps",
            save_steps=3,
            logging_strategy="no",
            disable_tqdm=True,
            loss="ce",
            soft_label_source="none",
            learning_rate=1e-2,
            seed=0,
            report_to="none",
        )
        model = tiny_model()
        model.register_forward_hook(lambda m, a, k, o: seen.append((name, k["pixel_values"].clone())), with_kwargs=True)
        trainer = GIFTTrainer(model=model, args=args, train_dataset=hub.with_transform(transform))
        assert isinstance(trainer.get_train_dataloader(), DeviceDataLoader)  # the default (device_resident="auto")
        trainer.train(resume_from_checkpoint=resume)
        return {k: v.clone() for k, v in trainer.model.state_dict().items()}

    uninterrupted = run("a")  # 8 steps over 5 batches per epoch: crosses an epoch boundary
    resumed = run("b", resume=str(tmp_path / "a" / "checkpoint-6"))
    assert all(torch.equal(uninterrupted[k], resumed[k]) for k in uninterrupted)
    first = [x for name, x in seen if name == "a"]
    second = [x for name, x in seen if name == "b"]
    assert len(first) == 8 and len(second) == 2 and all(torch.equal(a, b) for a, b in zip(first[6:], second))
    assert first[0].shape == (5, 1, 8, 8) and first[4].shape == (4, 1, 8, 8)  # the epoch's last, smaller batch


# ----------------------------------------------------------------------------- choice
def test_fits_and_the_logged_choice(tmp_path, hub, caplog):
    assert fits_on_device(1, "cpu") and not fits_on_device(2**62, "cpu")
    with pytest.raises(ValueError, match="max_fraction"):
        fits_on_device(1, "cpu", max_fraction=0.0)
    transform = ImageTransform(channels=3, mean=MEAN, std=STD)
    with caplog.at_level(logging.INFO, logger="gift_hf.data.device"):
        data = device_resident(hub, transform, "cpu", cache_dir=str(tmp_path / "cache"))
        none = device_resident(hub, transform, "cpu", cache_dir=str(tmp_path / "cache"), max_fraction=1e-15)
    assert isinstance(data, DeviceImageSet) and none is None
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "device-resident: 40 images, 0.2 MiB on cpu (normalised once, float32)"
    # normalised once or per batch: the same batches, bit for bit
    per_batch = DeviceImageSet.from_dataset(hub, transform, "cpu", cache_dir=str(tmp_path / "cache"))
    assert per_batch.pixel_values.dtype == torch.uint8 and data.pixel_values.dtype == torch.float32
    rows = torch.tensor([3, 0, 39, 7])
    assert torch.equal(per_batch.batch(rows)["pixel_values"], data.batch(rows)["pixel_values"])
    assert lines[1].startswith("DataLoader path: workers=4, persistent (0.0 MiB of decoded images > 0% of the ")
    assert dataloader_kwargs("cuda", 4) == {
        "dataloader_num_workers": 4,
        "dataloader_pin_memory": True,
        "dataloader_persistent_workers": True,
    }
    assert dataloader_kwargs("cpu", 0)["dataloader_persistent_workers"] is False


def test_gathering_batches_reads_nothing_back_to_the_host(tmp_path, hub, monkeypatch):
    data = DeviceImageSet.from_dataset(
        hub, ImageTransform(channels=3, mean=MEAN, std=STD), "cpu", cache_dir=str(tmp_path / "cache"), num_classes=4
    )
    loader = DeviceDataLoader(data, DeviceBatchSampler(len(data), 8, seed=0, rank=1, world_size=2))
    counts = count_host_reads(monkeypatch)
    batches = list(loader) + list(loader)  # two epochs: the permutations, their shards and every gather
    assert len(batches) == 6 and sum(counts.values()) == 0, counts
