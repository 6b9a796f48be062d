"""The quickstart at reduced size: soft-label students beat the hard-label one."""

import json

import pytest

from gift_hf.quickstart import QuickstartArguments, format_table, run_quickstart, summarize


def test_quickstart_reduced(tmp_path):
    args = QuickstartArguments(
        output_dir=str(tmp_path / "qs"), ipc=2, num_students=1, losses="ce,kl,gift",
        teacher_epochs=6, student_epochs=150, student_batch_size=20,
    )
    results = run_quickstart(args)
    summary = results["summary"]
    assert results["teacher_accuracy"] > 0.9
    assert summary["gift"]["mean"] > summary["ce"]["mean"]
    assert summary["kl"]["mean"] > summary["ce"]["mean"]
    out = tmp_path / "qs"
    assert json.loads((out / "results.json").read_text())["summary"] == summary
    assert "| gift |" in (out / "results.md").read_text()
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "teacher" / "model.safetensors").is_file()
    assert len(results["subset_indices"]) == 20


def test_summary_and_table_by_hand():
    summary = summarize({"ce": [0.5, 0.7], "gift": [0.9]})
    assert summary["ce"] == pytest.approx({"mean": 0.6, "std": 0.1414213, "n": 2})
    assert summary["gift"] == {"mean": 0.9, "std": 0.0, "n": 1}
    table = format_table(summary, 0.99, ipc=10)
    assert "| ce | 60.00 ± 14.14 (n=2) |" in table and "| teacher (full train split) | 99.00 |" in table


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="ipc: got 0"):
        QuickstartArguments(ipc=0)
    with pytest.raises(ValueError, match="losses: got ' , '"):
        QuickstartArguments(losses=" , ")
