"""Distilled datasets in the Hub layout: schema, card, lossless round trips, atomic writes, push."""

import os
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, List, Value
from distilled_helpers import NAMES, pixel_dataset, png_bytes, rgb_dataset
from hub_double import RecordingHub

from gift_hf import DistilledInfo, load_distilled, push_distilled, save_distilled, validate_distilled

INFO = DistilledInfo(
    source_dataset="toy",
    method="random",
    ipc=2,
    teacher_id="teachers/convnet",
    teacher_checkpoint="checkpoint-40",
    teacher_epoch=4,
    teacher_architecture="gift_convnet_d3",
    soft_label_kind="probabilities",
    temperature=4.0,
    image_mean=[0.5, 0.4, 0.3],
    image_std=[0.2, 0.2, 0.2],
    seed=7,
    extra={"note": "test"},
)


def card_yaml(path: Path) -> dict:
    text = (path / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def image_bytes(ds: Dataset) -> list[bytes]:
    return [row["image"]["bytes"] for row in ds.cast_column("image", Image(decode=False))]


def test_round_trip_images_dense_fp16_labels_and_card(tmp_path):
    ds = rgb_dataset(dtype="float16")
    out = save_distilled(ds, tmp_path / "set", INFO, license="cc-by-4.0", tags=["toy"])
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "README.md",
        "data/train-00000-of-00001.parquet",
    ]

    # plain `datasets.load_dataset` reads the directory, features included
    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))["train"]
    assert loaded.features == ds.features
    assert loaded["label"] == ds["label"]
    assert image_bytes(loaded) == image_bytes(ds)  # pixels are the same PNG bytes
    np.testing.assert_array_equal(
        np.asarray(loaded["soft_label"], dtype=np.float16), np.asarray(ds["soft_label"], dtype=np.float16)
    )

    meta = card_yaml(out)
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    (split,) = meta["dataset_info"]["splits"]
    assert split["name"] == "train" and split["num_examples"] == 6 and split["num_bytes"] > 0
    assert {f["name"] for f in meta["dataset_info"]["features"]} == {"image", "label", "soft_label"}
    assert meta["license"] == "cc-by-4.0" and meta["task_categories"] == ["image-classification"]
    assert {"toy", "dataset-distillation", "random"} <= set(meta["tags"])
    assert meta["gift_hf"]["teacher_epoch"] == 4.0 and meta["gift_hf"]["extra"] == {"note": "test"}
    body = (out / "README.md").read_text()
    assert "## How it was made" in body and "expert epoch 4" in body and "T = 4.0" in body
    assert "```python" in body and "soft_label_source='dataset'" in body and "in_chans=3" in body

    dd, info = load_distilled(out, cache_dir=str(tmp_path / "cache"))
    assert info == INFO.replace(num_classes=3, image_size=[4, 4])
    assert list(dd) == ["train"] and dd["train"]["soft_label"] == loaded["soft_label"]


def test_round_trip_pixel_values_topk_splits_and_shards(tmp_path):
    train = pixel_dataset(n=6)
    topk = rgb_dataset(n=6, soft="topk", k=2)
    train = train.add_column(
        "soft_label_topk_values", topk["soft_label_topk_values"], feature=topk.features["soft_label_topk_values"]
    )
    train = train.add_column(
        "soft_label_topk_indices", topk["soft_label_topk_indices"], feature=topk.features["soft_label_topk_indices"]
    )
    dd = DatasetDict({"train": train, "test": train.select([0, 1])})
    info = DistilledInfo(method="mtt", soft_label_kind="probabilities")
    out = save_distilled(dd, tmp_path / "set", info, num_shards={"train": 2})
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
    ]
    loaded, got = load_distilled(out, cache_dir=str(tmp_path / "cache"))
    assert got.topk == 2 and got.num_classes == 3 and got.image_size == [8, 8]
    for split in ("train", "test"):
        assert loaded[split].features == dd[split].features
        for column in dd[split].column_names:
            np.testing.assert_array_equal(np.asarray(loaded[split][column]), np.asarray(dd[split][column]))


def test_distilled_info_round_trip_and_validation():
    info = DistilledInfo.from_dict({**INFO.to_dict(), "future_field": 1})
    assert info.extra == {"note": "test", "future_field": 1}
    assert DistilledInfo.from_dict(INFO.to_dict()) == INFO
    assert INFO.training_kwargs() == {"soft_label_source": "dataset", "soft_label_kind": "probabilities"}
    with pytest.raises(ValueError, match=r"soft_label_kind: got 'probs'; expected one of \('logits', 'probabil"):
        DistilledInfo(soft_label_kind="probs")
    with pytest.raises(ValueError, match=r"DistilledInfo.ipc: got 0; expected a positive integer"):
        DistilledInfo(ipc=0)


def _with(ds, column, values, feature):
    """``ds`` with ``column`` replaced by (or set to) the rows of ``values``."""
    if column in ds.column_names:
        ds = ds.remove_columns([column])
    return ds.add_column(column, list(values), feature=feature)


def _with_entry(ds, column, row, col, value, feature):
    matrix = np.asarray(ds[column])
    matrix[row, col] = value
    return _with(ds, column, matrix, feature)


DENSE = List(Value("float32"), length=3)
BAD = {
    "width": (
        lambda: _with(rgb_dataset(), "soft_label", np.ones((6, 5), "float32"), List(Value("float32"), length=5)),
        r"column 'soft_label' \(split 'train'\) has width 5; expected 3, the number of classes",
    ),
    "nan": (
        lambda: _with_entry(rgb_dataset(), "soft_label", 3, 1, np.nan, DENSE),
        r"column 'soft_label' \(split 'train'\), row 3: entry 1 is nan; expected finite values",
    ),
    "inf": (
        lambda: _with_entry(rgb_dataset(), "soft_label", 2, 0, np.inf, DENSE),
        r"column 'soft_label' \(split 'train'\), row 2: entry 0 is inf; expected finite values",
    ),
    "no_label": (
        lambda: rgb_dataset().remove_columns(["label"]),
        r"split 'train' has no 'label' column; it has columns \['image', 'soft_label'\]; expected a "
        "ClassLabel",
    ),
    "no_image": (
        lambda: rgb_dataset().remove_columns(["image"]),
        r"split 'train' has no image column: expected 'image' .* or 'pixel_values' .*; it has columns",
    ),
    "label_not_classlabel": (
        lambda: rgb_dataset().cast_column("label", Value("int64")),
        r"column 'label' \(split 'train'\) has feature Value\('int64'\); expected a "
        "ClassLabel",
    ),
    "empty": (lambda: rgb_dataset().select([]), r"split 'train' is empty \(0 rows\); expected at least one row"),
    "topk_index": (
        lambda: _with_entry(
            rgb_dataset(soft="topk", k=2), "soft_label_topk_indices", 4, 1, 7, List(Value("int16"), length=2)
        ),
        r"column 'soft_label_topk_indices' \(split 'train'\), row 4: has class index 7; expected "
        r"indices in \[0, 2\]",
    ),
    "topk_half": (
        lambda: rgb_dataset(soft="topk", k=2).remove_columns(["soft_label_topk_indices"]),
        r"has 'soft_label_topk_values' but no 'soft_label_topk_indices' column; expected both",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_datasets_are_refused_with_column_value_and_expectation(case, tmp_path):
    build, message = BAD[case]
    ds = build()
    with pytest.raises(ValueError, match=message):
        save_distilled(ds, tmp_path / "set", DistilledInfo(soft_label_kind="probabilities"))
    assert not (tmp_path / "set").exists()
    assert os.listdir(tmp_path) == []  # no temporary directory left behind


def test_soft_labels_need_a_kind_and_probabilities_are_non_negative():
    with pytest.raises(ValueError, match=r"has soft labels but DistilledInfo.soft_label_kind is None; expected one"):
        validate_distilled(rgb_dataset(), DistilledInfo())
    negative = _with(rgb_dataset(), "soft_label", -np.ones((6, 3), "float32"), DENSE)
    with pytest.raises(ValueError, match=r"row 0: has negative entries but soft_label_kind is 'probabilities'"):
        validate_distilled(negative, DistilledInfo(soft_label_kind="probabilities"))
    validate_distilled(negative, DistilledInfo(soft_label_kind="logits"))  # logits may be negative


def test_corrupt_image_bytes_are_refused(tmp_path):
    ds = rgb_dataset()
    images = [{"bytes": b, "path": None} for b in image_bytes(ds)]
    images[2] = {"bytes": b"\x89PNG\r\n\x1a\n not really a png", "path": None}
    ds = ds.remove_columns(["image"]).add_column("image", images, feature=Image())
    with pytest.raises(
        ValueError,
        match=r"column 'image' \(split 'train'\), row 2: cannot decode the image bytes "
        r".*expected an encoded image",
    ):
        save_distilled(ds, tmp_path / "set", DistilledInfo(soft_label_kind="probabilities"))


def test_corrupt_parquet_bytes_are_named(tmp_path):
    out = save_distilled(rgb_dataset(), tmp_path / "set", DistilledInfo(soft_label_kind="probabilities"))
    shard = out / "data" / "train-00000-of-00001.parquet"
    data = shard.read_bytes()
    shard.write_bytes(data[:100] + b"garbage" * 10)
    with pytest.raises(
        ValueError,
        match=r"shard 'data/train-00000-of-00001.parquet' of .* is not a readable parquet "
        r"file .*expected parquet written by save_distilled",
    ):
        load_distilled(out, cache_dir=str(tmp_path / "cache"))
    (out / "README.md").unlink()
    with pytest.raises(ValueError, match=r"has no README.md; expected a directory written by save_distilled"):
        load_distilled(out)
    with pytest.raises(FileNotFoundError, match=r"dataset '.*missing' not found: no such local file or directory"):
        load_distilled(tmp_path / "missing")


def test_existing_output_dir_is_refused_unless_overwrite_and_replaced_atomically(tmp_path):
    target = tmp_path / "set"
    info = DistilledInfo(soft_label_kind="probabilities")
    save_distilled(rgb_dataset(n=6), target, info)
    with pytest.raises(FileExistsError, match=r"output_dir '.*set' exists and is not empty; pass overwrite=True"):
        save_distilled(rgb_dataset(), target, info)
    save_distilled(rgb_dataset(n=3), target, info, overwrite=True)
    assert (target / "README.md").is_file()
    assert sorted(os.listdir(tmp_path)) == ["set"]  # temp and backup folders are gone
    ds, _ = load_distilled(target, cache_dir=str(tmp_path.parent / f"{tmp_path.name}-cache"))
    assert ds.num_rows == {"train": 3}


def test_a_failed_write_leaves_the_target_untouched(tmp_path, monkeypatch):
    import gift_hf.data.distilled.storage as storage

    target = tmp_path / "set"
    save_distilled(rgb_dataset(n=3), target, DistilledInfo(soft_label_kind="probabilities"))
    before = {p.name: p.read_bytes() for p in target.rglob("*") if p.is_file()}

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(storage, "render_card", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_distilled(rgb_dataset(n=6), target, DistilledInfo(soft_label_kind="probabilities"), overwrite=True)
    assert {p.name: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
    assert sorted(os.listdir(tmp_path)) == ["set"]


@pytest.fixture
def hub(monkeypatch):
    return RecordingHub().install(monkeypatch)


def folder_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_push_publishes_exactly_the_folder_save_distilled_writes(tmp_path, hub, capsys):
    """push_to_hub + DatasetCard leave the repo file for file as save_distilled's folder."""
    ds = DatasetDict({"train": rgb_dataset(n=6, dtype="float16"), "test": rgb_dataset(n=3, dtype="float16")})
    result = push_distilled(
        ds, "me/toy-distilled", INFO, private=True, token="hf_secret_token", commit_message="add toy", license="mit"
    )
    assert result.commit_url.startswith("https://huggingface.co/me/toy-distilled/commit/")
    assert hub.private == {"me/toy-distilled": True}
    assert [c["message"] for c in hub.commits] == ["add toy", "Dataset card with the gift_hf provenance"]
    assert set(hub.tokens) == {"hf_secret_token"}

    local = save_distilled(ds, tmp_path / "local", INFO, license="mit", repo_id="me/toy-distilled")
    assert sorted(folder_files(local)) == [
        "README.md",
        "data/test-00000-of-00001.parquet",
        "data/train-00000-of-00001.parquet",
    ]
    assert hub.files("me/toy-distilled") == folder_files(local)  # same paths, same bytes
    # and datasets reads the published files back
    (tmp_path / "mirror").mkdir()
    for name, data in hub.files("me/toy-distilled").items():
        (tmp_path / "mirror" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "mirror" / name).write_bytes(data)
    loaded, info = load_distilled(tmp_path / "mirror", cache_dir=str(tmp_path / "cache"))
    assert info == INFO.replace(num_classes=3, image_size=[4, 4])
    assert loaded["train"]["soft_label"] == ds["train"]["soft_label"]
    assert image_bytes(loaded["train"]) == image_bytes(ds["train"])
    assert 'load_distilled("me/toy-distilled")' in (tmp_path / "mirror" / "README.md").read_text()
    out = capsys.readouterr()
    assert "hf_secret_token" not in out.out + out.err


def test_a_push_replaces_the_shards_of_an_earlier_one(tmp_path, hub):
    push_distilled(rgb_dataset(n=6), "me/toy", INFO)
    first = hub.files("me/toy")
    push_distilled(DatasetDict({"train": rgb_dataset(n=3)}), "me/toy", INFO)
    local = save_distilled(rgb_dataset(n=3), tmp_path / "local", INFO, repo_id="me/toy")
    assert hub.files("me/toy") == folder_files(local) != first


def test_push_a_saved_directory(tmp_path, hub):
    local = save_distilled(rgb_dataset(), tmp_path / "local", INFO)
    push_distilled(local, "me/toy")
    assert hub.files("me/toy") == folder_files(local)
    with pytest.raises(ValueError, match=r"repo_id: got 'a/b/c'; expected 'namespace/name'"):
        push_distilled(local, "a/b/c")
    with pytest.raises(ValueError, match=r"info: a saved directory carries its own DistilledInfo"):
        push_distilled(local, "me/toy", INFO)


def test_license_comes_from_the_source(tmp_path):
    from gift_hf import build_random_distilled, load_digits_dataset

    subset, info = build_random_distilled(load_digits_dataset(), ipc=1, source_dataset="digits")
    assert card_yaml(save_distilled(subset, tmp_path / "digits", info))["license"] == "bsd-3-clause"
    source = save_distilled(rgb_dataset(), tmp_path / "source", INFO, license="cc-by-4.0")
    derived = save_distilled(rgb_dataset(), tmp_path / "derived", INFO.replace(source_dataset=str(source)))
    assert card_yaml(derived)["license"] == "cc-by-4.0"  # read from the source's card
    assert card_yaml(save_distilled(rgb_dataset(), tmp_path / "toy", INFO))["license"] == "unknown"
    assert card_yaml(save_distilled(subset, tmp_path / "given", info, license="mit"))["license"] == "mit"


def test_split_features_must_agree():
    dd = DatasetDict({"train": rgb_dataset(), "test": rgb_dataset(soft=None)})
    with pytest.raises(ValueError, match=r"split 'test' has features .* but split 'train' has .*expected the same"):
        validate_distilled(dd, DistilledInfo(soft_label_kind="logits"))


def test_image_paths_are_embedded_in_the_shards(tmp_path):
    """Images given as file paths end up inside the parquet file (the set is self-contained)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    paths = []
    for i in range(3):
        path = folder / f"{i}.png"
        path.write_bytes(png_bytes(np.full((4, 4), 40 * i, np.uint8)))
        paths.append(str(path))
    ds = Dataset.from_dict(
        {"image": paths, "label": [0, 1, 2]}, features=Features({"image": Image(), "label": ClassLabel(names=NAMES)})
    )
    out = save_distilled(ds, tmp_path / "set")
    shutil.rmtree(folder)
    loaded, _ = load_distilled(out, cache_dir=str(tmp_path / "cache"))
    assert [int(np.asarray(img).mean()) for img in loaded["train"]["image"]] == [0, 40, 80]


def test_the_cards_training_snippet_runs(tmp_path):
    """The card's example trains a student on the set as written (2 steps here)."""
    import re

    ds = rgb_dataset(n=6, size=8)
    out = save_distilled(ds, tmp_path / "set", INFO.replace(image_mean=None, image_std=None), repo_id="me/toy")
    code = re.search(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S).group(1)
    code = code.replace('load_distilled("me/toy")', f"load_distilled({str(out)!r}, cache_dir={str(tmp_path / 'c')!r})")
    code = code.replace('output_dir="student"', f"output_dir={str(tmp_path / 'student')!r}, max_steps=2, use_cpu=True")
    code = code.replace(
        "GIFTTrainer(model=model, args=args, train_dataset=train).train()",
        "trainer = GIFTTrainer(model=model, args=args, train_dataset=train)\ntrainer.train()",
    )
    assert "max_steps=2" in code and "trainer.train()" in code and "image_transform_for(model)" in code
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["trainer"].state.global_step == 2 and namespace["model"].config.model_args["img_size"] == 8
