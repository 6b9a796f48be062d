"""DD-Ranking's tensor API (LabelRobustScoreSoft/Hard.compute_metrics) on tiny tensors."""

import math

import numpy as np
import pytest
import torch

from gift_hf import create_model, load_digits_dataset
from gift_hf.data.images import DIGITS_MEAN, DIGITS_STD
from gift_hf.engine.config import protocol_config
from gift_hf.evaluation.ddranking import DDRankingArguments, label_robust_score
from gift_hf.evaluation.ddranking_api import (
    DDRankingConfig,
    LabelRobustScoreHard,
    LabelRobustScoreSoft,
    tensor_dataset,
)
from gift_hf.models.modeling import image_transform_for


@pytest.fixture(scope="module")
def setup():
    data = load_digits_dataset()
    torch.manual_seed(0)
    teacher = create_model(
        "gift_convnet_d3", 10, in_chans=1, img_size=8, width=8, image_mean=DIGITS_MEAN, image_std=DIGITS_STD
    ).eval()
    transform = image_transform_for(teacher)
    # the distilled "images": 2 real images per class, normalised as the students' input, ordered by class
    labels = data["train"]["label"]
    rows = [i for c in range(10) for i in [j for j, y in enumerate(labels) if y == c][:2]]
    images = torch.stack(transform({"image": data["train"].select(rows)["image"]})["pixel_values"])
    tiny = dict(
        args=DDRankingArguments(
            learning_rates=[0.01],
            seeds=[0],
            compute_ars=False,
            full_data_epochs=1,
            full_data_step_size=1,
            full_data_batch_size=256,
        ),
        student_config=protocol_config(
            "ddranking", num_train_epochs=2, per_device_train_batch_size=10, eval_every_epochs=1, use_cpu=True
        ),
        student_model_kwargs={"width": 8},
    )
    real_train = data["train"].select(range(200))
    return data, teacher, transform, images, tiny, real_train


def test_tensor_dataset_is_in_ddranking_class_order():
    images = torch.arange(6 * 1 * 2 * 2, dtype=torch.float32).reshape(6, 1, 2, 2)
    ds = tensor_dataset(images, 3, soft_labels=torch.eye(3).repeat_interleave(2, 0))
    assert ds["label"] == [0, 0, 1, 1, 2, 2] and ds.features["label"].num_classes == 3
    assert torch.equal(torch.from_numpy(np.stack(ds.with_format("numpy")["pixel_values"])), images)
    assert ds["soft_label"][2] == [0.0, 1.0, 0.0]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: tensor_dataset(torch.zeros(3, 4, 4), 3), r"image_tensor: got \(3, 4, 4\); expected a tensor of shape"),
        (lambda: tensor_dataset(torch.zeros(5, 1, 2, 2), 3), "image_tensor: got 5 images for 3 classes"),
        (lambda: tensor_dataset(torch.full((3, 1, 2, 2), math.nan), 3), "image_tensor: contains NaN"),
        (lambda: tensor_dataset(torch.zeros(3, 1, 2, 2), 3, torch.zeros(3, 4)), r"soft_labels: got \(3, 4\); expected"),
    ],
)
def test_bad_tensors_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_config_errors_are_named(setup):
    data, teacher, transform, images, tiny, real_train = setup
    with pytest.raises(ValueError, match="real_train: got list"):
        DDRankingConfig(real_train=[], real_test=data["test"])
    scorer = LabelRobustScoreSoft({"real_train": real_train, "real_test": data["test"]})  # a dict, like DD-Ranking's
    assert scorer.config.num_classes == 10
    with pytest.raises(ValueError, match="teacher: got None; the soft-label score needs a teacher"):
        scorer.compute_metrics(images)
    scorer = LabelRobustScoreSoft(DDRankingConfig(real_train, data["test"], teacher=teacher, **tiny))
    with pytest.raises(ValueError, match="syn_lr: got -1"):
        scorer.compute_metrics(images, syn_lr=-1)
    online = DDRankingConfig(
        real_train,
        data["test"],
        teacher=teacher,
        student_config=protocol_config("ddranking", soft_label_source="teacher"),
    )
    with pytest.raises(ValueError, match="soft_labels: given, but student_config.soft_label_source is 'teacher'"):
        LabelRobustScoreSoft(online).compute_metrics(images, soft_labels=torch.zeros(20, 10))
    with pytest.raises(ValueError, match="soft_labels: the hard-label score trains on hard labels only"):
        LabelRobustScoreHard(scorer.config).compute_metrics(images, soft_labels=torch.zeros(20, 10))


def test_soft_score_of_a_tensor_matches_its_cells(setup, tmp_path):
    data, teacher, transform, images, tiny, real_train = setup
    scorer = LabelRobustScoreSoft(
        DDRankingConfig(real_train, data["test"].select(range(100)), teacher=teacher, cache_dir=str(tmp_path), **tiny)
    )
    out = scorer.compute_metrics(images, syn_lr=0.05)
    assert set(out) == {
        f"{m}_{s}"
        for m in ("hard_label_recovery", "improvement_over_random", "label_robust_score")
        for s in ("mean", "std")
    }
    (row,) = scorer.result.rounds
    assert scorer.result.settings["ipc"] == 2
    assert out["hard_label_recovery_mean"] == pytest.approx(row["full_data_hard"] - row["distilled_hard"])
    assert out["improvement_over_random_mean"] == pytest.approx(row["distilled_soft"] - row["random_soft"])
    assert out["label_robust_score_mean"] == pytest.approx(
        label_robust_score(out["hard_label_recovery_mean"], out["improvement_over_random_mean"])
    )
    assert 0 <= out["label_robust_score_mean"] <= 1 and out["label_robust_score_std"] == 0.0  # one round
    assert row["distilled_soft_lr"] == 0.05  # syn_lr: the distilled set's soft-label students use it


def test_soft_score_uses_the_sets_own_soft_labels(setup, tmp_path, monkeypatch):
    data, teacher, transform, images, tiny, real_train = setup
    config = DDRankingConfig(
        real_train, data["test"].select(range(100)), teacher=teacher, cache_dir=str(tmp_path), **tiny
    )
    own = torch.eye(10).repeat_interleave(2, 0) * 5  # one-hot-like logits: not the teacher's
    import gift_hf.evaluation.ddranking as ddranking

    seen = {}
    real = ddranking.ddranking_scores

    def spy(distilled, *args, **kwargs):
        seen["soft_label"] = distilled["soft_label"]
        return real(distilled, *args, **kwargs)

    monkeypatch.setattr("gift_hf.evaluation.ddranking_api.ddranking_scores", spy)
    out = LabelRobustScoreSoft(config).compute_metrics(images, soft_labels=own)
    assert torch.equal(torch.tensor(seen["soft_label"]), own)  # the set's labels reach the students
    assert 0 <= out["label_robust_score_mean"] <= 1


def test_hard_score_needs_no_teacher(setup, tmp_path):
    data, teacher, transform, images, tiny, real_train = setup
    config = DDRankingConfig(
        real_train,
        data["test"].select(range(100)),
        student_arch="gift_convnet_d3",
        transform=transform,
        cache_dir=str(tmp_path),
        **tiny,
    )
    scorer = LabelRobustScoreHard(config)
    out = scorer.compute_metrics(images)
    (row,) = scorer.result.rounds
    assert out["improvement_over_random_mean"] == pytest.approx(row["distilled_hard"] - row["random_hard"])
