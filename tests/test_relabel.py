"""Teacher relabelling on real digits: soft labels equal the teacher's outputs, ensembles, top-k, expert epochs."""

import json

import numpy as np
import pytest
import torch
from distilled_helpers import digits_pixels, digits_teacher

from gift_hf import keep_topk, load_distilled, load_teacher, model_spec, relabel, save_distilled
from gift_hf.data.images import DIGITS_MEAN, densify_topk
from gift_hf.data.relabel import resolve_expert_checkpoint


@pytest.fixture(scope="module")
def split(digits):
    return digits["test"].select(range(40))


def by_hand(teacher, split):
    with torch.no_grad():
        return teacher(pixel_values=digits_pixels(split)).logits


def test_probabilities_at_temperature_equal_the_teachers_softmax(split):
    teacher = digits_teacher()
    teacher.train()  # relabelling uses eval mode and gives the model back as it was
    ds, info = relabel(split, teacher, output="probabilities", temperature=4.0, batch_size=16, progress=False)
    assert teacher.training
    expected = torch.softmax(by_hand(teacher.eval(), split) / 4.0, dim=1)
    np.testing.assert_allclose(np.asarray(ds["soft_label"]), expected.numpy(), rtol=1e-5, atol=1e-7)
    assert ds["label"] == split["label"]
    assert (info.soft_label_kind, info.temperature, info.topk, info.num_classes) == ("probabilities", 4.0, None, 10)
    assert info.teacher_architecture == "gift_convnet_d3" and info.image_mean == [pytest.approx(DIGITS_MEAN[0])]


def test_logits_in_float16_equal_the_teachers_logits(split):
    teacher = digits_teacher(seed=1)
    ds, info = relabel(split, teacher, output="logits", dtype="float16", progress=False)
    assert ds.features["soft_label"].feature.dtype == "float16"
    expected = by_hand(teacher, split).half().numpy()
    np.testing.assert_array_equal(np.asarray(ds["soft_label"], dtype=np.float16), expected)
    assert info.soft_label_kind == "logits" and info.temperature is None


def test_ensemble_averages_logits_before_the_softmax(split, tmp_path):
    first, second = digits_teacher(seed=1), digits_teacher(seed=2)
    second.save_pretrained(tmp_path / "second")  # a saved directory works as well as an instance
    ds, info = relabel(split, [first, str(tmp_path / "second")], temperature=2.0, progress=False)
    average = (by_hand(first, split) + by_hand(second, split)) / 2
    np.testing.assert_allclose(
        np.asarray(ds["soft_label"]), torch.softmax(average / 2.0, 1).numpy(), rtol=1e-5, atol=1e-7
    )
    assert info.teacher_id == ["TimmWrapperForImageClassification", str(tmp_path / "second")]


def test_sparse_topk_reproduces_the_dense_topk_tensor_and_round_trips(split, tmp_path):
    teacher = digits_teacher(seed=4)
    dense, _ = relabel(split, teacher, progress=False)
    sparse, info = relabel(split, teacher, topk=3, progress=False)
    assert "soft_label" not in sparse.column_names and info.topk == 3
    assert sparse.features["soft_label_topk_indices"].feature.dtype == "int16"
    values = torch.tensor(sparse["soft_label_topk_values"])
    assert bool((values[:, :-1] >= values[:, 1:]).all())  # stored largest first
    rebuilt = densify_topk(values, torch.tensor(sparse["soft_label_topk_indices"]), 10)
    torch.testing.assert_close(rebuilt, keep_topk(torch.tensor(dense["soft_label"]), 3))
    out = save_distilled(sparse, tmp_path / "set", info)
    loaded, loaded_info = load_distilled(out, cache_dir=str(tmp_path / "cache"))
    assert loaded_info == info.replace(image_size=[8, 8])
    assert loaded["train"]["soft_label_topk_indices"] == sparse["soft_label_topk_indices"]


def test_relabel_replaces_previous_soft_labels_in_every_split(digits):
    from datasets import DatasetDict

    small = DatasetDict({name: ds.select(range(12)) for name, ds in digits.items()})
    labelled, _ = relabel(small, digits_teacher(), topk=2, progress=False)
    relabelled, info = relabel(labelled, digits_teacher(seed=9), progress=False)
    for name in ("train", "test"):
        assert relabelled[name].column_names == ["image", "label", "soft_label"]
        np.testing.assert_allclose(np.asarray(relabelled[name]["soft_label"]).sum(1), 1.0, rtol=1e-5)
    assert info.topk is None


def test_synthetic_float_pixel_values_are_fed_as_stored():
    from distilled_helpers import pixel_dataset

    from gift_hf import create_model

    ds = pixel_dataset(n=6)  # already-normalised float images: no transform is applied
    torch.manual_seed(0)
    teacher = create_model("gift_convnet_d3", num_classes=3, in_chans=1, img_size=8)
    labelled, info = relabel(ds, teacher, output="logits", progress=False)
    with torch.no_grad():
        expected = teacher(pixel_values=torch.tensor(np.asarray(ds["pixel_values"], dtype=np.float32))).logits
    np.testing.assert_allclose(np.asarray(labelled["soft_label"]), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert info.image_mean is None  # pixel_values carry their own normalisation


def test_relabel_errors(split):
    teacher = digits_teacher()
    with pytest.raises(
        ValueError,
        match=r"temperature: got 4.0 with output='logits'; a temperature applies to "
        r"output='probabilities'",
    ):
        relabel(split, teacher, output="logits", temperature=4.0)
    with pytest.raises(ValueError, match=r"topk: got 11; expected 1 <= k <= 10 \(the number of classes\)"):
        relabel(split, teacher, topk=11)
    with pytest.raises(
        ValueError,
        match=r"teacher 'TimmWrapperForImageClassification' has 10 classes but column 'label' has 3; "
        "expected the same label set",
    ):
        from datasets import ClassLabel

        relabel(
            split.filter(lambda r: r["label"] < 3).cast_column("label", ClassLabel(names=["0", "1", "2"])),
            teacher,
            progress=False,
        )
    with pytest.raises(ValueError, match=r"dtype: got 'bfloat16'; expected one of \('float32', 'float16'\)"):
        relabel(split, teacher, dtype="bfloat16")
    with pytest.raises(ValueError, match=r"expert_epoch needs teachers given as Trainer output directories"):
        relabel(split, teacher, expert_epoch=1)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """``gift-hf train-teacher`` on 64 digits for 2 epochs: one checkpoint per epoch."""
    from gift_hf.scripts import train_teacher

    out = tmp_path_factory.mktemp("teacher") / "run"
    rows = train_teacher.main(
        [
            "--output_dir",
            str(out),
            "--max_train_samples",
            "64",
            "--max_eval_samples",
            "50",
            "--num_train_epochs",
            "2",
            "--per_device_train_batch_size",
            "32",
            "--use_cpu",
            "--disable_tqdm",
            "true",
            "--seed",
            "0",
        ]
    )
    return out, rows


def test_train_teacher_keeps_a_checkpoint_per_epoch(teacher_run):
    out, rows = teacher_run
    assert [(r["epoch"], r["checkpoint"]) for r in rows] == [(1.0, "checkpoint-2"), (2.0, "checkpoint-4")]
    assert all(0.0 <= r["eval_accuracy"] <= 1.0 for r in rows)
    assert json.loads((out / "expert_epochs.json").read_text()) == rows
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    final = load_teacher(out)
    spec = model_spec(final)
    assert spec["image_mean"] == [pytest.approx(DIGITS_MEAN[0])] and spec["in_chans"] == 1


def test_expert_epoch_uses_that_checkpoint(teacher_run, split):
    out, _ = teacher_run
    assert resolve_expert_checkpoint(out, 1) == out / "checkpoint-2"
    ds, info = relabel(split, str(out), output="logits", expert_epoch=1, progress=False)
    early = by_hand(load_teacher(out / "checkpoint-2"), split)
    late = by_hand(load_teacher(out / "checkpoint-4"), split)
    np.testing.assert_allclose(np.asarray(ds["soft_label"]), early.numpy(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(early, late)
    assert (info.teacher_epoch, info.teacher_checkpoint, info.teacher_id) == (1.0, "checkpoint-2", str(out))
    with pytest.raises(
        ValueError,
        match=r"expert_epoch=3: no checkpoint of that epoch in '.*run'; expected one of the "
        r"saved epochs: 1 \(checkpoint-2\), 2 \(checkpoint-4\)",
    ):
        relabel(split, str(out), expert_epoch=3)
