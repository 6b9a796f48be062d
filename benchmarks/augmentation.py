"""Throughput of gift_hf's batched DSA pipeline against the same ops per image in a DataLoader.

Prints images/second for a batch of 256 images at 32×32 and 64×64 (3 channels):

- ``batched``: :class:`gift_hf.data.augment.BatchAugmenter` on the whole collated batch, as
  :class:`~gift_hf.GIFTTrainer` runs it inside the training step (``all``: every DSA op in
  turn; ``single``: one op drawn per batch, the reference evaluation's default);
- ``per-image``: the same six ops as torchvision ``transforms.v2`` applied image by image
  in a ``DataLoader`` (``num_workers=0``: both sides get the same cores; workers would
  speed up the per-image side by at most the number of spare cores).

Both sides run in one process, one after the other, so the ratio is measured under the
same load. Usage: ``python benchmarks/augmentation.py [--threads 1] [--batches 10]``.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from gift_hf.data.augment import DSA_OPS, BatchAugmenter, DSAParams


class DSAColor:
    """Per-image DSA colour (brightness, saturation, contrast on normalised values).

    Written out because torchvision's ColorJitter clamps to [0, 1] and scales contrast
    multiplicatively, unlike DSA; the formulas are those of BatchAugmenter._color.
    """

    def __init__(self, params: DSAParams) -> None:
        self.params = params

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        u = torch.rand(3)
        x = x + (u[0] - 0.5) * self.params.brightness
        mean = x.mean(dim=0, keepdim=True)
        x = (x - mean) * (u[1] * self.params.saturation) + mean
        mean = x.mean()
        return (x - mean) * (u[2] + self.params.contrast) + mean


def per_image_pipeline(size: int, params: DSAParams) -> v2.Compose:
    """The six DSA ops, one image at a time, with torchvision's closest equivalents."""
    shift = int(size * params.crop_pad + 0.5)
    box = params.cutout**2
    return v2.Compose(
        [
            DSAColor(params),
            v2.RandomCrop(size, padding=shift, fill=0),
            # torchvision's box stays inside the image (DSA's is clipped at the border).
            v2.RandomErasing(p=1.0, scale=(box, box), ratio=(1.0, 1.0), value=0),
            v2.RandomHorizontalFlip(p=params.flip),
            # torchvision scales isotropically (DSA per axis).
            v2.RandomAffine(degrees=0.0, scale=(1 / params.scale, params.scale)),
            v2.RandomRotation(params.rotate),
        ]
    )


class TransformedImages(Dataset):
    def __init__(self, images: torch.Tensor, transform) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.images[index])


def images_per_second(step, batch_size: int, batches: int, device: torch.device) -> float:
    step()  # warm-up: kornia builds its ops, allocators settle
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch_size * batches / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batches", type=int, default=10, help="timed batches per measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (shared CPUs: keep 1)")
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="where the batched pipeline runs (the per-image DataLoader always runs on CPU)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    params = DSAParams()
    print(
        f"# DSA augmentation throughput: batch {args.batch_size}, 3 channels, {args.batches} timed batches, "
        f"{args.threads} thread(s), {platform.processor() or platform.machine()}, batched on {device}"
    )
    print(f"{'size':>5} {'pipeline':<34} {'images/s':>10} {'vs per-image':>13}")
    for size in args.sizes:
        images = torch.randn(args.batch_size, 3, size, size)
        loader = DataLoader(
            TransformedImages(images, per_image_pipeline(size, params)), batch_size=args.batch_size, num_workers=0
        )

        def per_image() -> None:
            for batch in loader:
                batch.to(device)

        baseline = images_per_second(per_image, args.batch_size, args.batches, device)
        print(f"{size:>5} {'per-image torchvision DataLoader':<34} {baseline:>10.0f} {1.0:>12.2f}x")
        batch = images.to(device)
        labels = torch.arange(args.batch_size, device=device) % 10
        for mode, mix in (("all", "none"), ("single", "none"), ("all", "cutmix")):
            augmenter = BatchAugmenter(DSA_OPS, mode=mode, mix=mix, num_classes=10, seed=0)
            rate = images_per_second(lambda: augmenter(batch, labels), args.batch_size, args.batches, device)
            name = f"batched DSA {mode}" + (f" + {mix}" if mix != "none" else "")
            print(f"{size:>5} {name:<34} {rate:>10.0f} {rate / baseline:>12.2f}x")


if __name__ == "__main__":
    main()
