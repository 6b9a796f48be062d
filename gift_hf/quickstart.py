"""The quickstart: does soft-label training beat hard labels on a tiny random subset?

On scikit-learn's bundled digits: train a ConvNet teacher on the full training split,
pick a random class-balanced IPC subset, train students on it with hard-label CE, KL and
GIFT (the teacher relabels every augmented batch online), evaluate each on the held-out
split, and report accuracy mean ± std over seeds as a table, ``results.json`` and a bar
chart. Runs in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm
from transformers import set_seed
from transformers.trainer_callback import PrinterCallback

from .config import GIFTConfig
from .data import DIGITS_MEAN, DIGITS_STD, ImageTransform, class_balanced_indices, load_digits_dataset
from .metrics import build_compute_metrics
from .modeling import create_model
from .trainer import GIFTTrainer

__all__ = ["QuickstartArguments", "format_table", "plot_results", "run_quickstart", "summarize"]

logger = logging.getLogger(__name__)


@dataclass
class QuickstartArguments:
    """Options of ``gift-hf quickstart``."""

    output_dir: str = field(default="outputs/quickstart", metadata={"help": "Where results, plot and teacher go."})
    ipc: int = field(default=10, metadata={"help": "Images per class in the random distilled subset."})
    num_students: int = field(default=3, metadata={"help": "Students (seeds) per loss; accuracy is mean ± std."})
    losses: str = field(default="ce,kl,gift", metadata={"help": "Comma-separated losses to compare (see gift_hf.LOSSES)."})
    arch: str = field(default="gift_convnet_d3", metadata={"help": "timm architecture of teacher and students."})
    image_size: int = field(default=16, metadata={"help": "Digits are upsampled from 8×8 to this size: at 8×8 the "
                            "ConvNet-D3's last instance norm sees a 2×2 map and its logits stay nearly flat."})
    teacher_epochs: int = field(default=8, metadata={"help": "Teacher training epochs on the full training split."})
    student_epochs: int = field(default=100, metadata={"help": "Student training epochs on the IPC subset."})
    student_batch_size: int = field(default=50, metadata={"help": "Student batch size (the GIFT protocol's rule "
                                    "gives 50 for sets of at most 500 images)."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate (GIFT protocol: 1e-3)."})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay (GIFT protocol: 1e-4)."})
    augmentation: str = field(
        default="color_crop_cutout_scale_rotate",
        metadata={"help": "DSA batch augmentation of teacher and students (no flip: mirrored digits are other "
                  "symbols). The teacher relabels every augmented student batch."},
    )
    subset_seed: int = field(default=0, metadata={"help": "Seed of the random class-balanced subset."})
    seed: int = field(default=0, metadata={"help": "First student seed; student i uses seed + i."})

    def __post_init__(self) -> None:
        if self.ipc < 1:
            raise ValueError(f"ipc: got {self.ipc}; expected >= 1")
        if self.num_students < 1:
            raise ValueError(f"num_students: got {self.num_students}; expected >= 1")
        if not [name for name in self.losses.split(",") if name.strip()]:
            raise ValueError(f"losses: got {self.losses!r}; expected a comma-separated list of loss names")


def _config(output_dir: str, **kwargs: Any) -> GIFTConfig:
    base = dict(
        output_dir=output_dir,
        save_strategy="no",
        logging_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        optim="adamw_torch",
    )
    base.update(kwargs)
    return GIFTConfig(**base)


def summarize(runs: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """``{loss: [acc per seed]}`` → ``{loss: {"mean", "std", "n"}}`` (std with ddof=0 for n=1)."""
    return {
        name: {
            "mean": float(np.mean(accs)),
            "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
            "n": len(accs),
        }
        for name, accs in runs.items()
    }


def format_table(summary: dict[str, dict[str, float]], teacher_accuracy: float | None, ipc: int) -> str:
    """A Markdown table of test accuracy (%) per loss."""
    lines = [f"| loss (IPC={ipc}) | test accuracy (%) |", "|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {100 * s['mean']:.2f} ± {100 * s['std']:.2f} (n={s['n']}) |")
    if teacher_accuracy is not None:
        lines.append(f"| teacher (full train split) | {100 * teacher_accuracy:.2f} |")
    return "\n".join(lines)


def plot_results(summary: dict[str, dict[str, float]], path: str, title: str, teacher_accuracy: float | None = None) -> str:
    """Bar chart of mean test accuracy with ± std error bars, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    means = [100 * summary[n]["mean"] for n in names]
    stds = [100 * summary[n]["std"] for n in names]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names), 3.6))
    bars = ax.bar(names, means, yerr=stds, capsize=4, color=["#9e9e9e" if n == "ce" else "#3f7fbf" for n in names])
    for bar, mean, std in zip(bars, means, stds):
        ax.text(bar.get_x() + bar.get_width() / 2, mean + std + 0.3, f"{mean:.1f}", ha="center", va="bottom", fontsize=9)
    if teacher_accuracy is not None:
        ax.axhline(100 * teacher_accuracy, ls="--", color="#c0392b", lw=1, label="teacher")
        ax.legend(loc="lower right")
    low = max(0.0, min(m - s for m, s in zip(means, stds)) - 10)
    ax.set_ylim(low, 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def run_quickstart(args: QuickstartArguments, data: DatasetDict | None = None) -> dict[str, Any]:
    """Run the quickstart and return its results (also written to ``args.output_dir``)."""
    start = time.time()
    os.makedirs(args.output_dir, exist_ok=True)
    losses = [name.strip() for name in args.losses.split(",") if name.strip()]
    data = data if data is not None else load_digits_dataset()
    num_classes = data["train"].features["label"].num_classes
    transform = ImageTransform(image_size=args.image_size, channels=1, mean=DIGITS_MEAN, std=DIGITS_STD)
    train, test = data["train"].with_transform(transform), data["test"].with_transform(transform)
    compute_metrics = build_compute_metrics(num_classes)
    model_kwargs = dict(num_classes=num_classes, in_chans=1, img_size=args.image_size, image_mean=DIGITS_MEAN, image_std=DIGITS_STD)

    # 1. the teacher, trained with hard labels on the whole training split
    print(f"[1/3] training the teacher ({args.arch}) on {len(train)} images for {args.teacher_epochs} epochs")
    set_seed(args.seed)
    teacher = create_model(args.arch, **model_kwargs)
    teacher_args = _config(
        os.path.join(args.output_dir, "teacher_run"), loss="ce", soft_label_source="none",
        num_train_epochs=args.teacher_epochs, per_device_train_batch_size=64, per_device_eval_batch_size=256,
        learning_rate=args.learning_rate, weight_decay=args.weight_decay, seed=args.seed, disable_tqdm=False,
        augmentation=args.augmentation,
    )
    trainer = GIFTTrainer(model=teacher, args=teacher_args, train_dataset=train, eval_dataset=test,
                          compute_metrics=compute_metrics)
    trainer.train()
    teacher_accuracy = trainer.evaluate()["eval_accuracy"]
    teacher_dir = os.path.join(args.output_dir, "teacher")
    trainer.save_model(teacher_dir)
    print(f"      teacher test accuracy: {100 * teacher_accuracy:.2f}% (saved to {teacher_dir})")

    # 2. the random class-balanced subset
    subset_idx = class_balanced_indices(data["train"]["label"], args.ipc, seed=args.subset_seed)
    subset = data["train"].select(subset_idx).with_transform(transform)
    print(f"[2/3] random class-balanced subset: IPC={args.ipc}, {len(subset)} images (seed {args.subset_seed})")

    # 3. students: same subset, budget, optimiser and seeds for every loss
    runs: dict[str, list[float]] = {name: [] for name in losses}
    jobs = [(name, args.seed + i) for name in losses for i in range(args.num_students)]
    with tqdm(jobs, desc="[3/3] students", unit="student") as bar:
        for name, seed in bar:
            bar.set_postfix_str(f"{name} seed={seed}")
            set_seed(seed)  # the student's initialisation depends on its seed alone
            student = create_model(args.arch, **model_kwargs)
            student_args = _config(
                os.path.join(args.output_dir, "students", f"{name}-seed{seed}"), loss=name,
                soft_label_source="none" if name == "ce" else "teacher",
                num_train_epochs=args.student_epochs, per_device_train_batch_size=args.student_batch_size,
                per_device_eval_batch_size=256, learning_rate=args.learning_rate, weight_decay=args.weight_decay,
                augmentation=args.augmentation, seed=seed, data_seed=seed,
            )
            student_trainer = GIFTTrainer(
                model=student, args=student_args, teacher_model=None if name == "ce" else teacher,
                train_dataset=subset, eval_dataset=test, compute_metrics=compute_metrics,
            )
            student_trainer.remove_callback(PrinterCallback)  # one line per student instead
            student_trainer.train()
            accuracy = student_trainer.evaluate()["eval_accuracy"]
            runs[name].append(accuracy)
            tqdm.write(f"      {name:<8} seed {seed}: {100 * accuracy:.2f}%")

    summary = summarize(runs)
    table = format_table(summary, teacher_accuracy, args.ipc)
    results = {
        "arguments": asdict(args),
        "teacher_accuracy": teacher_accuracy,
        "subset_indices": subset_idx,
        "runs": runs,
        "summary": summary,
        "seconds": round(time.time() - start, 1),
    }
    _atomic_write(os.path.join(args.output_dir, "results.json"), json.dumps(results, indent=2))
    _atomic_write(os.path.join(args.output_dir, "results.md"), table + "\n")
    plot_results(summary, os.path.join(args.output_dir, "results.png"),
                 f"digits, random IPC={args.ipc}: students by loss", teacher_accuracy)
    print("\n" + table)
    print(f"\nresults: {args.output_dir}/results.json, results.md, results.png ({results['seconds']} s)")
    return results
