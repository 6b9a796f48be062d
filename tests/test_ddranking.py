"""DD-Ranking's scores: the metrics against hand computation, the command end to end, the full-data cache."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from gift_hf import create_model, protocol_config
from gift_hf.data.images import DIGITS_MEAN, DIGITS_STD
from gift_hf.evaluation.ddranking import (
    DDRankingArguments,
    augmentation_robust_score,
    best_over_learning_rates,
    ddranking_scores,
    hard_label_recovery,
    improvement_over_random,
    label_robust_score,
    mean_and_std,
    robust_score_map,
)

E, INV_E = 2.718281828459045, 0.36787944117144233


# ------------------------------------------------------------------------------ metrics
def test_hard_label_recovery_and_improvement_over_random_are_differences():
    assert hard_label_recovery(0.80, 0.50) == pytest.approx(0.30)
    assert improvement_over_random(0.60, 0.45) == pytest.approx(0.15)
    assert hard_label_recovery(0.5, 0.6) == pytest.approx(-0.1)  # a set better than full data recovers "more than all"


def test_robust_score_map_sends_minus_one_zero_one_to_zero_one_over_one_plus_e_and_one():
    assert robust_score_map(-1.0) == pytest.approx(0.0, abs=1e-15)
    assert robust_score_map(1.0) == pytest.approx(1.0)
    # (1 − 1/e) / (e − 1/e) = (e − 1) / (e² − 1) = 1 / (e + 1)
    assert robust_score_map(0.0) == pytest.approx(1 / (1 + E))


def test_label_robust_score_by_hand():
    # HLR 0.30, IOR 0.15, λ = 0.5: α = 0.5·0.15 − 0.5·0.30 = −0.075; e^−0.075 = 0.9277434863
    # LRS = (0.9277434863 − 0.3678794412) / (2.7182818285 − 0.3678794412)
    #     = 0.5598640451 / 2.3504023873 = 0.2381992327
    assert label_robust_score(0.30, 0.15) == pytest.approx(0.2381992327, abs=1e-9)
    # λ = 1 keeps IOR only: m(0.15); λ = 0 keeps −HLR only: m(−0.30)
    assert label_robust_score(0.30, 0.15, lrs_lambda=1.0) == pytest.approx((math.exp(0.15) - INV_E) / (E - INV_E))
    assert label_robust_score(0.30, 0.15, lrs_lambda=0.0) == pytest.approx((math.exp(-0.30) - INV_E) / (E - INV_E))


def test_augmentation_robust_score_by_hand():
    # gaps to random: +0.10 with augmentation, −0.02 without; β = 0.5·0.10 + 0.5·(−0.02) = 0.04
    # e^0.04 = 1.0408107742; ARS = (1.0408107742 − 0.3678794412) / 2.3504023873 = 0.2863047352
    assert augmentation_robust_score(0.10, -0.02) == pytest.approx(0.2863047352, abs=1e-9)
    assert augmentation_robust_score(0.0, 0.0) == pytest.approx(1 / (1 + E))


def test_best_over_learning_rates_skips_failed_students_and_keeps_the_first_of_ties():
    assert best_over_learning_rates({0.001: 0.2, 0.01: 0.5, 0.1: 0.5}) == (0.5, 0.01)
    assert best_over_learning_rates({0.001: math.nan, 0.01: 0.3}) == (0.3, 0.01)
    acc, lr = best_over_learning_rates({0.01: math.nan})
    assert math.isnan(acc) and lr is None


def test_mean_and_population_std():
    # values 0.1, 0.2, 0.6: mean 0.3; deviations −0.2, −0.1, 0.3 → variance (0.04 + 0.01 + 0.09) / 3
    mean, std = mean_and_std([0.1, 0.2, 0.6])
    assert mean == pytest.approx(0.3) and std == pytest.approx(math.sqrt(0.14 / 3))
    assert all(math.isnan(v) for v in mean_and_std([0.1, math.nan]))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: hard_label_recovery(80.0, 50.0), "full_data_hard: got 80.0; expected an accuracy as a fraction"),
        (lambda: improvement_over_random(0.5, 1.5), "random_soft: got 1.5"),
        (lambda: label_robust_score(0.1, 0.1, lrs_lambda=2.0), "lrs_lambda: got 2.0"),
        (lambda: protocol_config("ddranking", soft_label_source="X"), "soft_label_source: got 'X'"),
        (
            lambda: DDRankingArguments().check(protocol_config("ddranking", loss="ce")),
            "loss: got 'ce'; expected the soft-label students' loss",
        ),
        (lambda: DDRankingArguments(seeds=[0, 0]), "seeds: got \\[0, 0\\]"),
        (lambda: DDRankingArguments().check(protocol_config("ddranking", augmentation="none")), "compute_ars"),
        (lambda: DDRankingArguments(full_data_epochs=0), "full_data_epochs: got 0"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A real (untrained) ConvNet-D3 teacher saved in Hub layout: the pipeline, not its accuracy, is tested."""
    torch.manual_seed(0)
    teacher = create_model(
        "gift_convnet_d3",
        10,
        in_chans=1,
        img_size=8,
        width=8,
        image_mean=DIGITS_MEAN,
        image_std=DIGITS_STD,
        id2label={i: str(i) for i in range(10)},
    )
    path = tmp_path_factory.mktemp("ddranking") / "teacher"
    teacher.save_pretrained(path)
    return str(path)


def _tiny_argv(teacher_dir, output_dir, *extra, full_data_epochs="2"):
    return [
        "--config",
        "recipes/ddranking/cifar10_convnet3.yaml",  # the real recipe, shrunk by overrides
        "--dataset_name",
        "digits",
        "--image_column",
        "image",
        "--test_rows",
        "120",
        "--image_mean",
        str(DIGITS_MEAN[0]),
        "--image_std",
        str(DIGITS_STD[0]),
        "--teacher_model_name_or_path",
        teacher_dir,
        "--output_dir",
        str(output_dir),
        "--student_model_kwargs",
        '{"width": 8}',
        "--ipc",
        "2",
        "--learning_rates",
        "0.01",
        "0.05",
        "--seeds",
        "0",
        "1",
        "--num_train_epochs",
        "4",
        "--per_device_train_batch_size",
        "10",
        "--eval_every_epochs",
        "2",
        "--use_cpu",
        "true",
        "--full_data_epochs",
        full_data_epochs,
        "--full_data_step_size",
        "1",
        "--full_data_batch_size",
        "256",
        "--progress",
        "false",
        *extra,
    ]


def test_command_end_to_end_on_digits_writes_results_and_reuses_the_full_data_cell(teacher_dir, tmp_path):
    from gift_hf.scripts.ddranking import main

    first = main(_tiny_argv(teacher_dir, tmp_path / "random"))
    for name in ("results.json", "results.csv", "results.md", "ddranking.png"):
        assert (tmp_path / "random" / name).is_file(), name
    saved = json.loads((tmp_path / "random" / "results.json").read_text())
    # 2 rounds × 2 rates × 5 cells (distilled hard/soft/soft without aug., random soft/soft without aug.)
    assert len(saved["cells"]) == 20 and saved["settings"]["ipc"] == 2
    assert {c["cell"] for c in saved["cells"]} == {
        "distilled_hard",
        "distilled_soft",
        "distilled_soft_noaug",
        "random_soft",
        "random_soft_noaug",
    }
    # each round's scores follow from its cell accuracies
    full = saved["full_data"]["accuracy"]
    for row in saved["summary"]:
        assert row["hlr"] == pytest.approx(full - row["distilled_hard"])
        assert row["ior"] == pytest.approx(row["distilled_soft"] - row["random_soft"])
        assert row["lrs"] == pytest.approx(label_robust_score(row["hlr"], row["ior"]))
        with_gap, without_gap = row["ior"], row["distilled_soft_noaug"] - row["random_soft_noaug"]
        assert row["ars"] == pytest.approx(augmentation_robust_score(with_gap, without_gap))
        # and the cell accuracy is the best over the rates of that round's students
        hard = [
            c["best_accuracy"] for c in saved["cells"] if c["cell"] == "distilled_hard" and c["seed"] == row["seed"]
        ]
        assert row["distilled_hard"] == max(hard) and len(hard) == 2
    assert saved["scores"]["lrs_mean"] == pytest.approx(sum(r["lrs"] for r in saved["summary"]) / 2)
    assert "Label-robust score LRS" in (tmp_path / "random" / "results.md").read_text()
    assert (tmp_path / "random" / "results.csv").read_text().splitlines()[0].startswith("round,seed,full_data_hard")
    assert first.full_data["cached"] is False
    cache = first.full_data["path"]
    assert os.path.isfile(cache) and os.path.dirname(cache) == str(tmp_path / "random" / "full_data_cache")

    # A second distilled set of the same dataset (difficulty-selected) reuses the cached full-data cell.
    stamp = os.path.getmtime(cache)
    second = main(
        _tiny_argv(
            teacher_dir, tmp_path / "difficulty", "--distilled", "difficulty", "--cache_dir", str(tmp_path / "random")
        )
    )
    assert second.full_data["cached"] is True and second.full_data["path"] == cache
    assert second.full_data["accuracy"] == first.full_data["accuracy"] and os.path.getmtime(cache) == stamp
    assert not (tmp_path / "difficulty" / "full_data_cache").exists()

    # Another full-data recipe is another cell.
    third = main(
        _tiny_argv(
            teacher_dir,
            tmp_path / "longer",
            "--cache_dir",
            str(tmp_path / "random"),
            "--compute_ars",
            "false",
            full_data_epochs="3",
        )
    )
    assert third.full_data["cached"] is False and third.full_data["path"] != cache
    assert "ars_mean" not in third.scores and len(third.students) == 12  # 2 rounds × 2 rates × 3 cells


def test_unbalanced_distilled_set_is_refused(digits, teacher_dir):
    distilled = digits["train"].select(range(15))
    with pytest.raises(ValueError, match="class counts .* differ"):
        ddranking_scores(
            distilled,
            digits["train"],
            digits["test"],
            teacher_dir,
            config=protocol_config("ddranking", num_train_epochs=1, use_cpu=True),
            student_model_kwargs={"width": 8},
        )
