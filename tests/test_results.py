"""The digit-pair benchmark, the results pages' provenance and `make results` at its `ci` size."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gift_hf.data.images import (
    DIGIT_PAIRS_MEAN,
    DIGIT_PAIRS_STD,
    DataArguments,
    build_image_transform,
    load_digit_pairs_dataset,
    load_digits_dataset,
    load_image_dataset,
)
from gift_hf.engine.config import PROTOCOLS
from gift_hf.studies.results import PAGES, page_provenance, replace_block, run_results, stale_protocol_fields

REPO = Path(__file__).resolve().parents[1]


def _arrays(split):
    return np.stack([np.asarray(image) for image in split["image"]])


@pytest.fixture(scope="module")
def pairs():
    return load_digit_pairs_dataset(train_per_class=4, test_per_class=2, seed=3)


def test_digit_pairs_shapes_classes_and_labels(pairs):
    assert (len(pairs["train"]), len(pairs["test"])) == (400, 200)
    names = pairs["train"].features["label"].names
    assert len(names) == 100 and names[0] == "00" and names[57] == "57"
    assert pairs["train"].info.license == "bsd-3-clause"
    images = _arrays(pairs["train"])
    assert images.shape == (400, 16, 16) and images.dtype == np.uint8
    assert pairs["train"][0]["image"].mode == "L"
    assert np.bincount(pairs["train"]["label"], minlength=100).tolist() == [4] * 100
    # rows 0-3 and 12-15 are blank, the digits sit in rows 4-11
    assert images[:, :4].max() == 0 and images[:, 12:].max() == 0
    # label 10·a + b: the left half is a digits image of class a, the right half one of class b
    digits = load_digits_dataset()["train"]
    by_bytes = {}
    for image, label in zip(_arrays(digits), digits["label"]):
        by_bytes.setdefault(image.tobytes(), set()).add(label)
    for image, label in zip(images, pairs["train"]["label"]):
        assert label // 10 in by_bytes[image[4:12, :8].tobytes()]
        assert label % 10 in by_bytes[image[4:12, 8:].tobytes()]


def test_digit_pairs_are_deterministic_and_seeded(pairs):
    again = load_digit_pairs_dataset(train_per_class=4, test_per_class=2, seed=3)
    assert np.array_equal(_arrays(pairs["train"]), _arrays(again["train"]))
    assert np.array_equal(_arrays(pairs["test"]), _arrays(again["test"]))
    other = load_digit_pairs_dataset(train_per_class=4, test_per_class=2, seed=4)
    assert not np.array_equal(_arrays(pairs["train"]), _arrays(other["train"]))
    # the test split does not move when the training split grows
    bigger = load_digit_pairs_dataset(train_per_class=5, test_per_class=2, seed=3)
    assert np.array_equal(_arrays(pairs["test"]), _arrays(bigger["test"]))


def test_digit_pairs_do_not_leak_test_digits_into_training(pairs):
    digits = load_digits_dataset()
    train_digits = {image.tobytes() for image in _arrays(digits["train"])}
    test_digits = {image.tobytes() for image in _arrays(digits["test"])}
    halves = {
        split: {h.tobytes() for image in _arrays(pairs[split]) for h in (image[4:12, :8], image[4:12, 8:])}
        for split in ("train", "test")
    }
    assert halves["train"] <= train_digits and halves["test"] <= test_digits
    # no digit image of a test pair is also a training digit (nor one used by a training pair)
    assert not halves["test"] & train_digits and not halves["test"] & halves["train"]


def test_digit_pairs_by_name_and_bad_sizes():
    data = load_image_dataset(DataArguments(dataset_name="digit_pairs"))
    assert (len(data["train"]), len(data["eval"])) == (3000, 1000)
    transform = build_image_transform(DataArguments(dataset_name="digit_pairs"), channels=1)
    assert (tuple(transform.mean), tuple(transform.std)) == (DIGIT_PAIRS_MEAN, DIGIT_PAIRS_STD)
    # the recorded statistics are those of the default training split
    pixels = _arrays(data["train"]) / 255.0
    assert abs(pixels.mean() - DIGIT_PAIRS_MEAN[0]) < 1e-3 and abs(pixels.std() - DIGIT_PAIRS_STD[0]) < 1e-3
    with pytest.raises(ValueError, match="train_per_class: got 0; expected a positive"):
        load_digit_pairs_dataset(train_per_class=0)


def test_replace_block_keeps_the_text_around_it_and_refuses_bad_markers():
    text = "a\n<!-- results:begin x -->\nold\n<!-- results:end x -->\nb\n"
    assert replace_block(text, "x", "new") == "a\n<!-- results:begin x -->\nnew\n<!-- results:end x -->\nb\n"
    with pytest.raises(ValueError, match="expected one '<!-- results:begin y -->'"):
        replace_block(text, "y", "new")


@pytest.mark.parametrize("page", PAGES)
def test_recorded_protocol_matches_the_presets(page):
    """The pages' numbers came from today's protocol; else rerun `make results`."""
    text = (REPO / "docs" / page).read_text()
    recorded = page_provenance(text)
    assert recorded["size"] != "ci" and recorded["protocol"] in PROTOCOLS
    assert set(recorded["versions"]) >= {"torch", "transformers", "timm", "datasets", "gift_hf"}
    stale = stale_protocol_fields(text)
    assert not stale, f"docs/{page} was made with other settings {stale} (recorded, now): run `make results`"


def test_a_changed_preset_or_record_is_reported(monkeypatch):
    text = (REPO / "docs" / "when-gift-helps.md").read_text()
    recorded = page_provenance(text)
    monkeypatch.setitem(PROTOCOLS, recorded["protocol"], {**PROTOCOLS[recorded["protocol"]], "lr_decay": 0.5})
    assert stale_protocol_fields(text) == {"lr_decay": (0.2, 0.5)}
    monkeypatch.undo()
    edited = text.replace('"learning_rate": 0.001', '"learning_rate": 0.002', 1)
    assert stale_protocol_fields(edited) == {"learning_rate": (0.002, 0.001)}
    with pytest.raises(ValueError, match="no provenance block"):
        page_provenance("# a page\n")


def test_make_results_ci_size_end_to_end(tmp_path):
    """Every step of `make results` at the `ci` size, into a copy of the pages (docs/ untouched)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    originals = {page: (REPO / "docs" / page).read_text() for page in PAGES}
    for page in PAGES:
        shutil.copy(REPO / "docs" / page, docs / page)
    result = run_results("ci", str(tmp_path / "out"), str(docs), repo=str(REPO))
    assert {(source, ipc) for source, ipc in result["summaries"]} == {
        (s, i) for s in ("random", "rded") for i in (1, 2)
    }
    for page in PAGES:
        text = (docs / page).read_text()
        assert "(run `make results`)" not in text and "a smoke run" in text
        recorded = page_provenance(text)
        assert recorded["size"] == "ci" and recorded["overrides"]["max_steps"] == 2
        assert stale_protocol_fields(text) == {}
        assert (REPO / "docs" / page).read_text() == originals[page]
    helps = (docs / "when-gift-helps.md").read_text()
    assert "| rded | 2 |" in helps and "GIFT − KL: GIFT is ahead in" in helps
    assert "| ce |" in (docs / "results.md").read_text()
    for plot in ("when_gift_helps.png", "digit_pairs_loss_optimizer.png"):
        assert (docs / "assets" / "results" / plot).read_bytes()[:4] == b"\x89PNG"
    # the loss benchmark's own files, one per set: 2 optimizers × (3 losses, + ce on random) × 1 seed
    cells = json.loads((tmp_path / "out" / "ci" / "random_ipc1" / "results.json").read_text())["cells"]
    assert len(cells) == 8
    # a second run reuses every cell and the teacher
    again = run_results("ci", str(tmp_path / "out"), str(docs), repo=str(REPO))
    assert again["teacher_accuracy"] == result["teacher_accuracy"]


def test_distill_takes_digit_pairs_by_name(tmp_path):
    from gift_hf.data.distilled import load_distilled
    from gift_hf.scripts import distill

    distill.main(["random", "--dataset_name", "digit_pairs", "--ipc", "1", "--output_dir", str(tmp_path / "set")])
    dataset, info = load_distilled(str(tmp_path / "set"))
    assert len(dataset["train"]) == 100 and info.num_classes == 100 and info.source_dataset == "digit_pairs"
    assert dataset["train"][0]["image"].size == (16, 16)
