"""Wall time of K students trained together (one vmapped model) against one after another.

For K = 5 and K = 25 students that differ only in seed and learning rate (the DD-Ranking
grid), on one training set, prints the wall time of:

- ``together``: :func:`gift_hf.engine.multi_student.train_students` (``vectorized=True``): the K
  students' weights stacked and run under ``torch.func.vmap`` (or sliced per student,
  ``--forward loop``), their K augmentation draws applied in one call per op
  (:func:`gift_hf.data.augment.augment_stacked`), the teacher relabelling all K augmented
  batches in one forward;
- ``one by one``: the same call with ``vectorized=False``: the plain loop (one model,
  ``torch.optim``) per student, the way an evaluation trains them otherwise;

and the time per student of each, relative to one student trained alone (goal: with K = 25
together, ≤ 1/4 of one student alone). Both run in one process, one after the other, so
the ratios are measured under the same load.

Defaults are the GPU-like size: ConvNet-D3 of width 16 on 8×8 RGB images, 100 training
images (IPC 10), batch 10, 20 epochs (200 steps: the fixed cost of building a student
weighs as little as in a real evaluation of 300–1000 epochs), DSA augmentation and a
soft-label loss with an online teacher. Each time is the least of ``--repeats`` runs (the
least disturbed on a shared machine). Usage::

    python benchmarks/multi_student.py [--threads 1] [--epochs 20] [--size 8] [--width 16] [--ks 5 25]
    python benchmarks/multi_student.py --size 32 --batch_size 50 --epochs 2 --forward loop   # CIFAR size
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from gift_hf import create_model
from gift_hf.engine.multi_student import StudentTrainingArgs, train_students

LEARNING_RATES = (0.001, 0.005, 0.01, 0.05, 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 25], help="numbers of students")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--size", type=int, default=8, help="image height and width")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--width", type=int, default=16, help="ConvNet-D3 width")
    parser.add_argument("--images", type=int, default=100, help="training images (10 classes)")
    parser.add_argument("--batch_size", type=int, default=10)
    parser.add_argument("--augmentation", default="color_crop_cutout_flip_scale_rotate")
    parser.add_argument("--loss", default="soft_ce", help="a soft-label loss uses an online teacher")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--forward", choices=["vmap", "loop"], default=None,
                        help="how students trained together run their model (default: train_students' choice)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per time; the least is reported")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.images, args.channels, args.size, args.size, generator=gen)
    labels = torch.arange(args.images) % 10
    eval_images = torch.randn(200, args.channels, args.size, args.size, generator=gen)
    eval_labels = torch.arange(200) % 10
    kwargs = {"width": args.width}
    torch.manual_seed(0)
    teacher = create_model("gift_convnet_d3", 10, in_chans=args.channels, img_size=args.size, **kwargs).eval()
    recipe = StudentTrainingArgs(loss=args.loss, optimizer="sgd", epochs=args.epochs, batch_size=args.batch_size,
                                 augmentation=args.augmentation, eval_every=args.epochs)

    def timed(k: int, vectorized: bool) -> float:
        seeds = [i // len(LEARNING_RATES) for i in range(k)]
        lrs = [LEARNING_RATES[i % len(LEARNING_RATES)] for i in range(k)]
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        train_students("gift_convnet_d3", kwargs, images, labels, eval_images, eval_labels, seeds=seeds,
                       learning_rates=lrs, args=recipe, num_classes=10,
                       teacher=teacher if recipe.loss != "ce" else None, device=args.device, vectorized=vectorized,
                       forward=args.forward if vectorized else None)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    timed(1, True)  # warm-up (kernels, allocator, kornia modules)
    timed(1, False)
    alone = min(timed(1, False) for _ in range(args.repeats))
    steps = args.epochs * -(-args.images // args.batch_size)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, device {args.device}")
    print(f"ConvNet-D3 width {args.width}, {args.channels}×{args.size}×{args.size}, {args.images} images, batch "
          f"{args.batch_size}, {steps} steps per student, augmentation {args.augmentation!r}, loss {args.loss!r}")
    print(f"one student alone: {alone:.3f} s (least of {args.repeats}); forward {args.forward or 'default'}")
    print("| K | one by one (s) | together (s) | speed-up | per student, together / alone |")
    print("|---|---|---|---|---|")
    for k in args.ks:
        one_by_one = min(timed(k, False) for _ in range(max(1, args.repeats // 2)))
        together = min(timed(k, True) for _ in range(args.repeats))
        print(f"| {k} | {one_by_one:.3f} | {together:.3f} | {one_by_one / together:.2f}× | "
              f"{together / k / alone:.3f} |")


if __name__ == "__main__":
    main()
