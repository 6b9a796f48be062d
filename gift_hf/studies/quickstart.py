"""The quickstart: does soft-label training beat hard labels on a tiny random subset?

On scikit-learn's bundled digits: train a ConvNet teacher on the full training split,
pick a random class-balanced IPC subset, train students on it with hard-label CE, KL and
GIFT (the teacher relabels every augmented batch online), evaluate each on the held-out
split, and report accuracy mean ± std over seeds as a table, ``results.json`` and a bar
chart. Runs in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from datasets import DatasetDict

from gift_hf.data.distilled import DistilledInfo
from gift_hf.data.images import DIGITS_MEAN, DIGITS_STD, class_balanced_indices, load_digits_dataset
from gift_hf.engine.config import GIFTConfig
from gift_hf.engine.losses import LOSSES
from gift_hf.engine.progress import job_progress, progress_line, quiet_saving
from gift_hf.engine.training import quiet_config, train_student, train_students
from gift_hf.files import check_outputs, write_output_text
from gift_hf.hub.model_card import ModelCardCallback
from gift_hf.models.modeling import create_model, image_transform_for
from gift_hf.studies.report import markdown_table, pyplot, save_figure, summarize

__all__ = ["QUICKSTART_DEFAULTS", "QuickstartArguments", "format_table", "plot_results", "run_quickstart"]

#: The quickstart's student training, on top of the GIFTConfig defaults (the GIFT protocol's
#: AdamW 1e-3 / 1e-4, MultiStepLR, no clipping): 100 epochs, batch 50 (the protocol's rule
#: for sets of at most 500 images), DSA without flips (mirrored digits are other symbols), 3
#: students per loss. ``gift-hf quickstart`` and ``recipes/quickstart.yaml`` use these.
QUICKSTART_DEFAULTS: dict[str, Any] = dict(
    output_dir="outputs/quickstart",
    num_train_epochs=100,
    per_device_train_batch_size=50,
    per_device_eval_batch_size=256,
    augmentation="color_crop_cutout_scale_rotate",
    num_students=3,
    seed=0,
)


@dataclass
class QuickstartArguments:
    """Options of ``gift-hf quickstart`` besides the students' :class:`~gift_hf.GIFTConfig`
    (``output_dir``, ``num_train_epochs``, ``per_device_train_batch_size``, ``learning_rate``,
    ``augmentation``, ``num_students``, ``seed`` …)."""

    ipc: int = field(default=10, metadata={"help": "Images per class in the random distilled subset."})
    losses: list[str] = field(
        default_factory=lambda: ["ce", "kl", "gift"],
        metadata={"help": f"Losses to compare, from {sorted(LOSSES)}."},
    )
    arch: str = field(default="gift_convnet_d3", metadata={"help": "timm architecture of teacher and students."})
    image_size: int = field(
        default=16,
        metadata={
            "help": "Digits are upsampled from 8×8 to this size: at 8×8 the "
            "ConvNet-D3's last instance norm sees a 2×2 map and its logits stay nearly flat."
        },
    )
    teacher_epochs: int = field(default=8, metadata={"help": "Teacher training epochs on the full training split."})
    teacher_batch_size: int = field(default=64, metadata={"help": "Teacher training batch size."})
    channels: int = field(
        default=1,
        metadata={
            "help": "Input channels of teacher and students: 1 (digits are grey) or 3 (the grey channel "
            "repeated), for students that pipeline('image-classification'), which feeds RGB, can use."
        },
    )
    save_students: bool = field(
        default=True,
        metadata={
            "help": "Save every student (weights, preprocessing in config.json, model card) to "
            "output_dir/students/<loss>/seed-<seed>."
        },
    )
    subset_seed: int = field(default=0, metadata={"help": "Seed of the random class-balanced subset."})

    def __post_init__(self) -> None:
        if self.ipc < 1:
            raise ValueError(f"ipc: got {self.ipc}; expected >= 1")
        if not self.losses:
            raise ValueError("losses: got none; expected loss names")
        unknown = [name for name in self.losses if name not in LOSSES]
        if unknown:
            raise ValueError(f"losses: got {unknown[0]!r}; expected names from {sorted(LOSSES)}")
        if self.teacher_epochs < 1:
            raise ValueError(f"teacher_epochs: got {self.teacher_epochs}; expected >= 1")
        if self.channels not in (1, 3):
            raise ValueError(f"channels: got {self.channels}; expected 1 or 3")


def format_table(summary: list[dict[str, Any]], teacher_accuracy: float | None, ipc: int) -> str:
    """A Markdown table of test accuracy (%) per loss (summary rows of :func:`~gift_hf.studies.report.summarize`)."""
    rows = [[row["loss"], f"{row['mean']:.2f} ± {row['std']:.2f} (n={row['n']})"] for row in summary]
    if teacher_accuracy is not None:
        rows.append(["teacher (full train split)", f"{teacher_accuracy:.2f}"])
    return markdown_table([f"loss (IPC={ipc})", "test accuracy (%)"], rows)


def plot_results(summary: list[dict[str, Any]], path: str, title: str, teacher_accuracy: float | None = None) -> str:
    """Bar chart of mean test accuracy (%) per loss with ± std error bars, saved as PNG."""
    plt = pyplot()
    names = [row["loss"] for row in summary]
    means = [row["mean"] for row in summary]
    stds = [row["std"] for row in summary]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names), 3.6))
    bars = ax.bar(names, means, yerr=stds, capsize=4, color=["#9e9e9e" if n == "ce" else "#3f7fbf" for n in names])
    for bar, mean, std in zip(bars, means, stds):
        ax.text(
            bar.get_x() + bar.get_width() / 2, mean + std + 0.3, f"{mean:.1f}", ha="center", va="bottom", fontsize=9
        )
    if teacher_accuracy is not None:
        ax.axhline(teacher_accuracy, ls="--", color="#c0392b", lw=1, label="teacher")
        ax.legend(loc="lower right")
    low = max(0.0, min(m - s for m, s in zip(means, stds)) - 10)
    ax.set_ylim(low, 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


def _quiet(config: GIFTConfig, output_dir: str, **changes: Any) -> GIFTConfig:
    """:func:`~gift_hf.engine.training.quiet_config`, keeping the user's ``report_to``; loading in this process."""
    return quiet_config(
        config,
        output_dir,
        report_to=config.report_to,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        **changes,
    )


def run_quickstart(
    args: QuickstartArguments | None = None, config: GIFTConfig | None = None, data: DatasetDict | None = None
) -> dict[str, Any]:
    """Run the quickstart and return its results (also written to ``config.output_dir``).

    Args:
        args: the quickstart's own options (default: ``QuickstartArguments()``).
        config: the students' training (default: ``GIFTConfig(**QUICKSTART_DEFAULTS)``); the
            teacher trains with it too, with hard-label CE, ``teacher_epochs`` and
            ``teacher_batch_size``.
        data: a ``DatasetDict`` with ``train`` and ``test`` (default: the embedded digits).

    Accuracies in the results are percentages.
    """
    args = args or QuickstartArguments()
    config = config or GIFTConfig(**QUICKSTART_DEFAULTS)
    start = time.time()
    out = config.output_dir
    os.makedirs(out, exist_ok=True)
    data = data if data is not None else load_digits_dataset()
    num_classes = data["train"].features["label"].num_classes

    def model() -> torch.nn.Module:
        return create_model(
            args.arch,
            num_classes,
            in_chans=args.channels,
            img_size=args.image_size,
            image_mean=DIGITS_MEAN * args.channels,
            image_std=DIGITS_STD * args.channels,
        )

    # The preprocessing is stated once, at create_model, and read back from the model.
    transform = image_transform_for(model())
    train, test = data["train"].with_transform(transform), data["test"].with_transform(transform)

    # One display for the whole job: the teacher counts as one student, then every loss × seed.
    seeds = config.seeds()
    with job_progress(1 + len(args.losses) * len(seeds), "quickstart"):
        # 1. the teacher, trained with hard labels on the whole training split
        progress_line(
            f"[1/3] training the teacher ({args.arch}) on {len(train)} images for {args.teacher_epochs} epochs"
        )
        teacher_config = _quiet(
            config,
            os.path.join(out, "teacher_run"),
            loss="ce",
            soft_label_source="none",
            num_train_epochs=args.teacher_epochs,
            per_device_train_batch_size=args.teacher_batch_size,
            batch_sizes=None,
        )
        teacher_run = train_student(teacher_config, model, train, test)
        teacher, teacher_accuracy = teacher_run.model, 100 * teacher_run.accuracy
        teacher_dir = os.path.join(out, "teacher")
        with quiet_saving():
            teacher.save_pretrained(teacher_dir)
        progress_line(f"      teacher test accuracy: {teacher_accuracy:.2f}% (saved to {teacher_dir})")

        # 2. the random class-balanced subset
        subset_idx = class_balanced_indices(data["train"]["label"], args.ipc, seed=args.subset_seed)
        subset = data["train"].select(subset_idx).with_transform(transform)
        subset_info = DistilledInfo(
            source_dataset="digits", method="random", ipc=args.ipc, seed=args.subset_seed, num_classes=num_classes
        )
        progress_line(
            f"[2/3] random class-balanced subset: IPC={args.ipc}, {len(subset)} images (seed {args.subset_seed})"
        )

        # 3. students: same subset, budget, optimiser and seeds for every loss; each loss's seeds train together
        progress_line(f"[3/3] students: {', '.join(args.losses)} × seeds {seeds}")
        records = []
        card = dict(
            dataset=f"digits, random IPC={args.ipc} subset (seed {args.subset_seed})",
            distilled_info=subset_info,
            teacher=teacher_dir,
            eval_dataset="digits",
            license=data["train"].info.license or None,
        )
        for name in args.losses:
            # students/<loss>/seed-<seed>/: train_students saves several students there; one, into its folder
            folder = os.path.join(out, "students", name, *([f"seed-{seeds[0]}"] if len(seeds) == 1 else []))
            student_config = _quiet(
                config,
                folder,
                loss=name,
                soft_label_source="teacher" if LOSSES[name].needs_teacher else "none",
                overwrite_output_dir=True,
            )
            results = train_students(
                student_config,
                model,
                subset,
                test,
                seeds=seeds,
                teacher=teacher,
                quiet=True,
                save=args.save_students,
                callbacks=[ModelCardCallback(**card)],
            )
            for seed, result in zip(seeds, results):
                records.append({"params": {"loss": name}, "seed": seed, "accuracy": result.accuracy})
                shown = f"{100 * result.accuracy:.2f}%" if result.accuracy is not None else "failed"
                progress_line(f"      {name:<8} seed {seed}: {shown}")

    summary = summarize(records, ["loss"])
    table = format_table(summary, teacher_accuracy, args.ipc)
    results = {
        "arguments": asdict(args),
        "config": config.training_settings(),
        "teacher_accuracy": teacher_accuracy,
        "subset_indices": subset_idx,
        "records": records,
        "summary": summary,
        "seconds": round(time.time() - start, 1),
    }
    check_outputs(*(os.path.join(out, f"results.{ext}") for ext in ("json", "md", "png")))
    write_output_text(os.path.join(out, "results.json"), json.dumps(results, indent=2))
    write_output_text(os.path.join(out, "results.md"), table + "\n")
    plot_results(
        summary, os.path.join(out, "results.png"), f"digits, random IPC={args.ipc}: students by loss", teacher_accuracy
    )
    print("\n" + table)
    print(f"\nresults: {out}/results.json, results.md, results.png ({results['seconds']} s)")
    return results
