"""Selection baselines on the real digits: class-balanced random subsets and teacher-difficulty bands."""

from collections import Counter

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Value
from distilled_helpers import digits_pixels, digits_teacher

from gift_hf import build_difficulty_distilled, build_random_distilled
from gift_hf.data.selection import teacher_cross_entropy


def test_random_subset_is_class_balanced_and_seed_reproducible(digits):
    subset, info = build_random_distilled(digits, ipc=3, seed=5, source_dataset="digits")
    assert Counter(subset["label"]) == {c: 3 for c in range(10)}
    again, _ = build_random_distilled(digits["train"], ipc=3, seed=5)
    other, _ = build_random_distilled(digits, ipc=3, seed=6)
    rows = lambda ds: [np.asarray(img).tobytes() for img in ds["image"]]  # noqa: E731
    assert rows(subset) == rows(again)
    assert rows(subset) != rows(other)
    assert subset.features == digits["train"].features
    assert (info.method, info.ipc, info.seed, info.num_classes, info.source_dataset) == ("random", 3, 5, 10, "digits")


def test_selected_rows_are_real_rows_of_the_split(digits):
    subset, _ = build_random_distilled(digits, ipc=2, seed=0, split="test")
    pool = {np.asarray(img).tobytes(): label for img, label in zip(digits["test"]["image"], digits["test"]["label"])}
    assert all(pool[np.asarray(img).tobytes()] == label for img, label in zip(subset["image"], subset["label"]))


def test_ipc_larger_than_a_class_is_refused(digits):
    small = digits["train"].select(range(40))
    counts = np.bincount(small["label"], minlength=10)
    cls = int(np.argmin(counts))
    with pytest.raises(
        ValueError,
        match=rf"ipc: class {cls} \('{cls}'\) has {counts[cls]} images but ipc=50 were "
        rf"requested; expected ipc <= {counts.min()}",
    ):
        build_random_distilled(small, ipc=50)


def test_a_class_with_no_rows_is_refused_and_other_bad_input():
    ds = Dataset.from_dict(
        {"x": [0, 1, 2, 3], "target": [0, 0, 2, 2]},
        features=Features({"x": Value("int64"), "target": ClassLabel(names=["a", "b", "c"])}),
    )
    with pytest.raises(ValueError, match=r"ipc: class 1 \('b'\) has 0 images but ipc=1 were requested"):
        build_random_distilled(ds, ipc=1, label_column="target")
    with pytest.raises(ValueError, match=r"ipc: got 0; expected a positive integer"):
        build_random_distilled(ds, ipc=0, label_column="target")
    with pytest.raises(ValueError, match=r"dataset has no 'label' column \(label_column\); it has columns"):
        build_random_distilled(ds, ipc=1)
    with pytest.raises(ValueError, match=r"dataset is empty \(0 rows\)"):
        build_random_distilled(ds.select([]), ipc=1, label_column="target")


def test_label_column_is_renamed_to_label():
    ds = Dataset.from_dict(
        {"x": [0, 1, 2, 3], "target": [0, 1, 0, 1]},
        features=Features({"x": Value("int64"), "target": ClassLabel(names=["a", "b"])}),
    )
    subset, _ = build_random_distilled(ds, ipc=1, label_column="target", seed=0)
    assert subset.column_names == ["x", "label"] and sorted(subset["label"]) == [0, 1]


def test_difficulty_selection_picks_from_the_teacher_ce_band(digits):
    split = digits["test"].select(range(200))
    teacher = digits_teacher(seed=3)
    # the teacher's CE by hand: its logits on the normalised pixels, CE on the true labels
    with torch.no_grad():
        logits = teacher(pixel_values=digits_pixels(split)).logits
    labels = torch.tensor(split["label"])
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none").numpy()
    np.testing.assert_allclose(teacher_cross_entropy(split, teacher, progress=False), ce, rtol=1e-5, atol=1e-6)

    band = (0.0, 0.25)
    subset, info = build_difficulty_distilled(split, 2, teacher, band=band, seed=1, progress=False)
    assert Counter(subset["label"]) == {c: 2 for c in range(10)}
    pool = {np.asarray(img).tobytes(): i for i, img in enumerate(split["image"])}
    picked = [pool[np.asarray(img).tobytes()] for img in subset["image"]]
    for i in picked:  # every pick is among the easiest quarter of its class
        same = np.flatnonzero(labels.numpy() == labels[i].item())
        rank = int((ce[same] < ce[i]).sum())
        assert rank < np.ceil(0.25 * len(same))
    assert info.method == "difficulty" and info.extra["band"] == [0.0, 0.25]
    hard, _ = build_difficulty_distilled(split, 2, teacher, band=(0.75, 1.0), seed=1, progress=False)
    assert np.mean([ce[pool[np.asarray(img).tobytes()]] for img in hard["image"]]) > ce[picked].mean()


def test_difficulty_band_errors(digits):
    split = digits["test"].select(range(100))
    teacher = digits_teacher()
    with pytest.raises(ValueError, match=r"band: got \(0.5, 0.2\); expected \(low, high\) with 0 <= low < high <= 1"):
        build_difficulty_distilled(split, 1, teacher, band=(0.5, 0.2))
    with pytest.raises(
        ValueError,
        match=r"band: class \d+ has \d images in quantile band \(0.0, 0.05\) .* but ipc=5 "
        r"were requested; expected a wider band or a smaller ipc",
    ):
        build_difficulty_distilled(split, 5, teacher, band=(0.0, 0.05), progress=False)
