"""The papers' experiments end to end at reduced size: real digits, real students, tables, plots,
resume, and cells shared between two `accelerate launch` processes."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
from pathlib import Path

import pytest
from experiment_helpers import small_digits, teacher_run
from recipe_helpers import ACCELERATE, CPU_2PROC_CONFIG, free_port, one_thread, subprocess_env

from gift_hf import cli
from gift_hf.data.distilled import save_distilled
from gift_hf.data.selection import build_random_distilled
from gift_hf.engine.config import protocol_config
from gift_hf.studies import (
    Cell,
    CrossArchitectureArguments,
    DataKnowledgeScalingArguments,
    ExpertEpochArguments,
    ImprovementOverRandomArguments,
    LabelSwapArguments,
    LossBenchmarkArguments,
    TemperatureGridArguments,
    run_cells,
    run_cross_architecture,
    run_data_knowledge_scaling,
    run_expert_epochs,
    run_improvement_over_random,
    run_label_swap,
    run_loss_benchmark,
    run_temperature_grid,
)
from gift_hf.studies.common import Study
from gift_hf.studies.random_baseline import gap_statistics

PNG = b"\x89PNG\r\n\x1a\n"
# one student per cell, two epochs, no augmentation: the tests check the machinery, not accuracy
TINY = dict(num_train_epochs=2, num_students=1, best_of=1, augmentation="none")


def tiny(protocol: str, output_dir, teacher: str | None = None, **changes):
    """The protocol at the tests' size, writing into ``output_dir``."""
    return protocol_config(
        protocol, output_dir=str(output_dir), teacher_model_name_or_path=teacher, **{**TINY, **changes}
    )


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_thread():  # see test_evaluation: one thread per process is faster on a shared CPU
        yield


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> str:
    return str(teacher_run(tmp_path_factory))


@pytest.fixture(scope="module")
def data():
    return small_digits()


def check_outputs(result, plot_name: str, n_cells: int) -> dict:
    """results.json/.csv/.md and the PNG exist and agree with the returned result."""
    out = Path(result.files["json"]).parent
    payload = json.loads((out / "results.json").read_text())
    assert len(payload["cells"]) == n_cells == len(result.records)
    assert all(0.0 <= c["accuracy"] <= 1.0 for c in payload["cells"])
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(result.summary)
    assert (out / "results.md").read_text().strip().endswith(result.table.strip().splitlines()[-1])
    assert (out / plot_name).read_bytes()[:8] == PNG
    return payload


# ------------------------------------------------------------------------------ sweep
def test_run_cells_resumes_and_respects_the_fingerprint(tmp_path):
    calls = []

    def run_one(cell):
        calls.append(cell.key)
        return {"accuracy": cell.params["x"] / 10}

    cells = [Cell({"x": x}, seed) for x in (1, 2) for seed in (0, 1)]
    records, stats = run_cells(cells, run_one, str(tmp_path), "fp-a")
    assert (stats.trained, stats.reused, len(calls)) == (4, 0, 4)
    assert (
        [r["key"] for r in records]
        == [c.key for c in cells]
        == ["x=1,seed=0", "x=1,seed=1", "x=2,seed=0", "x=2,seed=1"]
    )
    # a grown grid trains only the new cells
    records, stats = run_cells(cells + [Cell({"x": 3}, 0)], run_one, str(tmp_path), "fp-a")
    assert (stats.trained, stats.reused, calls[-1]) == (1, 4, "x=3,seed=0")
    # other settings (fingerprint) or --no_resume recompute everything
    _, stats = run_cells(cells, run_one, str(tmp_path), "fp-b")
    assert (stats.trained, stats.reused) == (4, 0)
    _, stats = run_cells(cells, run_one, str(tmp_path), "fp-b", resume=False)
    assert stats.trained == 4
    with pytest.raises(ValueError, match="duplicate cells"):
        run_cells(cells + cells[:1], run_one, str(tmp_path), "fp-a")


def test_a_process_that_starts_late_still_trains_its_share(tmp_path, monkeypatch):
    """Rank 0 of 2 finishes its cell before rank 1 reads the grid: rank 1 must still train the
    other cell (a share taken from the pending list would be empty, and rank 0 would wait forever)."""
    from gift_hf.studies import sweep

    cells = [Cell({"loss": "ce"}, 0), Cell({"loss": "gift"}, 0)]
    trained = {}

    def run_one(cell):
        trained.setdefault(cell.key, []).append(rank)
        return {"accuracy": 0.5}

    rank = 0
    monkeypatch.setattr(sweep, "detach_from_launcher", lambda: (rank, 2))
    with pytest.raises(TimeoutError, match="loss=gift,seed=0"):  # rank 0 waits for rank 1's cell
        run_cells(cells, run_one, str(tmp_path), "fp", timeout=0, poll_seconds=0)
    rank = 1
    records, stats = run_cells(cells, run_one, str(tmp_path), "fp")
    assert records is None and stats.trained == 1
    assert trained == {"loss=ce,seed=0": [0], "loss=gift,seed=0": [1]}
    rank = 0
    records, _ = run_cells(cells, run_one, str(tmp_path), "fp", timeout=0)
    assert [r["rank"] for r in records] == [0, 1]


def test_a_failing_cell_is_recorded_and_retried(tmp_path):
    def broken(cell):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_cells([Cell({"x": 1}, 0)], broken, str(tmp_path), "fp")
    assert "boom" in (tmp_path / "cells" / "x=1,seed=0.error.json").read_text()
    _, stats = run_cells([Cell({"x": 1}, 0)], lambda c: {"accuracy": 0.5}, str(tmp_path), "fp")
    assert stats.trained == 1 and not (tmp_path / "cells" / "x=1,seed=0.error.json").exists()


# ------------------------------------------------------------------------ experiments
def test_loss_benchmark_table_spread_and_resume(teacher, data, tmp_path):
    args = LossBenchmarkArguments(losses=["ce", "gift"], optimizers=["sgd", "adamw"], ipc=1)
    result = run_loss_benchmark(args, config=tiny("gift", tmp_path, teacher), data=data)
    assert (result.stats.trained, result.stats.reused) == (4, 0)
    payload = check_outputs(result, "loss_benchmark.png", 4)
    by_cell = {(c["params"]["loss"], c["params"]["optimizer"]): 100 * c["accuracy"] for c in payload["cells"]}
    for loss in ("ce", "gift"):
        spread = result.extra["spread"][loss]
        assert spread["spread"] == pytest.approx(abs(by_cell[(loss, "sgd")] - by_cell[(loss, "adamw")]))
        assert spread["mean_over_optimizers"] == pytest.approx((by_cell[(loss, "sgd")] + by_cell[(loss, "adamw")]) / 2)
    lines = result.table.splitlines()
    assert lines[0] == "| loss | sgd | adamw | mean over optimizers | spread (best − worst) |"
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| ce", "| gift"]
    # each optimizer keeps its own rate, the same for every loss
    assert {c["params"]["optimizer"] for c in payload["cells"]} == {"sgd", "adamw"}
    assert payload["settings"]["learning_rates"] == {"sgd": 0.01, "adamw": 1e-3}

    # resumed on another grid: the finished (ce|gift, adamw) cells are reused, only kl trains
    args.losses, args.optimizers = ["ce", "gift", "kl"], ["adamw"]
    again = run_loss_benchmark(args, config=tiny("gift", tmp_path, teacher), data=data)
    assert (again.stats.trained, again.stats.reused) == (1, 2)
    assert [r["loss"] for r in again.summary] == ["ce", "gift", "kl"]
    assert again.records[:2] == [c for c in payload["cells"] if c["params"]["optimizer"] == "adamw"]


def test_cross_architecture_grid(teacher, data, tmp_path):
    args = CrossArchitectureArguments(
        teachers=[teacher],
        student_archs=["gift_convnet_d3", "test_efficientnet_gn"],
        arch_model_kwargs=json.dumps({"gift_convnet_d3": {"width": 16, "norm": "batchnorm"}}),
        ipc=1,
    )
    result = run_cross_architecture(args, config=tiny("gift", tmp_path), data=data)
    check_outputs(result, "cross_architecture.png", 2)
    assert {(r["teacher"], r["student"]) for r in result.summary} == {
        (Path(teacher).name, "gift_convnet_d3"),
        (Path(teacher).name, "test_efficientnet_gn"),
    }
    assert all(r["teacher_arch"] == "gift_convnet_d3" for r in result.summary)
    assert result.table.splitlines()[0] == "| teacher (arch) | student=gift_convnet_d3 | student=test_efficientnet_gn |"


def test_expert_epoch_sweep_finds_the_best_epoch_per_ipc(teacher, data, tmp_path):
    args = ExpertEpochArguments(ipcs=[1, 2])
    result = run_expert_epochs(args, config=tiny("label_paper", tmp_path, teacher), data=data)
    check_outputs(result, "expert_epochs.png", 4)  # every saved epoch (1, 2) × 2 IPC
    assert sorted({c["params"]["expert_epoch"] for c in result.records}) == [1.0, 2.0]
    for ipc in (1, 2):
        rows = [r for r in result.summary if r["ipc"] == ipc]
        best = max(rows, key=lambda r: r["mean"])
        assert result.extra["best_expert_epoch"][str(ipc)]["expert_epoch"] == best["expert_epoch"]
    assert "| IPC | best expert epoch | accuracy (%) |" in result.table


def test_temperature_grid_relabels_at_each_temperature(teacher, data, tmp_path):
    args = TemperatureGridArguments(temperatures=[1, 8], expert_epochs=[2], ipc=1)
    config = tiny("label_paper", tmp_path, teacher)
    result = run_temperature_grid(args, config=config, data=data)
    check_outputs(result, "temperature_grid.png", 2)
    assert result.extra["knob"] == "label_temperature"
    # the stored labels really are softmax(logits / T): higher T, flatter labels
    study = Study("probe", args, config=config, data=data)
    subset = study.random_subset(1)
    maxima = []
    for t in (1.0, 8.0):
        labelled, _ = study.prepare(subset, "s", config.replace(label_temperature=t), expert_epoch=2)
        soft = labelled.with_format("numpy")[:]["soft_label"]
        assert soft.sum(1) == pytest.approx(1.0, abs=1e-5)
        maxima.append(soft.max(1).mean())
    assert maxima[1] < maxima[0]


def test_label_swap_against_original_and_hard_labels(teacher, data, tmp_path):
    args = LabelSwapArguments(ks=[1], ipc=1)
    result = run_label_swap(args, config=tiny("label_paper", tmp_path, teacher), data=data)
    check_outputs(result, "label_swap.png", 3)
    assert [r["swap"] for r in result.summary] == ["none", 1, "hard"]
    rows = result.table.splitlines()[2:]
    assert [r.split(" | ")[0] for r in rows] == ["| none (original labels)", "| k=1", "| hard labels"]
    none = result.summary[0]["mean"]
    assert rows[1].endswith(f"{result.summary[1]['mean'] - none:+.1f} |")


def test_cells_that_differ_only_in_seed_train_together(teacher, data, tmp_path):
    """A study's seeds on one training set are one group of students trained together."""
    args = LabelSwapArguments(ks=[1], ipc=1)
    result = run_label_swap(args, config=tiny("label_paper", tmp_path, teacher, num_students=2), data=data)
    assert len(result.records) == 6
    assert all(c["metrics"]["students_together"] == 2 for c in result.records)
    # each swap's two seeds are distinct students (own initial weights, batches and draws)
    assert {c["seed"] for c in result.records} == {0, 1}


def test_each_process_trains_only_its_own_seeds_of_a_setting_together(teacher, data, tmp_path, monkeypatch):
    """Under `accelerate launch` the seeds of one setting are dealt to several processes: each
    trains its own together, never the other process's (that work would be thrown away)."""
    from gift_hf.studies import sweep

    rank = 0
    monkeypatch.setattr(sweep, "detach_from_launcher", lambda: (rank, 2))
    config = tiny("label_paper", tmp_path, teacher, num_students=3)
    args = LabelSwapArguments(ks=[1], ipc=1, merge_timeout=0)
    # 3 settings x seeds (0, 1, 2), dealt by grid place: process 0 has seeds {0, 2}, {1}, {0, 2}
    # of the three settings, process 1 the others
    with pytest.raises(TimeoutError, match="waited 0s for 4 cell"):  # the other process's cells
        run_label_swap(args, config=config, data=data)
    rank = 1
    assert run_label_swap(args, config=config, data=data).records is None
    rank = 0
    records = run_label_swap(args, config=config, data=data).records  # merges, trains nothing again
    trained = {(r["params"]["swap"], r["seed"]): (r["rank"], r["metrics"]["students_together"]) for r in records}
    assert trained == {
        ("none", 0): (0, 2),
        ("none", 1): (1, 1),
        ("none", 2): (0, 2),
        (1, 0): (1, 2),
        (1, 1): (0, 1),
        (1, 2): (1, 2),
        ("hard", 0): (0, 2),
        ("hard", 1): (1, 1),
        ("hard", 2): (0, 2),
    }


def test_data_knowledge_scaling_heatmap_and_gap(teacher, data, tmp_path):
    args = DataKnowledgeScalingArguments(ipcs=[1, 2], topks=[10, 1])
    result = run_data_knowledge_scaling(args, config=tiny("label_paper", tmp_path, teacher), data=data)
    check_outputs(result, "data_knowledge_scaling.png", 6)
    index = {(r["ipc"], r["topk"]): r["mean"] for r in result.summary}
    for ipc in (1, 2):
        assert result.extra["soft_minus_hard"][str(ipc)] == pytest.approx(index[(ipc, 10)] - index[(ipc, "hard")])
    assert [line.split(" | ")[0] for line in result.table.splitlines()[2:5]] == ["| all (10)", "| 1", "| hard"]


def test_improvement_over_random_gap_and_uncertainty(teacher, data, tmp_path):
    subset, info = build_random_distilled(data["train"], 1, seed=123)
    save_distilled(subset, tmp_path / "distilled", info=info)
    args = ImprovementOverRandomArguments(distilled=str(tmp_path / "distilled"), num_random=2)
    result = run_improvement_over_random(args, config=tiny("gift", tmp_path / "out", teacher), data=data)
    check_outputs(result, "improvement_over_random.png", 3)
    d = [100 * c["accuracy"] for c in result.records if c["params"]["source"] == "distilled"]
    r = [100 * c["accuracy"] for c in result.records if c["params"]["source"] != "distilled"]
    gap = result.extra["gap"]
    assert gap["gap"] == pytest.approx(statistics.fmean(d) - statistics.fmean(r))
    assert len(d) == 1 and len(r) == 2  # one student per set: the spread comes from the two random subsets
    assert gap["se"] == pytest.approx((statistics.variance(r) / 2) ** 0.5)
    # the random subset has the distilled set's class counts
    assert all(c["num_images"] == 10 for c in result.records)


def test_gap_statistics_by_hand():
    g = gap_statistics([70.0, 74.0], [60.0, 62.0, 64.0])
    assert g["gap"] == pytest.approx(10.0)
    assert g["se"] == pytest.approx((8 / 2 + 4 / 3) ** 0.5)
    # Welch–Satterthwaite df = (4 + 4/3)² / (4²/1 + (4/3)²/2)
    assert g["df"] == pytest.approx((4 + 4 / 3) ** 2 / (16 + (16 / 9) / 2))
    assert g["ci95_low"] < 10.0 < g["ci95_high"]


# ------------------------------------------------------------------------- commands
def test_evaluate_command_from_a_yaml_file(teacher, tmp_path, capsys):
    subset, info = build_random_distilled(small_digits()["train"], 1, seed=7)
    save_distilled(subset, tmp_path / "set", info=info)
    config = tmp_path / "evaluate.yaml"
    config.write_text(
        f"distilled: {tmp_path / 'set'}\nteacher_model_name_or_path: {teacher}\noutput_dir: {tmp_path / 'out'}\n"
        f"max_eval_samples: 120\nnum_train_epochs: 2\nnum_students: 1\nbest_of: 1\naugmentation: none\n"
    )
    assert cli.main(["evaluate", "--config", str(config), "--seed", "3"]) == 0  # options override the recipe
    out = capsys.readouterr().out
    assert "(mean ± std over 1 students)" in out and "cells: 1 (1 trained now, 0 reused" in out
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    assert payload["settings"]["config"]["num_train_epochs"] == 2 and len(payload["cells"]) == 1
    assert payload["cells"][0]["seed"] == 3


@pytest.mark.parametrize(
    "name",
    [
        "evaluate",
        "loss-benchmark",
        "cross-architecture",
        "expert-epochs",
        "temperature-grid",
        "label-swap",
        "data-knowledge-scaling",
        "improvement-over-random",
    ],
)
def test_commands_list_their_options(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--output_dir" in out and "--config" in out and "--dataset_name" in out and "--lr_milestones" in out


def test_cells_are_shared_between_two_accelerate_processes(teacher, tmp_path):
    out = tmp_path / "sweep"
    command = [
        str(ACCELERATE),
        "launch",
        "--config_file",
        str(CPU_2PROC_CONFIG),
        "--main_process_port",
        str(free_port()),
        "-m",
        "gift_hf.scripts.loss_benchmark",
        "--output_dir",
        str(out),
        "--teacher_model_name_or_path",
        teacher,
        "--losses",
        "ce",
        "gift",
        "--optimizers",
        "adamw",
        "--ipc",
        "1",
        "--num_students",
        "1",
        "--num_train_epochs",
        "1",
        "--best_of",
        "1",
        "--augmentation",
        "none",
        "--max_eval_samples",
        "60",
        "--merge_timeout",
        "300",
    ]
    done = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[done.stderr.find("Traceback") :][:4000]
    payload = json.loads((out / "results.json").read_text())
    ranks = [c["rank"] for c in payload["cells"]]
    assert sorted(ranks) == [0, 1]  # each process trained one of the two students
    assert done.stdout.count("| loss | adamw |") == 1  # only the main process reports


def test_a_study_trains_stored_labels_as_the_card_says(teacher, data, tmp_path):
    """A set whose card says logits is refused under a protocol that stores probabilities, and
    trained as logits when the protocol leaves the kind to the card."""
    from gift_hf.data.relabel import relabel
    from gift_hf.models.modeling import load_teacher
    from gift_hf.studies.evaluate import EvaluateArguments

    subset, info = build_random_distilled(data["train"], 1, seed=7, source_dataset="digits")
    labelled, info = relabel(subset, load_teacher(teacher), info=info, output="logits", progress=False)
    save_distilled(labelled, tmp_path / "set", info)
    args = EvaluateArguments(distilled=str(tmp_path / "set"))
    study = Study("evaluate", args, None, tiny("label_paper", tmp_path / "out"), data)
    with pytest.raises(
        ValueError,
        match=r"soft_label_kind: got 'probabilities' but the dataset card of .* says the "
        r"stored soft labels are 'logits'",
    ):
        study.load_distilled(args.distilled)
    study = Study("evaluate", args, None, tiny("label_paper", tmp_path / "out", soft_label_kind=None), data)
    study.load_distilled(args.distilled)
    assert study.config.soft_label_kind == "logits"
