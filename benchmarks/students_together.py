"""Wall time of K students trained together by one GIFTTrainer against one student alone, per protocol.

For K students that differ in seed and learning rate (the DD-Ranking grid), on one training
set, :func:`gift_hf.engine.training.train_students` trains them as one
:class:`~gift_hf.engine.population.StudentPopulation` with the Trainer's own loop, optimizer,
scheduler and precision (their K augmentation draws applied in one call per op, the teacher
relabelling all K batches in one forward). Printed per protocol (``gift``, ``rded``, and
``gift`` in bf16): the time of one student alone, of K together, and the time per student
together relative to one alone (goal: ≤ 0.25 at K = 25); then, per protocol, the largest
logit difference between 3 students trained together and their 3 separate runs. Everything runs in one process, one
after the other, so the ratios are measured under the same load; each time is the least of
``--repeats`` runs.

Defaults are the GPU-like size: ConvNet-D3 of width 16 on 8×8 RGB images, 100 training
images (IPC 10), batch 10, 20 epochs (200 steps), the protocols' own augmentation, loss and
online teacher. Usage::

    python benchmarks/students_together.py [--threads 1] [--epochs 20] [--ks 5 25] [--protocols gift rded gift-bf16]
    python benchmarks/students_together.py --size 32 --batch_size 50 --epochs 2   # CIFAR size
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import torch

LEARNING_RATES = (0.001, 0.005, 0.01, 0.05, 0.1)


def images(n: int, size: int, channels: int, seed: int):
    """A real ``datasets.Dataset`` of ``n`` random images (10 classes), in the Hub's image feature."""
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    mode = "RGB" if channels == 3 else "L"
    shape = (size, size, 3) if channels == 3 else (size, size)
    rows = {
        "image": [PILImage.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode) for _ in range(n)],
        "label": [i % 10 for i in range(n)],
    }
    return Dataset.from_dict(rows, features=Features({"image": Image(), "label": ClassLabel(num_classes=10)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 25], help="numbers of students")
    parser.add_argument(
        "--protocols",
        nargs="+",
        default=["gift", "rded", "gift-bf16"],
        help="protocol presets; '-bf16' trains in bfloat16",
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--size", type=int, default=8, help="image height and width")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--width", type=int, default=16, help="ConvNet-D3 width")
    parser.add_argument("--images", type=int, default=100, help="training images (10 classes)")
    parser.add_argument("--batch_size", type=int, default=10)
    parser.add_argument(
        "--forward",
        choices=["auto", "vmap", "loop"],
        default="auto",
        help="how students trained together run their model",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per time; the least is reported")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from transformers.utils import logging as hf_logging

    from gift_hf import create_model, protocol_config
    from gift_hf.engine.training import train_students
    from gift_hf.models.modeling import image_transform_for

    hf_logging.set_verbosity_error()
    cuda = torch.cuda.is_available()
    mean, std = (0.5,) * args.channels, (0.25,) * args.channels

    def build() -> torch.nn.Module:
        return create_model(
            "gift_convnet_d3",
            10,
            in_chans=args.channels,
            img_size=args.size,
            width=args.width,
            image_mean=mean,
            image_std=std,
        )

    torch.manual_seed(0)
    teacher = build().eval()
    transform = image_transform_for(teacher)
    train = images(args.images, args.size, args.channels, 0).with_transform(transform)
    test = images(200, args.size, args.channels, 1).with_transform(transform)

    def config_of(protocol: str, tmp: str):
        name, _, precision = protocol.partition("-")
        return protocol_config(
            name,
            output_dir=tmp,
            num_train_epochs=args.epochs,
            batch_sizes=None,
            per_device_train_batch_size=args.batch_size,
            best_of=1,
            eval_every_epochs=0,
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=not cuda,
            bf16=precision == "bf16",
        )

    def timed(protocol: str, k: int) -> float:
        seeds = [i // len(LEARNING_RATES) for i in range(k)]
        rates = [LEARNING_RATES[i % len(LEARNING_RATES)] for i in range(k)] if k > 1 else None
        with tempfile.TemporaryDirectory() as tmp:
            config = config_of(protocol, tmp)
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            train_students(
                config,
                build,
                train,
                test,
                seeds=seeds,
                learning_rates=rates,
                teacher=teacher,
                forward=args.forward,
                quiet=True,
            )
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter() - start

    def largest_difference(protocol: str) -> float:
        """max |logit difference| on the test images: 3 students together against their 3 separate runs."""
        with tempfile.TemporaryDirectory() as tmp:
            config = config_of(protocol, tmp)
            together = train_students(
                config, build, train, test, seeds=[0, 1, 2], teacher=teacher, forward=args.forward, quiet=True
            )
            worst = 0.0
            for result in together:
                own = config.replace(seed=result.seed, data_seed=result.seed)
                alone = train_students(own, build, train, test, teacher=teacher, quiet=True)[0]
                device = next(result.model.parameters()).device
                images = torch.stack(test[:200]["pixel_values"]).to(device)
                with torch.no_grad():
                    a = result.model.eval()(pixel_values=images).logits.float()
                    b = alone.model.eval()(pixel_values=images).logits.float()
                worst = max(worst, (a - b).abs().max().item())
            return worst

    steps = args.epochs * -(-args.images // args.batch_size)
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}, device {'cuda' if cuda else 'cpu'}"
    )
    print(
        f"ConvNet-D3 width {args.width}, {args.channels}×{args.size}×{args.size}, {args.images} images, batch "
        f"{args.batch_size}, {steps} steps per student, forward {args.forward}; least of {args.repeats} runs"
    )
    print("| protocol | K | one alone (s) | K together (s) | per student, together / alone |")
    print("|---|---|---|---|---|")
    for protocol in args.protocols:
        timed(protocol, 1)  # warm-up (kernels, allocator, the decode cache)
        alone = min(timed(protocol, 1) for _ in range(args.repeats))
        for k in args.ks:
            together = min(timed(protocol, k) for _ in range(args.repeats))
            print(f"| {protocol} | {k} | {alone:.3f} | {together:.3f} | {together / k / alone:.3f} |", flush=True)
    print()
    print("| protocol | K = 3 together vs 3 separate runs: max abs logit difference |")
    print("|---|---|")
    for protocol in args.protocols:
        print(f"| {protocol} | {largest_difference(protocol):.2e} |", flush=True)


if __name__ == "__main__":
    main()
