"""The shipped evaluate metric loads by path offline and computes top-k by hand."""

import evaluate
import numpy as np
import pytest

from gift_hf.metrics import build_compute_metrics, load_metric, metric_path


def test_loads_by_path_offline():
    metric = evaluate.load(metric_path("topk_accuracy"))
    scores = [[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5]]
    # sample 0: top-1 hit; sample 1: true class 1 is 2nd; sample 2: true class 0 is 3rd
    got = metric.compute(predictions=scores, references=[1, 1, 0], k=[1, 2, 3])
    assert got == pytest.approx({"accuracy": 1 / 3, "top2_accuracy": 2 / 3, "top3_accuracy": 1.0})


def test_unknown_metric_name():
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        metric_path("bleu")


def test_compute_metrics_for_trainer():
    class EvalPrediction:
        predictions = np.eye(10)[[0, 1, 2, 3]] + 0.01 * np.arange(10)
        label_ids = np.array([0, 1, 2, 9])

    got = build_compute_metrics(10)(EvalPrediction())
    assert got["accuracy"] == pytest.approx(0.75)
    assert got["top5_accuracy"] == pytest.approx(1.0)  # class 9 has the 2nd highest score in row 3
    assert "top5_accuracy" not in build_compute_metrics(3)(
        type("P", (), {"predictions": np.eye(3), "label_ids": np.arange(3)})()
    )


def test_bad_references():
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\]"):
        load_metric("topk_accuracy").compute(predictions=[[0.0, 1.0, 0.0]], references=[5], k=[1])
