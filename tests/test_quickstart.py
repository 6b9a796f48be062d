"""The quickstart at reduced size: soft-label students beat the hard-label one."""

import json
import re

import pytest
import yaml
from recipe_helpers import REPO, one_thread

from gift_hf import GIFTConfig
from gift_hf.studies.quickstart import QUICKSTART_DEFAULTS, QuickstartArguments, format_table, run_quickstart
from gift_hf.studies.report import summarize


def test_quickstart_reduced(tmp_path, capfd):
    args = QuickstartArguments(ipc=2, losses=["ce", "kl", "gift"], teacher_epochs=6)
    config = GIFTConfig(
        **{
            **QUICKSTART_DEFAULTS,
            "output_dir": str(tmp_path / "qs"),
            "num_students": 2,
            "num_train_epochs": 150,
            "per_device_train_batch_size": 20,
        }
    )
    with one_thread():
        results = run_quickstart(args, config)
    # One display: the job's bar, a line per step and per student, then the table; none of the Trainer's
    # metric blocks, per-step bars or the model-shard bars (the lines a bar redraws with "\r" are its own).
    out = capfd.readouterr()
    console = out.out + out.err
    lines = [line.split("\r")[-1] for line in console.split("\n") if line.split("\r")[-1].strip()]
    lines = [line for line in lines if not line.startswith("quickstart:")]  # the bar's redraws
    assert len(lines) <= 40, lines
    assert "***** train metrics *****" not in console and "Writing model shards" not in console
    assert [line.strip() for line in lines if "seed" in line and "%" in line][:2] == [
        f"ce       seed 0: {100 * results['records'][0]['accuracy']:.2f}%",
        f"ce       seed 1: {100 * results['records'][1]['accuracy']:.2f}%",
    ]
    assert "quickstart: 100%" in console  # the bar reached its end (teacher + 3 losses × 2 seeds)
    summary = {row["loss"]: row for row in results["summary"]}
    assert results["teacher_accuracy"] > 90  # percentages, like every summary
    assert summary["gift"]["mean"] > summary["ce"]["mean"]
    assert summary["kl"]["mean"] > summary["ce"]["mean"]
    folder = tmp_path / "qs"
    assert json.loads((folder / "results.json").read_text())["summary"] == results["summary"]
    assert "| gift |" in (folder / "results.md").read_text()
    assert (folder / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "teacher" / "model.safetensors").is_file()
    assert len(results["subset_indices"]) == 20
    # Every student is saved as a standard transformers model with its card: the set it learnt
    # from, the license of digits, and its test accuracy as the quickstart reported it.
    student = folder / "students" / "gift" / "seed-0"
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in student.iterdir()}
    card = (student / "README.md").read_text()
    assert "license: bsd-3-clause" in card and "random IPC=2 subset" in card and "dataset-distillation" in card
    gift = next(r for r in results["records"] if r["params"]["loss"] == "gift")
    shown = re.search(r"\| accuracy \| ([0-9.]+)% \| digits", card)  # percent for people (docs/index.md)
    assert shown and float(shown.group(1)) == pytest.approx(100 * gift["accuracy"], abs=1e-2)


def test_summary_and_table_by_hand():
    records = [
        {"params": {"loss": "ce"}, "seed": 0, "accuracy": 0.5},
        {"params": {"loss": "ce"}, "seed": 1, "accuracy": 0.7},
        {"params": {"loss": "gift"}, "seed": 0, "accuracy": 0.9},
    ]
    summary = summarize(records, ["loss"])
    assert (summary[0]["mean"], summary[0]["std"], summary[0]["n"]) == pytest.approx((60.0, 14.142136, 2))
    assert (summary[1]["mean"], summary[1]["std"], summary[1]["n"]) == (90.0, 0.0, 1)
    table = format_table(summary, 99.0, ipc=10)
    assert "| ce | 60.00 ± 14.14 (n=2) |" in table and "| teacher (full train split) | 99.00 |" in table


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="ipc: got 0"):
        QuickstartArguments(ipc=0)
    with pytest.raises(ValueError, match="losses: got 'hinge'"):
        QuickstartArguments(losses=["ce", "hinge"])
    with pytest.raises(ValueError, match="channels: got 2"):
        QuickstartArguments(channels=2)


def test_recipe_holds_the_quickstart_defaults():
    from gift_hf.scripts.quickstart import make_parser

    recipe = yaml.safe_load((REPO / "recipes" / "quickstart.yaml").read_text())
    args, config = make_parser().parse_args_and_config(["--config", str(REPO / "recipes" / "quickstart.yaml")])
    default_args, default_config = make_parser().parse_args_and_config([])
    assert args == default_args
    for key in recipe:
        assert getattr(config, key, getattr(args, key, None)) == getattr(
            default_config, key, getattr(default_args, key, None)
        ), key
