#!/usr/bin/env python
"""Soft-label storage: bytes per sample by format, and the cost of reading a set from the Hub layout.

1. Bytes per sample of the soft labels of one image for C = 1000 classes: dense float32,
   dense float16, sparse top-k (k = 10, 50; float16 values + int16 indices, as
   ``gift_hf.data.relabel`` stores them) — the raw Arrow size and the size inside a parquet
   shard (snappy-compressed) of realistic labels, ``softmax(logits / T)``.
2. Time to load and iterate a 50,000-row distilled set (small 3×8×8 images so it runs in a
   couple of minutes on a laptop CPU; top-10 soft labels of C = 1000) from the Hub layout
   (``load_distilled`` from a local directory with a cold cache → ``ImageTransform`` →
   ``SoftLabelCollator`` batches, the path ``GIFTTrainer`` takes) against the same batches
   cut from in-memory tensors, in one run, with the ratio.

Run: ``python benchmarks/soft_label_storage.py [--rows 50000] [--batch_size 256]``.
"""

from __future__ import annotations

import argparse
import io
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features, Image

from gift_hf import DistilledInfo, ImageTransform, SoftLabelCollator, load_distilled, save_distilled
from gift_hf.data.distilled import quiet_datasets
from gift_hf.data.images import densify_topk
from gift_hf.data.relabel import add_soft_labels

NUM_CLASSES = 1000


def realistic_soft_labels(n: int, seed: int = 0, temperature: float = 4.0) -> torch.Tensor:
    """softmax(logits / T) of logits with one clear winner per row, like a trained teacher's."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, NUM_CLASSES, generator=generator) * 2
    logits[torch.arange(n), torch.randint(0, NUM_CLASSES, (n,), generator=generator)] += 12
    return torch.softmax(logits / temperature, dim=1)


def storage_table(n: int, tmp: Path) -> list[tuple[str, float, float]]:
    """(format, raw bytes/sample, parquet bytes/sample) of the soft-label columns alone."""
    soft = realistic_soft_labels(n)
    base = Dataset.from_dict(
        {"label": soft.argmax(1).tolist()}, features=Features({"label": ClassLabel(num_classes=NUM_CLASSES)})
    )
    rows = []
    for name, dtype, topk in (
        ("dense float32", "float32", None),
        ("dense float16", "float16", None),
        ("top-10 (fp16 + int16)", "float16", 10),
        ("top-50 (fp16 + int16)", "float16", 50),
    ):
        ds = add_soft_labels(base, soft, topk, dtype).remove_columns(["label"])
        raw = ds.data.nbytes / n
        path = tmp / f"{dtype}-{topk}.parquet"
        with quiet_datasets():
            ds.to_parquet(str(path))
        rows.append((name, raw, path.stat().st_size / n))
    return rows


def png(array: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def build_set(n: int, out: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Write the n-row set in the Hub layout; return the same data as tensors."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, size=n)
    soft = realistic_soft_labels(n, seed=1)
    ds = Dataset.from_dict(
        {"image": [{"bytes": png(p), "path": None} for p in pixels], "label": labels.tolist()},
        features=Features({"image": Image(), "label": ClassLabel(num_classes=NUM_CLASSES)}),
    )
    ds = add_soft_labels(ds, soft, 10, "float16")
    info = DistilledInfo(
        source_dataset="synthetic", method="benchmark", soft_label_kind="probabilities", temperature=4.0, topk=10
    )
    save_distilled(ds, out, info, check_images=False)
    values, indices = torch.topk(soft, 10, dim=1)
    images = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    return images, torch.from_numpy(labels), values.half().float(), indices


def iterate_hub(path: Path, cache: Path, batch_size: int) -> tuple[float, float, int]:
    start = time.perf_counter()
    ds, _ = load_distilled(path, cache_dir=str(cache))
    train = ds["train"]
    train.set_transform(ImageTransform(channels=3))
    loaded = time.perf_counter()
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, collate_fn=SoftLabelCollator(num_classes=1000))
    count = 0
    for batch in loader:
        count += batch["soft_labels"].shape[0]
    return loaded - start, time.perf_counter() - loaded, count


def iterate_hub_batched(path: Path, cache: Path, batch_size: int) -> tuple[float, int]:
    """Same data and batches, but read a slice at a time (one transform call per batch, not per row)."""
    ds, _ = load_distilled(path, cache_dir=str(cache))  # warm cache: already converted to Arrow
    train = ds["train"].with_transform(ImageTransform(channels=3))
    start = time.perf_counter()
    count = 0
    for i in range(0, len(train), batch_size):
        rows = train[i : i + batch_size]
        batch = {
            "pixel_values": torch.stack(rows["pixel_values"]),
            "labels": torch.tensor(rows["label"]),
            "soft_labels": densify_topk(
                torch.tensor(np.asarray(rows["soft_label_topk_values"], np.float32)),
                torch.tensor(np.asarray(rows["soft_label_topk_indices"], np.int64)),
                NUM_CLASSES,
            ),
        }
        count += batch["soft_labels"].shape[0]
    return time.perf_counter() - start, count


def iterate_memory(images, labels, values, indices, batch_size: int) -> tuple[float, int]:
    start = time.perf_counter()
    count = 0
    for i in range(0, len(images), batch_size):
        batch = {
            "pixel_values": images[i : i + batch_size],
            "labels": labels[i : i + batch_size],
            "soft_labels": densify_topk(values[i : i + batch_size], indices[i : i + batch_size], NUM_CLASSES),
        }
        count += batch["soft_labels"].shape[0]
    return time.perf_counter() - start, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000, help="rows of the distilled set to iterate")
    parser.add_argument("--storage_rows", type=int, default=2_000, help="rows used to measure parquet sizes")
    parser.add_argument("--batch_size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"gift_hf soft-label storage benchmark — {platform.processor() or platform.machine()}, "
        f"torch threads 1, C = {NUM_CLASSES}"
    )
    with tempfile.TemporaryDirectory(prefix="gift_hf_bench_") as tmp:
        tmp = Path(tmp)
        print(f"\n1) soft-label bytes per sample ({args.storage_rows} rows of softmax(logits / 4))")
        print(f"   {'format':<24}{'raw Arrow':>12}{'parquet':>12}{'vs dense fp32':>16}")
        rows = storage_table(args.storage_rows, tmp)
        dense = rows[0][2]
        for name, raw, on_disk in rows:
            print(f"   {name:<24}{raw:>12.0f}{on_disk:>12.0f}{dense / on_disk:>15.1f}×")

        print(
            f"\n2) load + iterate {args.rows:,} rows (3×8×8 PNG images, top-10 soft labels of C = {NUM_CLASSES}, "
            f"batch {args.batch_size})"
        )
        t0 = time.perf_counter()
        tensors = build_set(args.rows, tmp / "set")
        size = sum(p.stat().st_size for p in (tmp / "set").rglob("*") if p.is_file())
        print(
            f"   wrote the set in the Hub layout in {time.perf_counter() - t0:.1f} s: {size / 2**20:.1f} MiB, "
            f"{size / args.rows:.0f} bytes/row"
        )
        load_s, iter_s, n_hub = iterate_hub(tmp / "set", tmp / "cache", args.batch_size)
        batched_s, n_batched = iterate_hub_batched(tmp / "set", tmp / "cache", args.batch_size)
        mem_s, n_mem = iterate_memory(*tensors, args.batch_size)
        assert n_hub == n_batched == n_mem == args.rows
        hub_s = load_s + iter_s
        print(
            f"   Hub layout (load_distilled, cold cache): load {load_s:.2f} s + iterate {iter_s:.2f} s "
            f"= {hub_s:.2f} s ({args.rows / hub_s:,.0f} rows/s)"
        )
        print(
            f"   Hub layout, batched slices (warm cache):    iterate {batched_s:.2f} s "
            f"({args.rows / batched_s:,.0f} rows/s)"
        )
        print(f"   in-memory tensors (same batches):           {mem_s:.2f} s ({args.rows / mem_s:,.0f} rows/s)")
        print(
            f"   ratio Hub layout / in-memory: {hub_s / mem_s:.0f}× per-row DataLoader (iteration alone "
            f"{iter_s / mem_s:.0f}×), {batched_s / mem_s:.0f}× batched slices"
        )
        print(
            "   The Hub path decodes PNGs and collates Python rows every epoch, the in-memory one only slices "
            "tensors; distilled sets are small (IPC × C rows), and DataLoader workers "
            "(--dataloader_num_workers) overlap the decoding with training."
        )


if __name__ == "__main__":
    main()
