"""Data-side reliability: overwrite never deletes what gift_hf did not write, a killed save never
loses the dataset, folders follow the umask, the card's soft-label kind is honoured, and missing
local paths are reported as "not found"."""

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from distilled_helpers import rgb_dataset
from PIL import Image as PILImage

from gift_hf import DistilledInfo, load_distilled, save_distilled
from gift_hf.data.distilled import (
    check_local_path,
    read_distilled_info,
    recover_leftovers,
    resolve_soft_label_kind,
)

INFO = DistilledInfo(soft_label_kind="probabilities", temperature=4.0)
TESTS = Path(__file__).parent
ROOT = TESTS.parent


def rows(path: Path, tmp_path: Path) -> int:
    ds, _ = load_distilled(path, cache_dir=str(tmp_path / f"cache-{len(os.listdir(tmp_path))}"))
    return ds["train"].num_rows


# ------------------------------------------------------------------ overwrite only replaces our datasets
def test_overwrite_refuses_a_project_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print('my code')")
    (project / "README.md").write_text("# my project\n")
    monkeypatch.chdir(project)
    with pytest.raises(
        FileExistsError,
        match=r"overwrite only replaces a dataset written by gift_hf .* it holds "
        r"'src', which save_distilled does not write; nothing was changed",
    ):
        save_distilled(rgb_dataset(n=3), ".", INFO, overwrite=True)  # `gift-hf distill ... --output_dir .`
    assert (project / "src" / "main.py").read_text() == "print('my code')"
    assert sorted(os.listdir(tmp_path)) == ["project"]  # no staging folder left behind


def test_overwrite_refuses_a_dataset_folder_with_foreign_files(tmp_path):
    target = save_distilled(rgb_dataset(n=3), tmp_path / "set", INFO)
    (target / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"it holds 'notes.txt', which save_distilled does not write"):
        save_distilled(rgb_dataset(n=6), target, INFO, overwrite=True)
    (target / "notes.txt").unlink()
    (target / "data" / "extra.csv").write_text("a,b")
    with pytest.raises(FileExistsError, match=r"data/ holds 'extra.csv'"):
        save_distilled(rgb_dataset(n=6), target, INFO, overwrite=True)
    (target / "data" / "extra.csv").unlink()
    save_distilled(rgb_dataset(n=6), target, INFO, overwrite=True)
    assert rows(target, tmp_path) == 6


def test_overwrite_refuses_a_hub_layout_folder_without_our_card(tmp_path):
    target = save_distilled(rgb_dataset(n=3), tmp_path / "set", INFO)
    (target / "README.md").write_text("---\nlicense: mit\n---\n# someone else's dataset\n")
    with pytest.raises(FileExistsError, match=r"its README.md has no 'gift_hf' block"):
        save_distilled(rgb_dataset(n=6), target, INFO, overwrite=True)
    assert (target / "data" / "train-00000-of-00001.parquet").is_file()


# ------------------------------------------------------------------ umask
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_saved_folders_and_files_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        target = save_distilled(rgb_dataset(n=3), tmp_path / "set", INFO)
        save_distilled(rgb_dataset(n=3), target, INFO, overwrite=True)  # the swapped-in copy too
    finally:
        os.umask(previous)
    for path in (target, target / "data"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~umask, path
    for path in (target / "README.md", *(target / "data").iterdir()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


# ------------------------------------------------------------------ kills during a save
KILLER = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from distilled_helpers import rgb_dataset
import gift_hf.data.distilled.storage as d

mode, target = sys.argv[1], sys.argv[2]
die = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
if mode == "between_renames":  # a system without an atomic swap, killed after the first rename
    d.exchange_directories = lambda a, b: False
    real = os.replace
    def replace(src, dst):
        real(src, dst)
        if ".old-" in os.fspath(dst):
            die()
    os.replace = replace
elif mode == "after_swap":  # killed after the swap, before the old copy is deleted
    d.shutil.rmtree = die
elif mode == "while_writing":  # killed while the new copy is being staged
    d.render_card = die
d.save_distilled(rgb_dataset(n=3), target, d.DistilledInfo(soft_label_kind="probabilities"), overwrite=True)
"""


def killed_save(mode: str, target: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    proc = subprocess.run(
        [sys.executable, "-c", KILLER.format(tests=str(TESTS)), mode, str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def hidden(tmp_path: Path) -> list[str]:
    return sorted(name for name in os.listdir(tmp_path) if name.startswith(".set."))


def test_a_kill_between_the_two_renames_is_recovered_by_the_next_load(tmp_path):
    target = save_distilled(rgb_dataset(n=6), tmp_path / "set", INFO)
    killed_save("between_renames", target)
    assert not target.exists() and len(hidden(tmp_path)) == 2  # the old copy and the new one sit aside
    assert rows(target, tmp_path) == 6  # load puts the old dataset back: the save did not finish
    assert hidden(tmp_path) == []


def test_a_kill_after_the_atomic_swap_leaves_the_new_dataset_and_the_next_save_cleans_up(tmp_path):
    target = save_distilled(rgb_dataset(n=6), tmp_path / "set", INFO)
    killed_save("after_swap", target)
    assert rows(target, tmp_path) == 3 and len(hidden(tmp_path)) == 1  # new one in place, old one aside
    save_distilled(rgb_dataset(n=6), tmp_path / "set", INFO, overwrite=True)
    assert hidden(tmp_path) == [] and rows(target, tmp_path) == 6


def test_a_kill_while_staging_keeps_the_old_dataset_and_the_leftover_is_cleaned(tmp_path):
    target = save_distilled(rgb_dataset(n=6), tmp_path / "set", INFO)
    killed_save("while_writing", target)
    assert rows(target, tmp_path) == 6 and len(hidden(tmp_path)) == 1
    (leftover,) = hidden(tmp_path)
    assert recover_leftovers(target) == [tmp_path / leftover]
    assert hidden(tmp_path) == []


def test_overwrite_without_an_atomic_swap_renames_aside_and_cleans_up(tmp_path, monkeypatch):
    import gift_hf.data.distilled.storage as storage

    monkeypatch.setattr(storage, "exchange_directories", lambda a, b: False)  # as on a system without renameat2
    target = save_distilled(rgb_dataset(n=6), tmp_path / "set", INFO)
    save_distilled(rgb_dataset(n=3), target, INFO, overwrite=True)
    assert rows(target, tmp_path) == 3 and hidden(tmp_path) == []


def test_staging_folders_of_a_live_process_are_left_alone(tmp_path):
    target = save_distilled(rgb_dataset(n=3), tmp_path / "set", INFO)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".set.tmp-{sleeper.pid}-0123abcd"
        live.mkdir()
        save_distilled(rgb_dataset(n=6), target, INFO, overwrite=True)
        assert live.is_dir()  # another writer may still be staging into it
    finally:
        sleeper.kill()
        sleeper.wait()
    recover_leftovers(target)
    assert not live.exists()


# ------------------------------------------------------------------ soft-label kind
def test_saving_soft_labels_without_a_kind_is_refused_at_save_time(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"info.soft_label_kind: the dataset has soft-label columns \('soft_label'\) "
        r"but no kind was given; pass info=DistilledInfo\(soft_label_kind=",
    ):
        save_distilled(rgb_dataset(n=3), tmp_path / "set")
    with pytest.raises(ValueError, match=r"'soft_label_topk_values', 'soft_label_topk_indices'\) but no kind"):
        save_distilled(rgb_dataset(n=3, soft="topk"), tmp_path / "set", DistilledInfo(method="random"))
    assert not (tmp_path / "set").exists()
    save_distilled(rgb_dataset(n=3, soft=None), tmp_path / "set")  # hard labels only need no kind
    assert rows(tmp_path / "set", tmp_path) == 3


def test_a_card_without_the_kind_is_named_with_the_fix(tmp_path):
    target = save_distilled(rgb_dataset(n=3), tmp_path / "set", INFO)
    readme = target / "README.md"
    readme.write_text(readme.read_text().replace("  soft_label_kind: probabilities\n", ""))
    with pytest.raises(
        ValueError,
        match=r"README.md of .*set': the data has soft-label columns \('soft_label'\) but "
        r"the card's 'gift_hf' block records no soft_label_kind; add ",
    ):
        load_distilled(target, cache_dir=str(tmp_path / "cache"))


def test_the_cards_kind_is_what_training_uses_and_a_contradiction_is_an_error(tmp_path):
    target = save_distilled(rgb_dataset(n=3), tmp_path / "set", INFO)
    info = read_distilled_info(target)
    assert info.soft_label_kind == "probabilities" and info.temperature == 4.0
    assert resolve_soft_label_kind(info) == "probabilities"
    assert resolve_soft_label_kind(info, "probabilities") == "probabilities"
    with pytest.raises(
        ValueError,
        match=r"soft_label_kind: got 'logits' but the dataset card says the stored soft "
        r"labels are 'probabilities' at temperature 4; drop --soft_label_kind",
    ):
        resolve_soft_label_kind(info, "logits")
    with pytest.raises(ValueError, match=r"records no soft_label_kind; pass --soft_label_kind"):
        resolve_soft_label_kind(DistilledInfo())
    assert resolve_soft_label_kind(DistilledInfo(), "logits") == "logits"


# ------------------------------------------------------------------ not found
def test_a_missing_local_dataset_is_not_found_never_a_hub_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path in ("./nope", str(tmp_path / "nope"), "runs/sets/nope", "~/surely/not/here"):
        with pytest.raises(FileNotFoundError, match=r"dataset '.*nope|dataset '.*here' not found: no such local"):
            load_distilled(path)
        with pytest.raises(FileNotFoundError, match="not found"):
            read_distilled_info(path)
    # a name that may be a Hub id: offline, the error still says "not found" and no local folder exists
    with pytest.raises(
        ValueError,
        match=r"dataset 'nobody/nothing' not found: there is no local directory of that "
        r"name, and the Hub dataset 'nobody/nothing' could not be read",
    ):
        load_distilled("nobody/nothing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match=r"dataset 'file.txt' is a file; expected a directory"):
        load_distilled("file.txt")
    assert check_local_path("org/name", "teacher") == "org/name"  # may be a Hub id: let through
    with pytest.raises(FileNotFoundError, match=r"student '\./gone' not found"):
        check_local_path("./gone", "student")


# ------------------------------------------------------------------ images
def test_a_saved_set_with_undecodable_image_bytes_is_named_at_load_not_mid_training(tmp_path):
    from datasets import ClassLabel, Dataset, Features, Image
    from distilled_helpers import NAMES, png_bytes

    images = [{"bytes": png_bytes(np.zeros((4, 4), np.uint8)), "path": None}, {"bytes": b"not a png", "path": None}]
    ds = Dataset.from_dict(
        {"image": images, "label": [0, 1]}, features=Features({"image": Image(), "label": ClassLabel(names=NAMES)})
    )
    target = save_distilled(ds, tmp_path / "set", check_images=False)  # written by a tool that did not check
    with pytest.raises(ValueError, match=r"column 'image' \(split 'train'\), row 1: cannot decode the image bytes"):
        load_distilled(target, cache_dir=str(tmp_path / "cache"))
    loaded, _ = load_distilled(target, cache_dir=str(tmp_path / "cache"), check_images=False)  # opt out: lazy
    assert loaded["train"].num_rows == 2


def test_images_of_mixed_modes_are_converted_to_the_models_channels(tmp_path):
    from datasets import ClassLabel, Dataset, Features, Image
    from distilled_helpers import NAMES, png_bytes

    from gift_hf import ImageTransform, SoftLabelCollator

    gray = np.full((4, 4), 200, np.uint8)
    rgb = np.stack([gray, gray // 2, gray // 4], axis=-1)
    images = [{"bytes": png_bytes(gray), "path": None}, {"bytes": png_bytes(rgb), "path": None}]
    ds = Dataset.from_dict(
        {"image": images, "label": [0, 1]}, features=Features({"image": Image(), "label": ClassLabel(names=NAMES)})
    )
    target = save_distilled(ds, tmp_path / "set")
    train = load_distilled(target, cache_dir=str(tmp_path / "cache"))[0]["train"]
    train.set_transform(ImageTransform(channels=3, mean=(0.0,), std=(1.0,)))
    pixels = SoftLabelCollator()([train[0], train[1]])["pixel_values"]
    assert pixels.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(pixels[0].numpy(), 200 / 255, rtol=1e-6)  # gray repeated in every channel
    np.testing.assert_allclose(pixels[1, :, 0, 0].numpy(), np.array([200, 100, 50]) / 255, rtol=1e-6)


def test_data_errors_carry_no_deep_traceback(tmp_path):
    from gift_hf.data.convert import from_image_folder

    target = save_distilled(rgb_dataset(n=3), tmp_path / "set", INFO)
    shard = next((target / "data").glob("*.parquet"))
    shard.write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(ValueError, match=r"shard 'data/train-00000-of-00001.parquet' of .* is not a readable") as bad:
        load_distilled(target)
    assert bad.value.__cause__ is None and bad.value.__suppress_context__  # pyarrow's traceback is not shown
    (tmp_path / "folder" / "cat").mkdir(parents=True)
    (tmp_path / "folder" / "cat" / "x.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"image file '.*x.png' cannot be decoded") as bad:
        from_image_folder(tmp_path / "folder")
    assert bad.value.__cause__ is None and bad.value.__suppress_context__  # nor PIL's


def test_cli_distill_into_the_current_project_with_overwrite_is_refused(tmp_path, monkeypatch, capsys):
    from gift_hf.cli import main

    project = tmp_path / "project"
    (project / "gift_code").mkdir(parents=True)
    (project / "gift_code" / "train.py").write_text("# my experiment")
    monkeypatch.chdir(project)
    assert main(["distill", "random", "--ipc", "1", "--output_dir", ".", "--overwrite"]) == 2
    assert "gift-hf distill: error: " in (err := capsys.readouterr().err)
    assert "overwrite only replaces a dataset written by gift_hf" in err
    assert (project / "gift_code" / "train.py").read_text() == "# my experiment"
    assert sorted(os.listdir(tmp_path)) == ["project"]
    # `gift-hf convert --input X --output_dir X --overwrite`: X is an image folder, not a gift_hf dataset
    (project / "images" / "cat").mkdir(parents=True)
    PILImage.fromarray(np.zeros((4, 4), np.uint8)).save(project / "images" / "cat" / "0.png")
    assert main(["convert", "--input", "images", "--output_dir", "images", "--overwrite"]) == 2
    assert (
        "gift-hf convert: error: output_dir 'images' holds the input 'images'; writing the dataset there would "
        "replace the input"
    ) in capsys.readouterr().err
    assert (project / "images" / "cat" / "0.png").is_file()
    # another input into that image folder: refused by the save's own check (not a gift_hf dataset)
    (project / "more" / "dog").mkdir(parents=True)
    PILImage.fromarray(np.zeros((4, 4), np.uint8)).save(project / "more" / "dog" / "0.png")
    assert main(["convert", "--input", "more", "--output_dir", "images", "--overwrite"]) == 2
    assert "overwrite only replaces a dataset written by gift_hf" in capsys.readouterr().err
    assert os.listdir(project / "images") == ["cat"]
    monkeypatch.setenv("GIFT_HF_DEBUG", "1")  # the traceback, for a bug report
    with pytest.raises(ValueError, match=r"output_dir 'images' holds the input"):
        main(["convert", "--input", "images", "--output_dir", "images", "--overwrite"])


# ------------------------------------------------------------------ wrong-typed values
def test_wrong_typed_card_values_name_the_card_field(tmp_path):
    target = save_distilled(rgb_dataset(n=3), tmp_path / "set", INFO)
    readme = target / "README.md"
    text = readme.read_text()
    for line, message in (
        (
            "  image_size:\n  - 4\n  - 4\n",
            r"DistilledInfo.image_size: got \['a', 'b'\]; expected a "
            r"list of numbers",
        ),
        ("  temperature: 4.0\n", r"DistilledInfo.temperature: got 'hot'; expected a positive"),
    ):
        assert line in text
        bad = {
            "  image_size:\n  - 4\n  - 4\n": "  image_size:\n  - a\n  - b\n",
            "  temperature: 4.0\n": "  temperature: hot\n",
        }[line]
        readme.write_text(text.replace(line, bad))
        with pytest.raises(ValueError, match=r"README.md: the card's 'gift_hf' block is invalid: " + message):
            load_distilled(target, cache_dir=str(tmp_path / "cache"))


def test_string_labels_in_selection_name_the_column_and_the_fix():
    from datasets import Dataset

    from gift_hf import build_random_distilled

    ds = Dataset.from_dict({"image": [None] * 4, "label": ["cat", "dog", "cat", "dog"]})
    with pytest.raises(
        ValueError,
        match=r"column 'label' \(label_column\) holds <U3 values \(row 0: 'cat'\); expected "
        r"integer class ids \(cast it to a ClassLabel",
    ):
        build_random_distilled(ds, 1)
    with pytest.raises(ValueError, match=r"column 'label' \(label_column\), row 1: class id -1; expected class ids"):
        build_random_distilled(Dataset.from_dict({"label": [0, -1]}), 1)


# ------------------------------------------------------------------ the matrix in docs/reliability.md
def test_the_reliability_matrix_names_real_tests_and_no_silent_case():
    import re

    text = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) >= 60
    assert [int(row.split("|")[1]) for row in rows] == list(range(1, len(rows) + 1))
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        assert len(cells) == 5 and cells[3] in ("error", "correct"), row  # never silent, never data loss
        references = re.findall(r"`(tests/\w+\.py)::(\w+)`", cells[4])
        assert references, row
        for path, name in references:
            assert re.search(rf"^def {name}\(", (ROOT / path).read_text(encoding="utf-8"), re.M), f"{path}::{name}"


def test_the_reliability_counts_match_the_matrix():
    import re

    text = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    outcomes = [
        line.strip().strip("|").split("|")[3].strip() for line in text.splitlines() if re.match(r"\| \d+ \|", line)
    ]
    stated = re.search(r"of the (\d+) cases below, (\d+) end in a clear error and (\d+)\s+in a correct result", text)
    assert stated, "the page states the counts"
    assert [int(g) for g in stated.groups()] == [len(outcomes), outcomes.count("error"), outcomes.count("correct")]
