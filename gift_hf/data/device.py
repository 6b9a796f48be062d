"""Device-resident training sets: decode once, keep on the training device, gather batches there.

A distilled set is small (10–50 images per class) and is read hundreds of times: every epoch
of every student re-decodes each PNG through PIL in :class:`~gift_hf.data.images.ImageTransform`.
Here the images are decoded **once** into a uint8 ``(N, C, H, W)`` tensor (with the int64
labels and the float32 stored soft labels, when the dataset has them), cached on disk by the
dataset's fingerprint as ``datasets`` caches its own transforms, and moved to the training
device. A batch is then one ``index_select`` on that device, and the conversion to float
and the mean/std normalisation run there too, with the results of ``ImageTransform``
bit for bit (resizing happens once, at decode, with ``ImageTransform``'s own PIL resize).

- :func:`decode_dataset`: the decoded tensors (CPU), from the cache when it has them.
- :class:`DeviceImageSet`: those tensors on a device; ``batch(indices)`` → a training batch.
- :class:`DeviceBatchSampler`: per-rank batches of device index tensors, the shards of a
  seeded permutation per epoch (``DistributedSampler``'s scheme), with an exportable state.
- :class:`DeviceDataLoader`: the two as a ``torch.utils.data.DataLoader`` the Trainer can
  iterate, skip batches of on resume, and ``set_epoch``.
- :func:`fits_on_device`, :func:`device_resident` (the automatic choice, logged in one
  line) and :func:`dataloader_kwargs` (workers, pinned memory, persistent workers for the
  sets that do not fit).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from gift_hf.data.images import ImageTransform, densify_topk
from gift_hf.data.soft_labels import check_soft_labels
from gift_hf.files import write_output

__all__ = [
    "DeviceBatchSampler",
    "DeviceDataLoader",
    "DeviceImageSet",
    "dataloader_kwargs",
    "decode_dataset",
    "decoded_cache_path",
    "default_cache_dir",
    "device_resident",
    "estimate_nbytes",
    "fits_on_device",
]

CACHE_FORMAT_VERSION = 1
"""Bumped whenever the cached tensors change meaning, so old cache files are never read."""

Tensor = torch.Tensor
logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ decoding
def default_cache_dir() -> str:
    """``$HF_DATASETS_CACHE/gift_hf/decoded``: next to the ``datasets`` cache it mirrors."""
    from datasets import config

    return os.path.join(str(config.HF_DATASETS_CACHE), "gift_hf", "decoded")


def _decode_key(dataset: Dataset, transform: ImageTransform, label_column: str, soft_label_column: str) -> dict:
    fingerprint = getattr(dataset, "_fingerprint", None)
    if not fingerprint:
        raise ValueError("dataset has no fingerprint; expected a datasets.Dataset (load_dataset, from_dict, ...)")
    # mean/std are applied on the device, after the cache: they do not change the decoded bytes.
    fields = {k: v for k, v in dataclasses.asdict(transform).items() if k not in ("mean", "std")}
    return {
        "version": CACHE_FORMAT_VERSION,
        "fingerprint": fingerprint,
        "transform": f"{type(transform).__module__}.{type(transform).__qualname__}",
        "transform_fields": fields,
        "label_column": label_column,
        "soft_label_column": soft_label_column,
    }


def decoded_cache_path(
    dataset: Dataset,
    transform: ImageTransform,
    cache_dir: str | None = None,
    label_column: str = "label",
    soft_label_column: str = "soft_label",
) -> str:
    """Where :func:`decode_dataset` caches this dataset decoded by this transform."""
    key = _decode_key(dataset, transform, label_column, soft_label_column)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return os.path.join(cache_dir or default_cache_dir(), f"decoded-{digest}.safetensors")


def _decode_images(plain: Dataset, transform: ImageTransform, chunk_size: int) -> Tensor:
    """Every image of ``plain`` through ``transform.decode``, stacked as uint8 ``(N, C, H, W)``."""
    from datasets import Image as ImageFeature

    from gift_hf.data.images import open_image

    column, n = transform.image_column, len(plain)
    if isinstance(plain.features.get(column), ImageFeature):
        # our own decoding: a bad file (truncated, a decompression bomb) is named with its row
        plain = plain.cast_column(column, ImageFeature(decode=False))
    images: np.ndarray | None = None
    for start in range(0, n, chunk_size):
        for offset, image in enumerate(plain[start : start + chunk_size][column]):
            array = transform.decode(open_image(image, f"column {column!r}, row {start + offset}"))  # (H, W, C)
            if images is None:
                images = np.empty((n, array.shape[2], array.shape[0], array.shape[1]), dtype=np.uint8)
            if array.shape != (images.shape[2], images.shape[3], images.shape[1]):
                raise ValueError(
                    f"row {start + offset} decodes to {array.shape[0]}×{array.shape[1]}×{array.shape[2]} "
                    f"but row 0 to "
                    f"{images.shape[2]}×{images.shape[3]}×{images.shape[1]}; set image_size on the transform so that "
                    "every image is resized to one size"
                )
            images[start + offset] = array.transpose(2, 0, 1)
    return torch.from_numpy(images)


def _column(plain: Dataset, name: str) -> np.ndarray:
    return np.asarray(plain.with_format("numpy", columns=[name])[name])


def _validate(
    decoded: dict[str, Tensor],
    num_classes: int | None,
    label_column: str,
    soft_label_column: str,
    soft_label_kind: str | None = None,
    topk: bool = False,
) -> None:
    """Checks the stored labels once, at load, so that the training step never has to."""
    n = decoded["pixel_values"].shape[0]
    labels = decoded.get("labels")
    if labels is not None:
        if labels.shape != (n,):
            raise ValueError(
                f"column {label_column!r}: expected one class id per image, got shape {tuple(labels.shape)}"
            )
        if num_classes is not None and n:
            bad = ((labels < 0) | (labels >= num_classes)).nonzero().flatten()
            if bad.numel():
                row = int(bad[0])
                raise ValueError(
                    f"column {label_column!r}: row {row} has label {int(labels[row])}; "
                    f"expected a class id in [0, {num_classes - 1}]"
                )
    soft = decoded.get("soft_labels")
    if soft is not None:
        if soft.dim() != 2 or soft.shape[0] != n:  # the width is the shared check's
            width = f"{num_classes}" if num_classes is not None else "C"
            raise ValueError(f"column {soft_label_column!r}: got shape {tuple(soft.shape)}; expected ({n}, {width})")
        # the one check every reader runs; densified top-k rows keep their sum (the fill is 0)
        check_soft_labels(soft, soft_label_kind, num_classes=num_classes, column=soft_label_column, topk=topk)


def _read_decode_cache(path: str) -> dict[str, Tensor] | None:
    """The tensors of a decode-cache file, or None (after one warning) when it is truncated or
    corrupt: the caller decodes again and replaces it, instead of every later run failing."""
    try:
        return load_file(path)
    except Exception as err:  # safetensors raises its own SafetensorError (and OSError, ValueError …)
        logger.warning(
            "decode cache %s is unreadable (%s: %s); decoding the dataset again and rewriting it",
            path,
            type(err).__name__,
            str(err).splitlines()[0] if str(err) else "",
        )
        return None


def decode_dataset(
    dataset: Dataset,
    transform: ImageTransform,
    cache_dir: str | None = None,
    label_column: str = "label",
    soft_label_column: str = "soft_label",
    num_classes: int | None = None,
    chunk_size: int = 512,
    soft_label_kind: str | None = None,
) -> dict[str, Tensor]:
    """Decode ``dataset`` once with ``transform`` into CPU tensors, cached by fingerprint.

    Returns ``pixel_values`` (uint8 ``(N, C, H, W)`` from an image column; float32 as stored
    for a float ``pixel_values`` column, which ``ImageTransform`` passes through too),
    ``labels`` (int64, when ``label_column`` exists) and ``soft_labels`` (float32 ``(N, K)``,
    from a dense ``soft_label`` column or its top-k pair densified with zeros). The cache
    file (safetensors, written atomically) is keyed by the dataset's ``_fingerprint``, the
    transform's decoding fields and the column names; a second call reads it instead of
    decoding; a cache file whose stored key or row count is not this dataset's is decoded
    again and replaced, with one warning. Labels and soft labels are validated here, once
    (class ids in ``[0, num_classes)``; soft labels by
    :func:`~gift_hf.data.soft_labels.check_soft_labels` for ``soft_label_kind``). An in-memory
    dataset (no ``cache_files``) is decoded without a cache file.
    """
    path = decoded_cache_path(dataset, transform, cache_dir, label_column, soft_label_column)
    # As `datasets` caches: only sets backed by files; an in-memory set's fingerprint is often
    # random, and its cache file would never be read again.
    cached = bool(getattr(dataset, "cache_files", None))
    present = cached and os.path.isfile(path)
    decoded = _read_decode_cache(path) if present else None
    if decoded is not None:
        decoded = _trusted_cache(
            path, decoded, _decode_key(dataset, transform, label_column, soft_label_column), len(dataset)
        )
    if decoded is None:
        plain = dataset.with_format(None)  # drop any set_transform: decode from the stored columns
        columns = set(plain.column_names)
        if transform.image_column in columns:
            decoded = {"pixel_values": _decode_images(plain, transform, chunk_size)}
        elif "pixel_values" in columns:
            decoded = {"pixel_values": torch.from_numpy(_column(plain, "pixel_values").astype(np.float32))}
        else:
            raise KeyError(
                f"dataset has neither the image column {transform.image_column!r} nor 'pixel_values' "
                f"(columns: {sorted(columns)})"
            )
        if label_column in columns:
            decoded["labels"] = torch.from_numpy(_column(plain, label_column).astype(np.int64))
        topk_values, topk_indices = f"{soft_label_column}_topk_values", f"{soft_label_column}_topk_indices"
        if soft_label_column in columns:
            decoded["soft_labels"] = torch.from_numpy(_column(plain, soft_label_column).astype(np.float32))
        elif topk_values in columns and topk_indices in columns:
            if num_classes is None:
                raise ValueError(
                    f"num_classes is required to densify the top-k columns {topk_values!r}/{topk_indices!r}"
                )
            values = torch.from_numpy(_column(plain, topk_values).astype(np.float32))
            indices = torch.from_numpy(_column(plain, topk_indices).astype(np.int64))
            decoded["soft_labels"] = densify_topk(values, indices, num_classes)
        if cached:
            key = _decode_key(dataset, transform, label_column, soft_label_column)
            tensors = {k: v.contiguous().cpu() for k, v in decoded.items()}
            metadata = {"gift_hf_decoded": json.dumps(key, sort_keys=True)}
            # the owned writer: a full disk is one error naming the file and the bytes needed
            # an unreadable cache file at this key is replaced (its warning said so)
            write_output(
                path,
                lambda tmp: save_file(tensors, tmp, metadata=metadata),
                overwrite=present or None,
                size_hint=sum(t.numel() * t.element_size() for t in tensors.values()),
            )
    columns = dataset.column_names
    topk = soft_label_column not in columns and f"{soft_label_column}_topk_values" in columns
    _validate(decoded, num_classes, label_column, soft_label_column, soft_label_kind, topk)
    return decoded


def _trusted_cache(path: str, decoded: dict[str, Tensor], key: dict, num_rows: int) -> dict[str, Tensor] | None:
    """``decoded`` when ``path`` stores ``key`` and every tensor has ``num_rows`` rows; None (after
    one warning: the caller decodes again and replaces the file) otherwise."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        stored = (f.metadata() or {}).get("gift_hf_decoded")
    if stored != json.dumps(key, sort_keys=True):
        logger.warning(
            "decode cache %s was written for another dataset, transform or columns (its stored key "
            "differs); decoding the dataset again and rewriting it",
            path,
        )
        return None
    rows = {name: int(t.shape[0]) if t.dim() else 0 for name, t in decoded.items()}
    if "pixel_values" not in decoded or any(n != num_rows for n in rows.values()):
        logger.warning(
            "decode cache %s holds %s rows but the dataset has %d; decoding the dataset again and rewriting it",
            path,
            rows,
            num_rows,
        )
        return None
    return decoded


def estimate_nbytes(
    dataset: Dataset, transform: ImageTransform, soft_label_column: str = "soft_label", float_images: bool = False
) -> int:
    """Bytes the decoded set takes (images + labels + soft labels), from its first row only;
    ``float_images``: with the images normalised once into float32 (4 bytes per value)."""
    n = len(dataset)
    if n == 0:
        return 0
    plain = dataset.with_format(None)
    row = plain[0]
    if transform.image_column in row:
        image_bytes = transform.decode(row[transform.image_column]).size * (4 if float_images else 1)  # uint8
    elif "pixel_values" in row:
        image_bytes = np.asarray(row["pixel_values"], dtype=np.float32).nbytes
    else:
        raise KeyError(f"dataset has neither the image column {transform.image_column!r} nor 'pixel_values'")
    soft = row.get(soft_label_column)
    soft_bytes = 4 * len(soft) if soft is not None else 0
    return n * (image_bytes + 8 + soft_bytes)


# --------------------------------------------------------------------------- placement
def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def fits_on_device(num_bytes: int, device: str | torch.device, max_fraction: float = 0.5) -> bool:
    """Whether ``num_bytes`` fit in ``max_fraction`` of the memory now free on ``device``.

    CUDA: ``torch.cuda.mem_get_info``; MPS: the recommended working set minus what the
    driver holds; CPU: the available physical memory. The other half is left to the
    model, its optimizer state, the teacher and the activations.
    """
    if not 0 < max_fraction <= 1:
        raise ValueError(f"max_fraction: got {max_fraction}; expected a fraction in (0, 1]")
    return num_bytes <= max_fraction * _available_bytes(torch.device(device))


def dataloader_kwargs(device: str | torch.device, num_workers: int = 4) -> dict[str, Any]:
    """``TrainingArguments`` fields for the DataLoader path: workers, pinned memory, persistent workers."""
    device = torch.device(device)
    return {
        "dataloader_num_workers": num_workers,
        "dataloader_pin_memory": device.type == "cuda",
        "dataloader_persistent_workers": num_workers > 0,
    }


def _mib(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:,.1f} MiB"


# ------------------------------------------------------------------------ the dataset
class DeviceImageSet(torch.utils.data.Dataset):
    """Decoded images, labels and soft labels on one device; batches gathered there.

    Args:
        pixel_values: uint8 ``(N, C, H, W)`` (normalised on gather, or once here with
            ``normalize``) or float ``(N, C, H, W)`` (returned as stored).
        labels, soft_labels: ``(N,)`` class ids and ``(N, K)`` soft labels, or None.
        mean, std: per-channel normalisation of the uint8 images (1 or C values).
        device: where everything lives.
        normalize: normalise uint8 images once, into float32 (4× the memory, and a batch is
            then a bare gather), instead of per batch.
    """

    def __init__(
        self,
        pixel_values: Tensor,
        labels: Tensor | None = None,
        soft_labels: Tensor | None = None,
        mean: tuple[float, ...] | list[float] = (0.5,),
        std: tuple[float, ...] | list[float] = (0.5,),
        device: str | torch.device = "cpu",
        normalize: bool = False,
    ) -> None:
        if pixel_values.dim() != 4:
            raise ValueError(f"pixel_values: expected (N, C, H, W), got shape {tuple(pixel_values.shape)}")
        self.device = torch.device(device)
        self.pixel_values = pixel_values.to(self.device)
        self.labels = labels.to(self.device) if labels is not None else None
        self.soft_labels = soft_labels.to(self.device) if soft_labels is not None else None
        # Built exactly as ImageTransform builds them, so the normalised values are identical.
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1).to(self.device)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1).to(self.device)
        if normalize and self.pixel_values.dtype == torch.uint8:
            self.pixel_values = self._normalize(self.pixel_values)

    def _normalize(self, x: Tensor) -> Tensor:
        # ImageTransform's arithmetic, in place on the one new float tensor (bit for bit the same).
        return x.float().div_(255.0).sub_(self.mean).div_(self.std)

    @classmethod
    def from_dataset(
        cls,
        dataset: Dataset,
        transform: ImageTransform,
        device: str | torch.device,
        cache_dir: str | None = None,
        label_column: str = "label",
        soft_label_column: str = "soft_label",
        num_classes: int | None = None,
        normalize: bool = False,
        soft_label_kind: str | None = None,
    ) -> "DeviceImageSet":
        """:func:`decode_dataset` (cached) placed on ``device``, normalised like ``transform``."""
        decoded = decode_dataset(
            dataset, transform, cache_dir, label_column, soft_label_column, num_classes, soft_label_kind=soft_label_kind
        )
        return cls(
            decoded["pixel_values"],
            decoded.get("labels"),
            decoded.get("soft_labels"),
            transform.mean,
            transform.std,
            device,
            normalize,
        )

    def __len__(self) -> int:
        return self.pixel_values.shape[0]

    @property
    def nbytes(self) -> int:
        tensors = (self.pixel_values, self.labels, self.soft_labels)
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    def batch(self, indices: Tensor) -> dict[str, Tensor]:
        """The training batch of rows ``indices`` (a tensor on this set's device): ``(B,)`` for one
        student, ``(K, B)`` for K students (every tensor of the batch then leads with ``(K, B)``)."""
        lead, flat = indices.shape, indices.reshape(-1)
        x = self.pixel_values.index_select(0, flat)
        if x.dtype == torch.uint8:
            x = self._normalize(x)
        batch = {"pixel_values": x}
        if self.labels is not None:
            batch["labels"] = self.labels.index_select(0, flat)
        if self.soft_labels is not None:
            batch["soft_labels"] = self.soft_labels.index_select(0, flat)
        if len(lead) > 1:
            batch = {name: t.view(*lead, *t.shape[1:]) for name, t in batch.items()}
        return batch

    def __getitems__(self, indices: Tensor | list[int]) -> dict[str, Tensor]:
        # DataLoader hands a whole batch of indices here (auto-collation): one gather per batch.
        if not torch.is_tensor(indices):
            indices = torch.as_tensor(indices, dtype=torch.long)
        return self.batch(indices.to(self.device))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {k: v[0] for k, v in self.batch(torch.tensor([index], device=self.device)).items()}


# ------------------------------------------------------------------------ the sampler
class DeviceBatchSampler:
    """One rank's batches of row indices, as tensors on the set's device.

    Epoch ``e`` permutes the ``N`` rows with a generator on the device seeded ``seed + e``
    (the same permutation on every rank of one device type; ``shuffle=False`` keeps the
    order), then, as ``DistributedSampler``,
    pads the permutation with its own first rows to a multiple of ``world_size`` and gives
    rank ``r`` the positions ``r, r + world_size, …``. The shard is cut into batches of
    ``batch_size``; ``drop_last`` drops the last, smaller batch (and truncates instead of
    padding), so every rank runs the same number of batches of the same sizes.

    ``seed`` may be a list of K seeds (K students trained together): every batch is then a
    ``(K, B)`` tensor whose row ``k`` is the batch a sampler seeded ``seed[k]`` yields.

    The state is ``(epoch, position, seed)``: ``position`` counts the batches of the
    current epoch already yielded. :meth:`load_state_dict` then iterating resumes on the
    next batch; after the last batch the sampler moves to the next epoch by itself.
    :meth:`set_epoch` starts epoch ``e`` from its beginning, unless the sampler is already
    in epoch ``e`` (e.g. just restored), where it continues.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        shuffle: bool = True,
        seed: int | Sequence[int] = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        if not isinstance(seed, int) and not seed:
            raise ValueError("seed: got an empty list; expected a seed or one seed per student")
        if num_samples < 1:
            raise ValueError(f"num_samples: got {num_samples}; expected at least 1 row")
        if batch_size < 1:
            raise ValueError(f"batch_size: got {batch_size}; expected an integer >= 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank/world_size: got rank {rank} of {world_size}; expected 0 <= rank < world_size")
        if drop_last and num_samples // world_size < batch_size:
            raise ValueError(
                f"drop_last with {num_samples} rows over {world_size} rank(s) leaves no full batch of {batch_size}"
            )
        self.num_samples, self.batch_size, self.shuffle = num_samples, batch_size, shuffle
        self.seed = int(seed) if isinstance(seed, int) else [int(x) for x in seed]
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.device = torch.device(device)
        self._generator: torch.Generator | None = None
        self.epoch = 0
        self.position = 0

    @property
    def shard_size(self) -> int:
        """Rows per rank per epoch (padding included)."""
        if self.drop_last:
            return self.num_samples // self.world_size
        return math.ceil(self.num_samples / self.world_size)

    def __len__(self) -> int:
        if self.drop_last:
            return self.shard_size // self.batch_size
        return math.ceil(self.shard_size / self.batch_size)

    def indices(self, epoch: int) -> Tensor:
        """This rank's rows of ``epoch``, in order, on the device (``(K, rows)`` for K seeds)."""
        if isinstance(self.seed, list):
            return torch.stack([self._shard(seed, epoch) for seed in self.seed])
        return self._shard(self.seed, epoch)

    def _shard(self, seed: int, epoch: int) -> Tensor:
        # Made on the device: a blocking host-to-device copy of a CPU permutation would wait
        # for the queued GPU work, once per epoch — every step for a one-batch distilled set.
        if self.shuffle:
            if self._generator is None:
                self._generator = torch.Generator(device=self.device)
            self._generator.manual_seed(seed + epoch)
            order = torch.randperm(self.num_samples, generator=self._generator, device=self.device)
        else:
            order = torch.arange(self.num_samples, device=self.device)
        total = self.shard_size * self.world_size
        if total > self.num_samples:  # pad with the permutation's own first rows
            order = order.repeat(math.ceil(total / self.num_samples))
        shard = order[:total][self.rank :: self.world_size]
        if self.drop_last:
            shard = shard[: len(self) * self.batch_size]
        return shard

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.position = int(epoch), 0

    def __iter__(self) -> Iterator[Tensor]:
        shard, size = self.indices(self.epoch), self.batch_size
        for k in range(self.position, len(self)):
            self.position = k + 1
            yield shard[..., k * size : (k + 1) * size]
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position", "seed"}``: plain ints (JSON-serialisable)."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        missing = [k for k in ("epoch", "position", "seed") if k not in state]
        if missing:
            raise KeyError(
                f"sampler state lacks {missing} (got {sorted(state)}); expected DeviceBatchSampler.state_dict()"
            )
        if not 0 <= int(state["position"]) <= len(self):
            raise ValueError(
                f"sampler state position {state['position']} is outside [0, {len(self)}] batches per epoch"
            )
        seed = state["seed"]
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.seed = int(seed) if isinstance(seed, int) else [int(x) for x in seed]


def _as_batch(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return batch  # DeviceImageSet.__getitems__ already returns the collated batch


class DeviceDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`DeviceImageSet` driven by a :class:`DeviceBatchSampler`.

    In the main process (no workers, no pinning: the data are already on the device), one
    gather per batch. Being a ``DataLoader``, it works with ``Trainer``'s resume (which
    rebuilds it around a batch-skipping sampler) and ``len()``; ``set_epoch`` reaches the
    sampler.
    """

    def __init__(self, dataset: DeviceImageSet, batch_sampler: DeviceBatchSampler) -> None:
        if batch_sampler.num_samples != len(dataset):
            raise ValueError(f"batch_sampler covers {batch_sampler.num_samples} rows but the set has {len(dataset)}")
        super().__init__(dataset, batch_sampler=batch_sampler, collate_fn=_as_batch, num_workers=0, pin_memory=False)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        # Straight from the sampler to the gather: a DataLoader iterator would add its
        # per-batch fetch machinery and draw a worker base seed (a host read) every epoch,
        # which is every step for a one-batch distilled set.
        for indices in self.batch_sampler:
            yield self.dataset.batch(indices)

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)


# ----------------------------------------------------------------------- the choice
def device_resident(
    dataset: Dataset,
    transform: ImageTransform,
    device: str | torch.device,
    cache_dir: str | None = None,
    max_fraction: float = 0.5,
    num_workers: int = 4,
    label_column: str = "label",
    soft_label_column: str = "soft_label",
    num_classes: int | None = None,
    soft_label_kind: str | None = None,
) -> DeviceImageSet | None:
    """The set on ``device`` when it fits (:func:`fits_on_device`), else ``None``; the choice is logged in one line.

    The images are normalised once into float32 when that fits too (a batch is then a bare
    gather), else kept as uint8 and normalised per batch. ``None`` means: train through the
    DataLoader path, with :func:`dataloader_kwargs` (``num_workers`` workers, pinned memory,
    persistent workers).
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    needed = estimate_nbytes(dataset, transform, soft_label_column)
    if not fits_on_device(needed, device, max_fraction):
        kwargs = dataloader_kwargs(device, num_workers)
        logger.info(
            "DataLoader path: workers=%d%s%s (%s of decoded images > %.0f%% of the %s free on %s)",
            num_workers,
            ", pinned" if kwargs["dataloader_pin_memory"] else "",
            ", persistent" if kwargs["dataloader_persistent_workers"] else "",
            _mib(needed),
            100 * max_fraction,
            _mib(_available_bytes(device)),
            device,
        )
        return None
    normalize = fits_on_device(
        estimate_nbytes(dataset, transform, soft_label_column, float_images=True), device, max_fraction
    )
    data = DeviceImageSet.from_dataset(
        dataset,
        transform,
        device,
        cache_dir,
        label_column,
        soft_label_column,
        num_classes,
        normalize,
        soft_label_kind=soft_label_kind,
    )
    logger.info(
        "device-resident: %s images, %s on %s (%s)",
        f"{len(data):,}",
        _mib(data.nbytes),
        device,
        "normalised once, float32" if data.pixel_values.is_floating_point() else "uint8, normalised per batch",
    )
    return data
