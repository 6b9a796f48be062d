"""``make results``: regenerate every table and plot of the results pages in one run.

On the embedded digit pairs (:func:`gift_hf.data.images.load_digit_pairs_dataset`, 100
classes, harder than digits): a teacher, random and RDED-distilled sets at each IPC, and
the loss benchmark (:func:`gift_hf.studies.loss_benchmark.run_loss_benchmark`) on each set
under AdamW (the ``gift`` protocol) and SGD (momentum 0.9, learning rate 0.01). The tables
and plots go into the pages' generated blocks, between ``<!-- results:begin NAME -->`` and
``<!-- results:end NAME -->``; text outside the blocks is left as written. Each page gets a
provenance block: the commit, the package versions, the size and the protocol (a
:data:`gift_hf.engine.config.PROTOCOLS` entry, the overrides and the resulting
``training_settings()``), which :func:`stale_protocol_fields` compares with the presets.
Every study is resumable: a run that stops is finished by running it again.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import asdict, dataclass
from typing import Any, Optional

from gift_hf.files import atomic_write, atomic_write_text, write_output_text

__all__ = [
    "PAGES",
    "SIZES",
    "ResultsSize",
    "page_provenance",
    "replace_block",
    "run_results",
    "stale_protocol_fields",
]

#: The pages ``make results`` writes (under ``docs/``).
PAGES = ("results.md", "when-gift-helps.md")
#: The student protocol every generated table uses (the SGD columns change only the optimizer).
PROTOCOL = "gift"
#: DSA without ``flip``: mirrored digits are other symbols.
DIGITS_DSA = "color_crop_cutout_scale_rotate"
#: Losses trained on every set; ``ce`` (hard labels) only on the random subsets.
LOSSES = ("kl", "soft_ce", "gift")
OPTIMIZERS = ("adamw", "sgd")
SOURCES = ("random", "rded")
#: Accuracy (%) below which a student counts as not trained in the verdicts (chance is 1%).
UNTRAINED = 20.0


@dataclass(frozen=True)
class ResultsSize:
    """How big one ``make results`` run is."""

    train_per_class: int  # digit pairs per class (the data)
    test_per_class: int
    teacher_epochs: int
    width: int  # ConvNet-D3 width of teacher and students
    student_steps: int  # optimizer steps of every student, whatever the set's size (max_steps)
    num_students: int
    ipcs: tuple[int, ...]
    rded_candidates: int  # RDED candidate images per class


SIZES: dict[str, ResultsSize] = {
    # 30 pairs per class: the teacher reached 97.1% (40: 98.3%, near the ceiling digits has)
    "full": ResultsSize(
        train_per_class=30,
        test_per_class=10,
        teacher_epochs=10,
        width=32,
        student_steps=2000,
        num_students=2,
        ipcs=(1, 10),
        rded_candidates=30,
    ),
    # the largest size that ran in about 25 minutes on one thread of a shared 2-core CPU
    "medium": ResultsSize(
        train_per_class=30,
        test_per_class=10,
        teacher_epochs=10,
        width=32,
        student_steps=500,
        num_students=2,
        ipcs=(1, 10),
        rded_candidates=30,
    ),
    # a smoke run of every step (minutes on 2 CPU cores): its numbers mean nothing
    "ci": ResultsSize(
        train_per_class=3,
        test_per_class=1,
        teacher_epochs=1,
        width=8,
        student_steps=2,
        num_students=1,
        ipcs=(1, 2),
        rded_candidates=3,
    ),
}


# ---------------------------------------------------------------------------- provenance
def _git(repo: str, *args: str) -> Optional[str]:
    """``git args`` in ``repo``, its output; None without git or outside a checkout."""
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("gift_hf", "torch", "transformers", "timm", "datasets", "accelerate"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


#: Settings that name where a run reads from, not how it trains: left out of the recorded protocol.
_PATH_SETTINGS = ("teacher_model_name_or_path",)


def protocol_settings(protocol: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """``protocol_config(protocol, **overrides).training_settings()`` as JSON values, paths left out."""
    from gift_hf.engine.config import protocol_config

    settings = protocol_config(protocol, output_dir="unused", **overrides).training_settings()
    return _jsonable({k: v for k, v in settings.items() if k not in _PATH_SETTINGS})


def provenance(size: str, overrides: dict[str, Any], repo: str) -> dict[str, Any]:
    """What a page's numbers came from: commit, versions, size, protocol, overrides, settings."""
    return {
        "commit": _git(repo, "rev-parse", "HEAD") or None,
        # the commit alone does not say what ran when the checkout had uncommitted edits
        "uncommitted_changes": None
        if (status := _git(repo, "status", "--porcelain", "--", "gift_hf")) is None
        else bool(status),
        "versions": _versions(),
        "size": size,
        "size_settings": _jsonable(asdict(SIZES[size])),
        "protocol": PROTOCOL,
        "overrides": _jsonable(overrides),
        "training_settings": protocol_settings(PROTOCOL, overrides),
    }


_PROVENANCE = re.compile(r"<!-- results:begin provenance -->.*?```json\n(.*?)\n```", re.S)


def page_provenance(text: str) -> dict[str, Any]:
    """The provenance block recorded in a page's text."""
    match = _PROVENANCE.search(text)
    if match is None:
        raise ValueError(
            "page: no provenance block (<!-- results:begin provenance --> with a ```json block); "
            "expected one written by `make results`"
        )
    return json.loads(match.group(1))


def stale_protocol_fields(text: str) -> dict[str, tuple[Any, Any]]:
    """Fields whose recorded value differs from the current presets: ``{field: (recorded, now)}``.

    Now is ``PROTOCOLS[recorded protocol]`` with the recorded overrides, so a changed preset
    or ``GIFTConfig`` default shows up here; empty when the page is current.
    """
    recorded = page_provenance(text)
    now = protocol_settings(recorded["protocol"], recorded["overrides"])
    then = recorded["training_settings"]
    return {k: (then.get(k), now.get(k)) for k in sorted(set(then) | set(now)) if not _same(then.get(k), now.get(k))}


def _same(a: Any, b: Any) -> bool:
    """Equal, or both "unset" (None, empty, zero): transformers releases spell an unset field differently
    (``warmup_ratio`` None or 0.0, ``lr_scheduler_kwargs`` None or {})."""
    unset = (None, {}, [], (), "", 0)
    return a == b or (a in unset and b in unset)


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block ``name`` (between its begin/end markers) replaced by ``body``."""
    begin, end = f"<!-- results:begin {name} -->", f"<!-- results:end {name} -->"
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"page: expected one '{begin}' followed by one '{end}'")
    head, rest = text.split(begin)
    return f"{head}{begin}\n{body.strip()}\n{end}{rest.split(end, 1)[1]}"


# --------------------------------------------------------------------------------- runs
def _teacher(out: str, size: ResultsSize, data, transform_model) -> tuple[str, float]:
    """The digit-pair teacher (hard-label CE), trained once and reused: ``(folder, accuracy %)``."""
    from gift_hf.engine.config import GIFTConfig
    from gift_hf.engine.training import train_student
    from gift_hf.models.modeling import image_transform_for, load_teacher

    folder, record = os.path.join(out, "teacher"), os.path.join(out, "teacher.json")
    settings = {"epochs": size.teacher_epochs, "width": size.width, "data": [size.train_per_class, size.test_per_class]}
    if os.path.exists(record) and os.path.isfile(os.path.join(folder, "config.json")):
        with open(record, encoding="utf-8") as f:
            saved = json.load(f)
        if saved["settings"] == settings:
            return folder, saved["accuracy"]
    transform = image_transform_for(transform_model())
    config = GIFTConfig(
        output_dir=os.path.join(out, "teacher_run"),
        loss="ce",
        soft_label_source="none",
        num_train_epochs=size.teacher_epochs,
        per_device_train_batch_size=64,
        augmentation=DIGITS_DSA,
        save_strategy="no",
        logging_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        report_to=[],
        overwrite_output_dir=True,
        seed=0,
    )
    run = train_student(
        config, transform_model, data["train"].with_transform(transform), data["test"].with_transform(transform)
    )
    run.model.save_pretrained(folder)
    load_teacher(folder)  # what the studies will load: fail here, not in the first cell
    accuracy = 100 * run.accuracy
    write_output_text(record, json.dumps({"settings": settings, "accuracy": accuracy}))
    return folder, accuracy


def _rded_set(out: str, size: ResultsSize, data, teacher: str, ipc: int) -> str:
    """The RDED-distilled set of ``ipc`` (saved once, in the Hub layout)."""
    from gift_hf.data.distilled import save_distilled
    from gift_hf.data.rded import build_rded_distilled

    folder = os.path.join(out, f"rded_ipc{ipc}")
    if not os.path.exists(os.path.join(folder, "README.md")):
        dataset, info = build_rded_distilled(
            data["train"],
            teacher,
            ipc,
            candidates_per_class=size.rded_candidates,
            seed=0,
            source_dataset="digit_pairs",
            progress=False,
        )
        save_distilled(dataset, folder, info)
    return folder


def run_results(
    size: str = "full", output_dir: str = "outputs/results", docs_dir: str = "docs", repo: str = "."
) -> dict[str, Any]:
    """Run every study of the results pages at ``size`` and rewrite their generated blocks.

    Args:
        size: a key of :data:`SIZES` (``"full"`` for the pages, ``"ci"`` for a smoke run).
        output_dir: where teachers, distilled sets and study cells go (resumable).
        docs_dir: the folder holding the pages (:data:`PAGES`) and ``assets/results/``.
        repo: the git checkout whose commit is recorded.

    Returns:
        ``{"teacher_accuracy", "summaries": {(source, ipc): summary}, "pages": [paths]}``.
    """
    if size not in SIZES:
        raise ValueError(f"size: got {size!r}; expected one of {sorted(SIZES)}")
    for page in PAGES:
        if not os.path.isfile(os.path.join(docs_dir, page)):
            raise ValueError(f"docs_dir: {os.path.join(docs_dir, page)} not found; expected the results pages")
    from gift_hf.data.images import DIGIT_PAIRS_MEAN, DIGIT_PAIRS_STD, DataArguments, load_digit_pairs_dataset
    from gift_hf.engine.config import protocol_config
    from gift_hf.models.modeling import create_model
    from gift_hf.studies.loss_benchmark import LossBenchmarkArguments, run_loss_benchmark

    s = SIZES[size]
    out = os.path.join(output_dir, size)
    data = load_digit_pairs_dataset(train_per_class=s.train_per_class, test_per_class=s.test_per_class)

    def model():
        return create_model(
            "gift_convnet_d3",
            100,
            in_chans=1,
            img_size=16,
            image_mean=DIGIT_PAIRS_MEAN,
            image_std=DIGIT_PAIRS_STD,
            width=s.width,
            norm="batchnorm",
        )

    teacher, teacher_accuracy = _teacher(out, s, data, model)
    # a budget in steps, the same for every set (epochs would give IPC 1 a tenth of IPC 10's steps)
    overrides = {"max_steps": s.student_steps, "num_students": s.num_students, "augmentation": DIGITS_DSA}
    summaries: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for source in SOURCES:
        for ipc in s.ipcs:
            name = f"{source}_ipc{ipc}"
            config = protocol_config(
                PROTOCOL,
                output_dir=os.path.join(out, name),
                teacher_model_name_or_path=teacher,
                disable_tqdm=True,
                report_to=[],
                **overrides,
            )
            args = LossBenchmarkArguments(
                losses=(["ce"] if source == "random" else []) + list(LOSSES),
                optimizers=list(OPTIMIZERS),
                ipc=ipc,
                distilled=_rded_set(out, s, data, teacher, ipc) if source == "rded" else None,
            )
            result = run_loss_benchmark(args, DataArguments(dataset_name="digit_pairs"), config, data=data)
            summaries[(source, ipc)] = result.summary
    record = provenance(size, overrides, repo)
    pages = write_pages(docs_dir, size, s, teacher_accuracy, summaries, record, out)
    return {"teacher_accuracy": teacher_accuracy, "summaries": summaries, "pages": pages}


# ------------------------------------------------------------------------------- tables
def _index(summaries: dict[tuple[str, int], list[dict[str, Any]]]) -> dict[tuple, dict[str, Any]]:
    return {
        (source, ipc, row["loss"], row["optimizer"]): row
        for (source, ipc), summary in summaries.items()
        for row in summary
    }


def _diff(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if a is None or b is None or not a.get("n") or not b.get("n"):
        return None
    return a["mean"] - b["mean"]


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1f}"


def gift_minus(summaries: dict[tuple[str, int], list[dict[str, Any]]], other: str) -> list[dict[str, Any]]:
    """Rows ``{source, ipc, optimizer, diff}``: GIFT's mean accuracy minus ``other``'s (points)."""
    index = _index(summaries)
    rows = []
    for source, ipc in summaries:
        for o in OPTIMIZERS:
            gift, them = index.get((source, ipc, "gift", o)), index.get((source, ipc, other, o))
            diff = _diff(gift, them)
            # spread of a difference of two independent means' seeds: the stds add in quadrature
            std = None if diff is None else (gift["std"] ** 2 + them["std"] ** 2) ** 0.5
            rows.append(
                {
                    "source": source,
                    "ipc": ipc,
                    "optimizer": o,
                    "diff": diff,
                    "std": std,
                    "best": None if diff is None else max(gift["mean"], them["mean"]),
                }
            )
    return rows


def _verdict(rows: list[dict[str, Any]], other: str) -> str:
    scored = [r for r in rows if r["diff"] is not None]
    if not scored:
        return f"No setting produced both GIFT and {other} accuracies."
    wins = [r for r in scored if r["diff"] > 0]
    best, worst = max(scored, key=lambda r: r["diff"]), min(scored, key=lambda r: r["diff"])

    def where(r):
        return f"{r['source']} IPC {r['ipc']}, {r['optimizer']}"

    # a "win" between two students that did not train says nothing about the loss
    untrained = [r for r in scored if r["best"] < UNTRAINED]
    caveat = (
        f" In {len(untrained)} of them neither reached {UNTRAINED:g}% ({'; '.join(map(where, untrained))}): "
        "there the difference is between two students that did not train."
        if untrained
        else ""
    )
    return (
        f"GIFT − {other}: GIFT is ahead in {len(wins)} of {len(scored)} settings; largest gain "
        f"{best['diff']:+.1f} points ({where(best)}), largest loss {worst['diff']:+.1f} points ({where(worst)}); "
        f"mean {sum(r['diff'] for r in scored) / len(scored):+.1f}.{caveat}"
    )


def _publish(plot: str, docs_dir: str) -> str:
    """Copy a plot written in the study folder to ``docs_dir/assets/results/`` (atomically); its page link."""
    import shutil

    name = os.path.basename(plot)
    atomic_write(os.path.join(docs_dir, "assets", "results", name), lambda tmp: shutil.copyfile(plot, tmp))
    return f"assets/results/{name}"


def write_pages(
    docs_dir: str,
    size: str,
    s: ResultsSize,
    teacher_accuracy: float,
    summaries: dict[tuple[str, int], list[dict[str, Any]]],
    record: dict[str, Any],
    out: str,
) -> list[str]:
    """Rewrite the generated blocks of both pages and their plots (made in ``out``); return the page paths."""
    from gift_hf.studies.loss_benchmark import loss_optimizer_table
    from gift_hf.studies.report import bar_plot, fmt_acc, markdown_table

    assets = out
    index = _index(summaries)
    note = {"full": "", "ci": f"\n\n**Size `{size}`: a smoke run; these numbers mean nothing.**"}.get(
        size,
        f"\n\n**Size `{size}`, not `full`** ({SIZES['full'].student_steps} steps): the full size did not fit "
        "the time this page was made in (one thread of a shared 2-core CPU); `make results` runs the full size.",
    )
    setup = (
        f"Digit pairs: {100 * s.train_per_class} training / {100 * s.test_per_class} test images (16×16, 100 "
        f"classes). Teacher: ConvNet-D3 width {s.width}, batch norm, hard-label CE, {s.teacher_epochs} epoch(s) "
        f"(batch 64, AdamW 1e-3, DSA `{DIGITS_DSA}`): **{teacher_accuracy:.1f}%** test accuracy. Students: the "
        f"teacher's architecture, the `{PROTOCOL}` protocol with {s.student_steps} steps per student "
        f"(`max_steps`) and {s.num_students} seed(s) (provenance below), test accuracy in %, mean ± std over "
        f"seeds.{note}"
    )

    # results.md: soft vs hard, and loss × optimizer on the largest random subset
    rows = []
    for ipc in s.ipcs:
        ce, kl, gift = (index.get(("random", ipc, loss, "adamw")) for loss in ("ce", "kl", "gift"))
        best = max((x for x in (kl, gift) if x and x.get("n")), key=lambda x: x["mean"], default=None)
        rows.append([f"{ipc} ({100 * ipc})", fmt_acc(ce), fmt_acc(kl), fmt_acc(gift), _signed(_diff(best, ce))])
    soft_hard = markdown_table(
        ["IPC (images)", "hard labels (`ce`)", "soft: KL (T = 20)", "soft: GIFT", "best soft − hard"], rows
    )
    top = max(s.ipcs)
    losses = ["ce", *LOSSES]
    grid = loss_optimizer_table(summaries[("random", top)], losses, list(OPTIMIZERS))
    grid_plot = bar_plot(
        summaries[("random", top)],
        "loss",
        "optimizer",
        os.path.join(assets, "digit_pairs_loss_optimizer.png"),
        f"digit pairs, random IPC={top}: loss × optimizer",
    )
    results_blocks = {
        "setup": setup,
        "soft-hard": soft_hard + "\n\nRandom class-balanced subsets (selection seed 0), AdamW (`gift` protocol).",
        "loss-optimizer": (
            f"Random IPC {top} ({100 * top} images), every loss under both optimizers:\n\n{grid}\n\n"
            f"![loss × optimizer on digit pairs]({_publish(grid_plot, docs_dir)})"
        ),
    }

    # when-gift-helps.md: GIFT − KL and GIFT − soft-CE, all accuracies, the plot
    diff_kl, diff_sce = gift_minus(summaries, "kl"), gift_minus(summaries, "soft_ce")
    body = []
    for source, ipc in summaries:
        cells = {
            o: next(r["diff"] for r in diff_kl if (r["source"], r["ipc"], r["optimizer"]) == (source, ipc, o))
            for o in OPTIMIZERS
        }
        sce = {
            o: next(r["diff"] for r in diff_sce if (r["source"], r["ipc"], r["optimizer"]) == (source, ipc, o))
            for o in OPTIMIZERS
        }
        body.append([source, ipc, *(_signed(cells[o]) for o in OPTIMIZERS), *(_signed(sce[o]) for o in OPTIMIZERS)])
    diff_table = markdown_table(
        ["set", "IPC", *(f"GIFT − KL, {o}" for o in OPTIMIZERS), *(f"GIFT − soft-CE, {o}" for o in OPTIMIZERS)], body
    )
    full = []
    for (source, ipc), summary in summaries.items():
        for loss in [x for x in ("ce", *LOSSES) if any(r["loss"] == x for r in summary)]:
            full.append([source, ipc, loss, *(fmt_acc(index.get((source, ipc, loss, o))) for o in OPTIMIZERS)])
    all_table = markdown_table(["set", "IPC", "loss", *OPTIMIZERS], full)
    plot_rows = [
        {"setting": f"{r['source']}\nIPC {r['ipc']}", "optimizer": r["optimizer"], "mean": r["diff"], "std": r["std"]}
        for r in diff_kl
        if r["diff"] is not None
    ]
    low = min([r["mean"] - r["std"] for r in plot_rows] + [0.0])
    high = max([r["mean"] + r["std"] for r in plot_rows] + [0.0])
    pad = max(1.0, 0.1 * (high - low))
    diff_plot = bar_plot(
        plot_rows,
        "setting",
        "optimizer",
        os.path.join(assets, "when_gift_helps.png"),
        "digit pairs: GIFT − KL (points; bars: the seeds' stds in quadrature)",
        ylabel="GIFT − KL (accuracy points)",
        ylim=(low - pad, high + pad),
    )
    helps_blocks = {
        "setup": setup,
        "gift-minus-kl": (
            f"{diff_table}\n\n{_verdict(diff_kl, 'KL')}\n\n{_verdict(diff_sce, 'soft-CE')}\n\n"
            f"![GIFT − KL]({_publish(diff_plot, docs_dir)})"
        ),
        "accuracies": all_table,
    }

    prov = (
        "Written by `make results` (`gift-hf results --size " + size + "`); the test suite fails when the "
        "protocol below no longer matches `PROTOCOLS` and `GIFTConfig`'s defaults.\n\n```json\n"
        + json.dumps(record, indent=1)
        + "\n```"
    )
    paths = []
    for page, blocks in (("results.md", results_blocks), ("when-gift-helps.md", helps_blocks)):
        path = os.path.join(docs_dir, page)
        text = open(path, encoding="utf-8").read()
        for name, block in {**blocks, "provenance": prov}.items():
            text = replace_block(text, name, block)
        paths.append(atomic_write_text(path, text))  # a page of docs/, not a result file: no manifest
    return paths
