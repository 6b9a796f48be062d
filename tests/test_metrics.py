"""The shipped evaluate metric loads by path offline and computes top-k by hand."""

import evaluate
import numpy as np
import pytest

from gift_hf.evaluation.metrics import best_accuracy, build_compute_metrics, load_metric, metric_path


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


def predictions(logits, labels):
    return type(
        "EvalPrediction", (), {"predictions": np.asarray(logits, dtype=np.float32), "label_ids": np.asarray(labels)}
    )()


def test_nan_logits_score_zero():
    # a diverged model outputs NaN everywhere: no sample is correct
    got = build_compute_metrics(10)(predictions(np.full((4, 10), np.nan), [0, 1, 2, 3]))
    assert got == {"accuracy": 0.0, "top5_accuracy": 0.0}


def test_all_equal_logits_score_zero():
    # every class tied with nine others: the true class is ranked behind all of them
    got = build_compute_metrics(10)(predictions(np.zeros((4, 10)), [0, 1, 2, 9]))
    assert got == {"accuracy": 0.0, "top5_accuracy": 0.0}


def test_ties_and_non_finite_rows_count_as_wrong_by_hand():
    logits = [
        [2.0, 2.0, 0.0, 0.0],  # true 0 tied with class 1 at the top: rank 1 -> top-1 miss, top-2 hit
        [3.0, 1.0, 1.0, 0.0],  # true 1 tied with class 2 behind class 0: rank 2 -> top-2 miss, top-3 hit
        [0.0, 1.0, 5.0, 0.0],  # true 2 strictly highest: hit everywhere
        [0.0, np.inf, 1.0, 0.0],  # an infinite logit: the row is wrong at every k
        [9.0, np.nan, 0.0, 0.0],  # NaN somewhere, even off the true class: wrong at every k
    ]
    got = load_metric("topk_accuracy").compute(predictions=logits, references=[0, 1, 2, 1, 0], k=[1, 2, 3, 4])
    assert got == pytest.approx(
        {"accuracy": 1 / 5, "top2_accuracy": 2 / 5, "top3_accuracy": 3 / 5, "top4_accuracy": 3 / 5}
    )


def test_best_of_k_never_picks_a_non_finite_evaluation():
    assert best_accuracy([0.25, 0.5, 0.375]) == 0.5
    with pytest.raises(ValueError, match=r"evaluation 1 is nan; expected finite accuracies"):
        best_accuracy([0.25, float("nan"), 0.5])
    with pytest.raises(ValueError, match="got no evaluations"):
        best_accuracy([])
