"""No file a user owns is overwritten, and no error is a raw traceback or a misleading message.

Each test runs one case of the hostile matrix (docs/reliability.md) through the real command
(`gift_hf.cli.main`, or a subprocess) or the real writer, and checks the exit status, that the
message is one line naming the file or option, and that no traceback and no token is printed.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image
from PIL import Image as PILImage

from gift_hf import create_model
from gift_hf.cli import main
from gift_hf.files import MANIFEST, DiskFullError, NotOwnedError, check_saved_files, owned_by_gift_hf, write_output_text

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_" + "Zq7" * 8  # looks like a Hub token: must never be printed


def one_line_error(err: str, command: str) -> str:
    """The error line of a `gift-hf <command>` failure, checked: one line, no traceback."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err and TOKEN not in err, err
    assert lines[-1] == "(set GIFT_HF_DEBUG=1 for the traceback)", err
    errors = [line for line in lines if line.startswith(f"gift-hf {command}: error: ")]
    assert len(errors) == 1, err
    return errors[0]


def tiny_teacher(path: Path, num_classes: int = 10, in_chans: int = 1) -> str:
    create_model("gift_convnet_d3", num_classes=num_classes, in_chans=in_chans, img_size=8, width=4).save_pretrained(
        path
    )
    return str(path)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------ Lost
def test_a_command_never_overwrites_results_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "p"
    out.mkdir()
    mine = {name: f"my own {name}\n" for name in ("results.md", "results.csv", "results.json")}
    for name, text in mine.items():
        (out / name).write_text(text)
    teacher = tiny_teacher(tmp_path / "teacher5", num_classes=5)  # fails later, after the output check
    commands = (["ddranking", "--teacher_model_name_or_path", teacher], ["evaluate", "--distilled", "./no_such_set"])
    for command in commands:
        assert main([*command, "--output_dir", str(out)]) == 2
        line = one_line_error(capsys.readouterr().err, command[0])
        assert "already exists and was not written by gift_hf" in line and "--overwrite_output_dir" in line
        assert str(out / "results.") in line
        assert {name: (out / name).read_text() for name in mine} == mine  # untouched
    # --overwrite_output_dir lets the command past the check (here it stops at the 5-class teacher)
    assert (
        main(["ddranking", "--teacher_model_name_or_path", teacher, "--output_dir", str(out), "--overwrite_output_dir"])
        == 2
    )
    assert "has 5 classes" in one_line_error(capsys.readouterr().err, "ddranking")


def test_the_shared_writer_keeps_a_manifest_of_what_it_wrote(tmp_path):
    from gift_hf.studies.report import pyplot, save_figure, write_results

    out = tmp_path / "study"
    files = write_results(str(out), "s", settings={}, records=[], summary=[{"a": 1.0}], table="| a |")
    assert json.loads((out / "results.json").read_text())["summary"] == [{"a": 1.0}]
    assert all(owned_by_gift_hf(p) for p in files.values())
    assert set(json.loads((out / MANIFEST).read_text())) == {"results.json", "results.csv", "results.md"}
    # a second run of its own replaces them
    write_results(str(out), "s", settings={}, records=[], summary=[{"a": 2.0}], table="| a |")
    assert json.loads((out / "results.json").read_text())["summary"] == [{"a": 2.0}]
    # a file the user edited since is theirs now: nothing of the three is written
    (out / "results.md").write_text("my notes\n")
    with pytest.raises(NotOwnedError, match=r"results\.md already exists and was changed since gift_hf wrote it"):
        write_results(str(out), "s", settings={}, records=[], summary=[{"a": 3.0}], table="| b |")
    assert json.loads((out / "results.json").read_text())["summary"] == [{"a": 2.0}]
    assert (out / "results.md").read_text() == "my notes\n"
    # plots and model cards go through the same writer
    (out / "plot.png").write_bytes(b"user's picture")
    plt = pyplot()
    with pytest.raises(NotOwnedError, match=r"plot\.png already exists and was not written by gift_hf"):
        save_figure(plt.figure(), str(out / "plot.png"))
    assert (out / "plot.png").read_bytes() == b"user's picture"
    from gift_hf.hub.model_card import write_model_card

    (out / "README.md").write_text("my readme")
    with pytest.raises(NotOwnedError, match=r"README\.md"):
        write_model_card("card", out)
    assert write_output_text(out / "README.md", "card", overwrite=True) == str(out / "README.md")
    assert (out / "README.md").read_text() == "card" and owned_by_gift_hf(out / "README.md")


# ------------------------------------------------------------------------ Ugly: files
def _file_backed_digits(tmp_path: Path, digits) -> Dataset:
    digits["train"].select(range(24)).to_parquet(str(tmp_path / "digits.parquet"))
    return Dataset.from_parquet(str(tmp_path / "digits.parquet"), cache_dir=str(tmp_path / "hf_cache"))


def test_a_corrupt_decode_cache_file_is_rebuilt_with_one_warning(tmp_path, digits, digits_transform, caplog):
    from gift_hf.data.device import decode_dataset, decoded_cache_path

    data = _file_backed_digits(tmp_path, digits)
    cache = str(tmp_path / "decoded")
    first = decode_dataset(data, digits_transform, cache_dir=cache, num_classes=10)
    path = decoded_cache_path(data, digits_transform, cache, "label", "soft_label")
    blob = Path(path).read_bytes()
    Path(path).write_bytes(blob[: len(blob) // 3])  # truncated, as by a killed copy
    with caplog.at_level(logging.WARNING, logger="gift_hf.data.device"):
        again = decode_dataset(data, digits_transform, cache_dir=cache, num_classes=10)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and path in warnings[0] and "decoding the dataset again" in warnings[0]
    assert torch.equal(again["pixel_values"], first["pixel_values"]) and torch.equal(again["labels"], first["labels"])
    assert Path(path).read_bytes() == blob  # rebuilt: the next run reads it without a warning
    caplog.clear()
    decode_dataset(data, digits_transform, cache_dir=cache, num_classes=10)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_a_full_disk_while_writing_the_cache_names_the_file_and_the_space(
    tmp_path, digits, digits_transform, monkeypatch
):
    import gift_hf.data.device as device

    def full_disk(tensors, filename, metadata=None):  # the fault: the disk fills up mid-write
        Path(filename).write_bytes(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(device, "save_file", full_disk)
    data = _file_backed_digits(tmp_path, digits)
    cache = tmp_path / "decoded"
    with pytest.raises(DiskFullError) as info:
        device.decode_dataset(data, digits_transform, cache_dir=str(cache), num_classes=10)
    message = str(info.value)
    assert "no space left on the device writing" in message and str(cache) in message
    needed = 24 * 8 * 8 + 24 * 8  # uint8 images + int64 labels
    assert f"about {needed / 2**20:.1f} MiB needed" in message and "MiB free" in message
    assert "\n" not in message and [p.name for p in cache.iterdir() if p.suffix == ".tmp"] == []


def test_a_corrupt_model_or_optimizer_file_in_a_checkpoint_is_named(tmp_path):
    checkpoint = tmp_path / "checkpoint-4"
    model = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8, width=4)
    model.save_pretrained(checkpoint)
    torch.save(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9).state_dict(), checkpoint / "optimizer.pt")
    check_saved_files(checkpoint)  # whole files pass
    for name in ("optimizer.pt", "model.safetensors"):
        blob = (checkpoint / name).read_bytes()
        (checkpoint / name).write_bytes(blob[: len(blob) // 2])
        with pytest.raises(
            ValueError,
            match=rf"checkpoint file {checkpoint / name} is corrupt or truncated .*; "
            rf"delete the folder {checkpoint} and resume from an earlier checkpoint",
        ):
            check_saved_files(checkpoint)
    # the same check names the file when a saved teacher is loaded
    from gift_hf.models.modeling import load_teacher

    with pytest.raises(ValueError, match=r"teacher file .*model\.safetensors is corrupt or truncated"):
        load_teacher(str(checkpoint))


def test_a_corrupt_parquet_shard_through_train_is_named(tmp_path, digits, capsys):
    folder = tmp_path / "set"
    (folder / "data").mkdir(parents=True)
    shard = folder / "data" / "train-00000-of-00001.parquet"
    digits["train"].select(range(20)).to_parquet(str(shard))
    blob = shard.read_bytes()
    shard.write_bytes(blob[: len(blob) // 2] + b"x" * 64 + blob[-100:])
    assert main(["train", "--dataset_name", str(folder), "--output_dir", str(tmp_path / "out"), "--use_cpu"]) == 2
    line = one_line_error(capsys.readouterr().err, "train")
    assert f"dataset_name: data file {shard} of {str(folder)!r} is corrupt or truncated" in line
    assert not (tmp_path / "out").exists()


def test_a_decompression_bomb_or_truncated_png_is_named_with_its_row(tmp_path, digits_transform, monkeypatch):
    from gift_hf.data.device import decode_dataset

    good = png(np.full((8, 8), 7, dtype=np.uint8))
    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b"])})
    rows = {
        "image": [{"bytes": good, "path": None}] * 2
        + [{"bytes": png(np.zeros((64, 64), np.uint8)), "path": "big.png"}],
        "label": [0, 1, 0],
    }
    data = Dataset.from_dict(rows, features=features)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)  # 64×64 = 4096 > 2 × 1000: Pillow refuses it
    with pytest.raises(
        ValueError,
        match=r"column 'image', row 2 \(big\.png\): the image is larger than Pillow's "
        r"decompression-bomb limit \(1000 pixels",
    ):
        decode_dataset(data, digits_transform)
    rows["image"][2] = {"bytes": good[:40], "path": "cut.png"}
    with pytest.raises(ValueError, match=r"row 2 \(cut\.png\): the image file is truncated or corrupt"):
        decode_dataset(Dataset.from_dict(rows, features=features), digits_transform)


# ------------------------------------------------------------------------ Ugly: paths
@pytest.mark.parametrize("name", ["./no_such_data", "no[a]", "existing/missing", "~/no_such_gift_hf_set"])
def test_a_path_looking_dataset_name_is_not_found_never_a_hub_lookup(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "existing").mkdir()
    teacher = tiny_teacher(tmp_path / "teacher")
    assert (
        main(["ddranking", "--dataset_name", name, "--teacher_model_name_or_path", teacher, "--output_dir", "out"]) == 2
    )
    line = one_line_error(capsys.readouterr().err, "ddranking")
    assert line.startswith(f"gift-hf ddranking: error: dataset_name {name!r} not found: no such local file")
    assert "Hub" not in line.split("expected")[0] and not (tmp_path / "out" / "results.md").exists()


# ------------------------------------------------------------------------ Ugly: shapes
def test_a_teacher_of_another_number_of_classes_is_refused_naming_both(tmp_path, capsys):
    teacher = tiny_teacher(tmp_path / "teacher5", num_classes=5)
    assert main(["ddranking", "--teacher_model_name_or_path", teacher, "--output_dir", str(tmp_path / "o")]) == 2
    line = one_line_error(capsys.readouterr().err, "ddranking")
    assert f"the teacher {teacher!r} has 5 classes but dataset 'digits' has 10 (column 'label')" in line


# ------------------------------------------------------------------- Ugly: Hub, tokens
def test_pushing_offline_is_one_line_and_never_prints_a_token(tmp_path, capsys):
    torch.save({"data": torch.rand(4, 3, 4, 4), "label": torch.randn(4, 3)}, tmp_path / "syn.pt")
    out = tmp_path / "converted"
    assert (
        main(
            [
                "convert",
                "--input",
                str(tmp_path / "syn.pt"),
                "--output_dir",
                str(out),
                "--class_names",
                "a",
                "b",
                "c",
                "--method",
                "mtt",
            ]
        )
        == 0
    )
    capsys.readouterr()
    for wrong in (["--repo_id", "me/x", "--commit_message", TOKEN], ["--repo_id", TOKEN]):  # a token, wrong option
        assert main(["push", "--dataset_dir", str(out), *wrong]) == 2
        line = one_line_error(capsys.readouterr().err, "push")
        assert "the Hub could not be used (OfflineModeIsEnabled: " in line


def test_train_with_push_to_hub_offline_is_one_line(tmp_path, capsys):
    code = main(
        [
            "train",
            "--push_to_hub",
            "--hub_model_id",
            "me/student",
            "--hub_token",
            TOKEN,
            "--max_steps",
            "1",
            "--output_dir",
            str(tmp_path / "out"),
            "--use_cpu",
            "--loss",
            "ce",
            "--soft_label_source",
            "none",
            "--save_strategy",
            "no",
            "--eval_split",
            "",
            "--disable_tqdm",
            "true",
        ]
    )
    assert code == 2
    assert "the Hub could not be used (" in one_line_error(capsys.readouterr().err, "train")


def test_a_bug_traceback_is_printed_with_its_tokens_masked(capsys, monkeypatch):
    import gift_hf.scripts.push as push

    def bug(argv):  # not a user error: its traceback is shown, masked
        raise RuntimeError(f"unexpected state near {argv[-1]}")

    monkeypatch.setattr(push, "main", bug)
    assert main(["push", "--token", TOKEN]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: unexpected state near ***" in err and TOKEN not in err


# ------------------------------------------------------------------ Ugly: resources
def test_an_exploding_yaml_anchor_is_refused_in_one_line(tmp_path, capsys):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]  # 10^10 strings
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text("\n".join(lines) + "\n")
    assert main(["train", "--config", str(recipe)]) == 2
    line = one_line_error(capsys.readouterr().err, "train")
    assert f"--config: {str(recipe)!r} expands to more than 100000 values through its anchors and aliases" in line
    (tmp_path / "loop.yaml").write_text("a: &a [1, *a]\n")  # an alias inside its own anchor
    assert main(["train", "--config", str(tmp_path / "loop.yaml")]) == 2
    assert "expands to more than" in one_line_error(capsys.readouterr().err, "train")


def test_help_into_a_closed_pipe_is_quiet():
    proc = subprocess.run(
        f"{sys.executable} -m gift_hf.cli train --help | head -1",
        shell=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.stdout.startswith("usage: gift-hf train")
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
