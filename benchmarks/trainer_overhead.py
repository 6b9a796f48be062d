"""What a GIFTTrainer training step costs, measured in one run.

Five configurations train the same student (same initial weights, batches, teacher and
AdamW optimizer; constant learning rate, no gradient clipping, no augmentation) for
``--warmup + --steps`` optimizer steps:

- ``trainer/gift/online``: :class:`gift_hf.GIFTTrainer`, GIFT loss, teacher run on every batch;
- ``trainer/kl/online``: the same with KL (T = 20) — GIFT's "near-zero extra cost" claim;
- ``trainer/gift/stored``: GIFT on soft labels stored in the dataset (no teacher forward);
- ``loop/gift/online``: a minimal hand-written PyTorch loop doing the same work (the same
  DataLoader and collator, teacher forward under ``no_grad``, loss, backward, AdamW step);
- ``loop/gift/stored``: the hand-written loop on stored soft labels.

Each configuration runs in its own fresh process, one after the other, so that its peak
memory is its own: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the growth of the
process's resident set during training (sampled every 2 ms: peak − start). Step time is
the median wall time between consecutive optimizer steps after the warm-up (data loading
included). Printed: a table and the ratios gift/kl, Trainer/loop and online/stored.

Usage::

    python benchmarks/trainer_overhead.py                      # CPU defaults: batch 64, 32×32×3, 20 steps
    python benchmarks/trainer_overhead.py --device cuda        # batch 256, 100 steps
    python benchmarks/trainer_overhead.py --output_dir outputs/benchmarks   # also JSON + Markdown
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

CONFIGS = ("trainer/gift/online", "trainer/kl/online", "trainer/gift/stored", "loop/gift/online", "loop/gift/stored")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch_size", type=int, default=None, help="default: 64 on CPU, 256 on CUDA")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 on CPU, 100 on CUDA)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed first steps")
    parser.add_argument("--arch", default="gift_convnet_d3")
    parser.add_argument("--img_size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--num_classes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run the five configurations this many times, interleaved; report the median run",
    )
    parser.add_argument("--output_dir", default=None, help="write trainer_overhead.json and .md here")
    parser.add_argument("--config", default=None, choices=CONFIGS, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--result_file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.batch_size = args.batch_size or (256 if args.device == "cuda" else 64)
    args.steps = args.steps or (100 if args.device == "cuda" else 20)
    return args


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ---------------------------------------------------------------------------- one config
def _setup(args):
    import numpy as np
    import torch
    from datasets import ClassLabel, Dataset, Features, List, Value

    from gift_hf import create_model
    from gift_hf.models.modeling import teacher_logits

    torch.manual_seed(0)
    device = torch.device(args.device)
    n = args.batch_size * (args.steps + args.warmup)
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((n, args.channels, args.img_size, args.img_size), dtype=np.float32)
    labels = rng.integers(0, args.num_classes, n)

    def model():
        return create_model(args.arch, args.num_classes, in_chans=args.channels, img_size=args.img_size)

    teacher = model().to(device).eval().requires_grad_(False)
    with torch.no_grad():
        soft = torch.cat(
            [teacher_logits(teacher, torch.from_numpy(pixels[i : i + 512]).to(device)).cpu() for i in range(0, n, 512)]
        ).numpy()
    features = Features(
        {
            "pixel_values": List(List(List(Value("float32")))),
            "label": ClassLabel(num_classes=args.num_classes),
            "soft_label": List(Value("float32"), length=args.num_classes),
        }
    )
    data = Dataset.from_dict({"pixel_values": pixels, "label": labels, "soft_label": soft}, features=features)
    data = data.with_format("numpy")
    torch.manual_seed(1)
    student = model()
    return device, data, teacher, student


def _trainer_run(args, data, teacher, student, loss: str, source: str) -> list[float]:
    import torch
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    from gift_hf import GIFTConfig, GIFTTrainer

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            if args.device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        config = GIFTConfig(
            output_dir=tmp,
            loss=loss,
            soft_label_source=source,
            max_steps=args.steps + args.warmup,
            per_device_train_batch_size=args.batch_size,
            learning_rate=1e-3,
            weight_decay=0.0,
            lr_scheduler_type="constant",
            max_grad_norm=0.0,
            optim="adamw_torch",
            logging_strategy="no",
            save_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            use_cpu=args.device == "cpu",
            seed=0,
        )
        trainer = GIFTTrainer(
            model=student,
            args=config,
            teacher_model=teacher if source == "teacher" else None,
            train_dataset=data,
            callbacks=[Clock()],
        )
        trainer.remove_callback(PrinterCallback)
        times.append(time.perf_counter())
        trainer.train()
    return times


def _loop_run(args, device, data, teacher, student, source: str) -> list[float]:
    import torch
    from torch.utils.data import DataLoader

    from gift_hf import get_loss
    from gift_hf.data.images import SoftLabelCollator
    from gift_hf.models.modeling import teacher_logits

    loss_fn = get_loss("gift")
    student = student.to(device).train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3, weight_decay=0.0)
    loader = DataLoader(
        data,
        batch_size=args.batch_size,
        shuffle=True,
        collate_fn=SoftLabelCollator(),
        generator=torch.Generator().manual_seed(0),
    )
    times = [time.perf_counter()]
    for step, batch in enumerate(loader):
        if step == args.steps + args.warmup:
            break
        pixel_values = batch["pixel_values"].to(device)
        labels = batch["labels"].to(device)
        if source == "teacher":
            with torch.no_grad():
                targets = teacher_logits(teacher, pixel_values)
        else:
            targets = batch["soft_labels"].to(device)
        loss = loss_fn(student(pixel_values=pixel_values).logits, targets, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if args.device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())
    return times


class PeakRSS:
    """Peak resident set size while the block runs, sampled every 2 ms (Linux).

    ``ru_maxrss`` cannot be used: its high-water mark is usually set while the data are
    built, before training starts.
    """

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self._stop = threading.Event()

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        self.start = self.peak = self.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def run_config(args) -> dict:
    import gc

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device, data, teacher, student = _setup(args)
    kind, loss, source = args.config.split("/")
    source = "teacher" if source == "online" else "dataset"
    gc.collect()
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    with PeakRSS() as rss:
        if kind == "trainer":
            times = _trainer_run(args, data, teacher, student, loss, source)
        else:
            times = _loop_run(args, device, data, teacher, student, source)
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = rss.peak - rss.start
    steps = [b - a for a, b in zip(times, times[1:])][args.warmup :]
    if len(steps) != args.steps:
        raise RuntimeError(f"{args.config}: timed {len(steps)} steps, expected {args.steps}")
    return {
        "config": args.config,
        "median_step_ms": 1000 * statistics.median(steps),
        "mean_step_ms": 1000 * statistics.fmean(steps),
        "peak_memory_mb": peak / 2**20,
        "steps": len(steps),
    }


# ---------------------------------------------------------------------------- the run
def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.config:  # child: one configuration
        result = run_config(args)
        with open(args.result_file, "w") as f:
            json.dump(result, f)
        return result

    passthrough = list(argv if argv is not None else sys.argv[1:])
    for option in ("--output_dir", "--repeats"):
        if option in passthrough:
            i = passthrough.index(option)
            del passthrough[i : i + 2]
    runs: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    for repeat in range(args.repeats):
        # interleaved, so that a change in machine load hits every configuration alike
        for config in CONFIGS:
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                cmd = [
                    sys.executable,
                    os.path.abspath(__file__),
                    *passthrough,
                    "--config",
                    config,
                    "--result_file",
                    out.name,
                ]
                subprocess.run(cmd, check=True)
                with open(out.name) as f:
                    runs[config].append(json.load(f))
            print(
                f"  run {repeat + 1}/{args.repeats} {config:<22} {runs[config][-1]['median_step_ms']:9.1f} ms/step",
                flush=True,
            )
    results = {}
    for config, rs in runs.items():
        median_run = sorted(rs, key=lambda r: r["median_step_ms"])[len(rs) // 2]
        results[config] = dict(median_run, runs=len(rs))

    def ratio(a, b, key="median_step_ms"):
        return results[a][key] / results[b][key] if results[b][key] else float("nan")

    ratios = {
        "gift / kl step time (Trainer, online)": ratio("trainer/gift/online", "trainer/kl/online"),
        "Trainer / loop step time (online)": ratio("trainer/gift/online", "loop/gift/online"),
        "Trainer / loop step time (stored)": ratio("trainer/gift/stored", "loop/gift/stored"),
        "online / stored step time (Trainer)": ratio("trainer/gift/online", "trainer/gift/stored"),
        "online / stored step time (loop)": ratio("loop/gift/online", "loop/gift/stored"),
        "gift / kl peak memory (Trainer, online)": ratio("trainer/gift/online", "trainer/kl/online", "peak_memory_mb"),
        "Trainer / loop peak memory (online)": ratio("trainer/gift/online", "loop/gift/online", "peak_memory_mb"),
        "online / stored peak memory (Trainer)": ratio("trainer/gift/online", "trainer/gift/stored", "peak_memory_mb"),
    }
    memory = "peak CUDA memory allocated" if args.device == "cuda" else "peak RSS growth while training"
    setting = (
        f"{args.arch}, {args.channels}×{args.img_size}×{args.img_size} inputs, {args.num_classes} classes, "
        f"batch {args.batch_size}, {args.steps} timed steps after {args.warmup} warm-up, device {args.device}"
        f" ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs), torch threads "
        f"{args.threads or 'default'}, median of {args.repeats} interleaved run(s)"
    )
    lines = [
        f"Setting: {setting}.",
        "",
        f"| configuration | median step (ms) | mean step (ms) | {memory} (MiB) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {c} | {r['median_step_ms']:.1f} | {r['mean_step_ms']:.1f} | {r['peak_memory_mb']:.1f} |"
        for c, r in results.items()
    ]
    lines += ["", "| ratio | value |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in ratios.items()]
    report = "\n".join(lines)
    print()
    print(report)
    payload = {"setting": setting, "results": results, "ratios": ratios}
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, "trainer_overhead.json"), "w") as f:
            json.dump(payload, f, indent=1)
        with open(os.path.join(args.output_dir, "trainer_overhead.md"), "w") as f:
            f.write(report + "\n")
    return payload


if __name__ == "__main__":
    main()
