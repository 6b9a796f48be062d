"""``gift-hf distill | relabel | convert | push`` end to end on real files."""

import dataclasses
import re
from collections import Counter

import numpy as np
import pytest
import torch
from distilled_helpers import digits_teacher
from hub_double import RecordingHub

from gift_hf import load_distilled
from gift_hf.cli import main
from gift_hf.scripts import convert as convert_cmd
from gift_hf.scripts import distill as distill_cmd
from gift_hf.scripts import push as push_cmd
from gift_hf.scripts import relabel as relabel_cmd

COMMANDS = {
    "distill": distill_cmd.DistillArguments,
    "relabel": relabel_cmd.RelabelArguments,
    "convert": convert_cmd.ConvertArguments,
    "push": push_cmd.PushArguments,
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_explains_every_option(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(COMMANDS[name]):
        assert f"--{f.name}" in out
        help_text = " ".join(f.metadata["help"].split())
        assert help_text[:40].replace("%%", "%") in out, f"--{f.name} has no help in `gift-hf {name} --help`"


def test_distill_random_then_relabel_top_k(tmp_path, capsys):
    subset = tmp_path / "subset"
    assert main(["distill", "random", "--ipc", "2", "--seed", "3", "--output_dir", str(subset)]) == 0
    assert "saved 20 images (random, IPC 2)" in capsys.readouterr().out
    ds, info = load_distilled(subset, cache_dir=str(tmp_path / "cache"))
    assert Counter(ds["train"]["label"]) == {c: 2 for c in range(10)}
    assert (info.method, info.ipc, info.seed, info.source_dataset) == ("random", 2, 3, "digits")
    from gift_hf.data.distilled import card_license

    assert card_license(subset) == "bsd-3-clause"  # no --license: the source's (scikit-learn's digits)

    teacher = digits_teacher(seed=2)
    teacher.save_pretrained(tmp_path / "teacher")
    labelled = tmp_path / "labelled"
    assert (
        main(
            [
                "relabel",
                "--dataset",
                str(subset),
                "--teacher",
                str(tmp_path / "teacher"),
                "--temperature",
                "2",
                "--topk",
                "3",
                "--dtype",
                "float16",
                "--output_dir",
                str(labelled),
                "--progress",
                "false",
            ]
        )
        == 0
    )
    ds2, info2 = load_distilled(labelled, cache_dir=str(tmp_path / "cache"))
    assert card_license(labelled) == "bsd-3-clause"  # kept from the input set's card
    train = ds2["train"]
    assert (info2.method, info2.ipc, info2.topk, info2.temperature, info2.soft_label_kind) == (
        "random",
        2,
        3,
        2.0,
        "probabilities",
    )
    with torch.no_grad():
        from distilled_helpers import digits_pixels

        probs = torch.softmax(teacher(pixel_values=digits_pixels(ds["train"])).logits / 2, 1)
    values, indices = torch.topk(probs, 3, dim=1)
    np.testing.assert_array_equal(np.asarray(train["soft_label_topk_indices"]), indices.numpy())
    np.testing.assert_allclose(np.asarray(train["soft_label_topk_values"]), values.half().float().numpy(), rtol=1e-3)

    # an existing output directory is refused unless --overwrite: one line, no traceback
    capsys.readouterr()
    assert main(["distill", "random", "--ipc", "1", "--output_dir", str(subset)]) == 2
    err = capsys.readouterr().err
    assert re.search(r"^gift-hf distill: error: .*exists and is not empty; pass overwrite=True \(--overwrite\)", err)
    assert "Traceback" not in err and "GIFT_HF_DEBUG=1" in err
    assert main(["distill", "random", "--ipc", "1", "--output_dir", str(subset), "--overwrite"]) == 0


def test_distill_difficulty(tmp_path, capsys):
    digits_teacher(seed=1).save_pretrained(tmp_path / "teacher")
    out = tmp_path / "hard"
    assert (
        main(
            [
                "distill",
                "difficulty",
                "--teacher",
                str(tmp_path / "teacher"),
                "--ipc",
                "1",
                "--band_low",
                "0.9",
                "--band_high",
                "1.0",
                "--output_dir",
                str(out),
            ]
        )
        == 0
    )
    ds, info = load_distilled(out, cache_dir=str(tmp_path / "cache"))
    assert len(ds["train"]) == 10 and info.method == "difficulty" and info.extra["band"] == [0.9, 1.0]
    capsys.readouterr()
    assert main(["distill", "difficulty", "--output_dir", str(tmp_path / "x")]) == 2
    assert "gift-hf distill: error: teacher: got None; method 'difficulty' needs --teacher" in capsys.readouterr().err
    assert main(["distill", "--method", "herding", "--output_dir", str(tmp_path / "x")]) == 2
    assert "error: method: got 'herding'; expected one of ('random', 'difficulty', 'rded')" in capsys.readouterr().err


def test_convert_and_push(tmp_path, capsys, monkeypatch):
    soft = torch.randn(4, 3)
    torch.save({"data": torch.rand(4, 3, 4, 4), "label": soft}, tmp_path / "syn.pt")
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
                "--image_mean",
                "0.5",
                "0.5",
                "0.5",
                "--image_std",
                "0.25",
                "0.25",
                "0.25",
            ]
        )
        == 0
    )
    ds, info = load_distilled(out, cache_dir=str(tmp_path / "cache"))
    assert ds["train"].features["label"].names == ["a", "b", "c"]
    np.testing.assert_array_equal(np.asarray(ds["train"]["soft_label"], dtype=np.float32), soft.numpy())
    assert (info.method, info.soft_label_kind, info.image_std) == ("mtt", "logits", [0.25, 0.25, 0.25])

    hub = RecordingHub().install(monkeypatch)
    capsys.readouterr()
    assert main(["push", "--dataset_dir", str(out), "--repo_id", "me/syn", "--private", "--token", "hf_xyz"]) == 0
    assert hub.private == {"me/syn": True} and set(hub.tokens) == {"hf_xyz"}
    assert hub.files("me/syn") == {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    printed = capsys.readouterr()
    assert "pushed" in printed.out and "https://huggingface.co/me/syn/commit/" in printed.out
    assert "hf_xyz" not in printed.out + printed.err
