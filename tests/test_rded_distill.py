"""RDED's selection (``gift-hf distill rded``): crops scored by a teacher, the best stitched factor × factor."""

from __future__ import annotations

import re

import datasets
import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image
from distilled_helpers import digits_pixels, digits_teacher
from PIL import Image as PILImage

from gift_hf import build_rded_distilled, load_distilled, save_distilled
from gift_hf.cli import main
from gift_hf.data.images import ImageTransform
from gift_hf.data.rded import random_resized_boxes, score_crops, select_crops, stitch_patches

GRAY = ImageTransform(channels=1, mean=(0.0,), std=(1.0,))


class BrightnessTeacher(torch.nn.Module):
    """Two classes: logits ``(s·(m − ½), −s·(m − ½))`` of the mean pixel ``m``; class 0 likes bright, 1 dark."""

    def __init__(self, sharpness: float = 4.0):
        super().__init__()
        self.sharpness = sharpness

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([self.sharpness * m, -self.sharpness * m], dim=1)


def gray_dataset(values_by_class: list[list[int]], size: int = 4) -> Dataset:
    """Uniform grey ``size × size`` images: every crop of one has its value, whatever the box."""
    images, labels = [], []
    for cls, values in enumerate(values_by_class):
        for v in values:
            images.append(PILImage.fromarray(np.full((size, size), v, dtype=np.uint8), mode="L"))
            labels.append(cls)
    features = Features({"image": Image(), "label": ClassLabel(names=["bright", "dark"])})
    return Dataset.from_dict({"image": images, "label": labels}, features=features)


def test_stitching_puts_patch_k_at_row_k_div_factor_column_k_mod_factor():
    # four constant 4×4 crops, values 10, 20, 30, 40 → the quadrants TL, TR, BL, BR
    patches = torch.stack([torch.full((1, 4, 4), v, dtype=torch.uint8) for v in (10, 20, 30, 40)])
    out = stitch_patches(patches, 2)
    assert out.shape == (1, 1, 4, 4) and out.dtype == torch.uint8
    expected = torch.tensor([[10, 10, 20, 20], [10, 10, 20, 20], [30, 30, 40, 40], [30, 30, 40, 40]], dtype=torch.uint8)
    assert torch.equal(out[0, 0], expected)
    # each patch is downsized by the mean of its 2×2 blocks: arange(16) as 4×4 → [[2.5, 4.5], [10.5, 12.5]]
    ramp = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    out = stitch_patches(torch.cat([ramp, torch.zeros(3, 1, 4, 4)]), 2)
    assert torch.equal(out[0, 0, :2, :2], torch.tensor([[2.5, 4.5], [10.5, 12.5]]))
    assert torch.count_nonzero(out[0, 0, 2:]) == 0 and torch.count_nonzero(out[0, 0, :2, 2:]) == 0
    # two groups → two images; factor 1 keeps the crops
    assert stitch_patches(torch.zeros(8, 3, 4, 4), 2).shape == (2, 3, 4, 4)
    assert torch.equal(stitch_patches(patches, 1), patches)
    with pytest.raises(ValueError, match=r"factor: got 3; expected a divisor of the image size 4×4"):
        stitch_patches(torch.zeros(9, 1, 4, 4), 3)
    with pytest.raises(ValueError, match=r"patches: got 3; expected a multiple of factor² = 4"):
        stitch_patches(torch.zeros(3, 1, 4, 4), 2)


def test_select_keeps_each_images_best_crop_then_the_lowest_images():
    scores = torch.tensor(
        [
            [3.0, 0.5, 2.0],  # image 0: best crop 1 (0.5)
            [0.9, 0.1, 0.1],  # image 1: best crop 1 (0.1, the first of a tie)
            [4.0, 5.0, 0.3],  # image 2: best crop 2 (0.3)
            [0.2, 9.0, 9.0],
        ]
    )  # image 3: best crop 0 (0.2)
    images, crops = select_crops(scores, 3)
    assert images.tolist() == [1, 3, 2] and crops.tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match=r"keep: got 5; expected 1 <= keep <= 4"):
        select_crops(scores, 5)


def test_boxes_follow_random_resized_crop():
    boxes = random_resized_boxes(np.random.default_rng(0), 500, 30, 20, scale=(0.25, 0.5), ratio=(0.5, 2.0))
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 30).all() and (left + w <= 20).all()
    area = h * w / 600
    # rounding the sides moves the area a little off the drawn fraction
    assert area.min() > 0.2 and area.max() < 0.56 and (w / h).min() >= 0.45 and (w / h).max() <= 2.2
    # whole-image crops when scale and ratio allow nothing else; same generator state, same boxes
    assert (random_resized_boxes(np.random.default_rng(1), 4, 6, 6, (1, 1), (1, 1)) == [0, 0, 6, 6]).all()
    assert np.array_equal(
        random_resized_boxes(np.random.default_rng(3), 9, 8, 8), random_resized_boxes(np.random.default_rng(3), 9, 8, 8)
    )


def test_scoring_keeps_the_lowest_cross_entropy_crops():
    values = [[40, 200, 120, 250, 90], [30, 220, 10, 160, 70]]
    teacher = BrightnessTeacher()
    # the teacher's CE by hand: softplus(∓2s(m − ½)) on class 0 / 1
    crops = torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 1, 4, 4)
    m = torch.tensor([0, 51, 255]) / 255.0 - 0.5
    assert torch.allclose(score_crops(crops, 0, [teacher], [GRAY]), torch.nn.functional.softplus(-8 * m), atol=1e-6)
    assert torch.allclose(score_crops(crops, 1, [teacher], [GRAY]), torch.nn.functional.softplus(8 * m), atol=1e-6)

    ds, info = build_rded_distilled(
        gray_dataset(values), teacher, 2, transform=GRAY, image_size=4, crops_per_image=3, progress=False
    )
    means = [float(np.asarray(img).mean()) for img in ds["image"]]
    # class 0 keeps its two brightest images, class 1 its two darkest, best first
    assert means == [250, 200, 10, 30] and ds["label"] == [0, 0, 1, 1]
    # factor 2: the four best of each class in the quadrants, in rank order
    ds2, info2 = build_rded_distilled(
        gray_dataset(values), teacher, 1, factor=2, transform=GRAY, image_size=4, crops_per_image=2, progress=False
    )
    assert np.asarray(ds2[0]["image"]).tolist() == [[250, 250, 200, 200]] * 2 + [[120, 120, 90, 90]] * 2
    assert np.asarray(ds2[1]["image"]).tolist() == [[10, 10, 30, 30]] * 2 + [[70, 70, 160, 160]] * 2
    assert (info.method, info.extra["factor"], info2.extra["factor"], info.seed) == ("rded", 1, 2, 0)
    assert info.extra["selection_teacher"] == "BrightnessTeacher"

    # one half-white, half-black image per class: the kept crop is the one its class likes
    half = np.zeros((8, 8), dtype=np.uint8)
    half[:, :4] = 255
    features = Features({"image": Image(), "label": ClassLabel(names=["bright", "dark"])})
    halves = Dataset.from_dict({"image": [PILImage.fromarray(half, mode="L")] * 2, "label": [0, 1]}, features=features)
    ds3, _ = build_rded_distilled(
        halves, teacher, 1, transform=GRAY, image_size=8, crops_per_image=16, scale=(0.1, 0.3), progress=False
    )
    bright, dark = (float(np.asarray(img).mean()) for img in ds3["image"])
    assert bright > 200 and dark < 55  # the whole image's mean is 127.5


def test_bad_input_names_the_field(digits):
    teacher = BrightnessTeacher()
    data = gray_dataset([list(range(9)), list(range(9, 18))])
    cases = [
        (dict(ipc=3, factor=2), r"ipc: class 0 has 9 images but factor²·ipc = 2²·3 = 12 distinct images"),
        (dict(ipc=1, factor=3), r"factor: got 3; expected a divisor of image_size 4"),
        (dict(ipc=1, factor=2, candidates_per_class=3), r"candidates_per_class: got 3; expected at least"),
        (dict(ipc=1, scale=(0.5, 1.5)), r"scale: got \(0.5, 1.5\); expected 0 < low <= high <= 1"),
        (dict(ipc=0), r"ipc: got 0; expected a positive integer"),
        (dict(ipc=1, image_column="img"), r"image_column: got 'img'; expected a column of images"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            build_rded_distilled(data, teacher, transform=GRAY, image_size=4, progress=False, **kwargs)
    with pytest.raises(ValueError, match=r"records no input .*pass transform="):
        build_rded_distilled(data, teacher, 1, progress=False)


def test_same_seed_same_images_and_the_saved_set_loads(digits, tmp_path):
    teacher = digits_teacher(seed=2)
    kwargs = dict(factor=2, candidates_per_class=12, crops_per_image=2, progress=False, source_dataset="digits")
    a, info = build_rded_distilled(digits, teacher, 2, seed=5, **kwargs)
    b, _ = build_rded_distilled(digits, teacher, 2, seed=5, **kwargs)
    c, _ = build_rded_distilled(digits, teacher, 2, seed=6, **kwargs)
    pixels = [np.stack([np.asarray(img) for img in ds["image"]]) for ds in (a, b, c)]
    assert pixels[0].shape == (20, 8, 8) and np.array_equal(pixels[0], pixels[1])
    assert not np.array_equal(pixels[0], pixels[2])
    assert a["label"] == sorted(list(range(10)) * 2)

    out = save_distilled(a, tmp_path / "rded", info)
    plain = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert np.array_equal(np.stack([np.asarray(img) for img in plain["train"]["image"]]), pixels[0])
    loaded, read = load_distilled(out, cache_dir=str(tmp_path / "cache"))
    assert (read.method, read.seed, read.ipc, read.image_size) == ("rded", 5, 2, [8, 8])
    assert read.extra["factor"] == 2 and read.extra["selection_teacher_architecture"] == "gift_convnet_d3"
    card = (out / "README.md").read_text()
    assert "method: rded" in card and "factor: 2" in card and "seed: 5" in card and "selection_teacher:" in card


def _trained_digits_teacher(digits, seed: int = 0):
    """A narrow ConvNet-D3 trained for a few full-batch steps: far better than chance on the digits."""
    from gift_hf import create_model
    from gift_hf.data.images import DIGITS_MEAN, DIGITS_STD

    torch.manual_seed(seed)
    teacher = create_model(
        "gift_convnet_d3",
        num_classes=10,
        in_chans=1,
        img_size=8,
        image_mean=DIGITS_MEAN,
        image_std=DIGITS_STD,
        width=16,
    )
    x, y = digits_pixels(digits["train"]), torch.tensor(digits["train"]["label"])
    optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    for _ in range(20):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(teacher(pixel_values=x).logits, y).backward()
        optimizer.step()
    teacher.eval()
    with torch.no_grad():
        accuracy = (teacher(pixel_values=x).logits.argmax(1) == y).float().mean().item()
    assert accuracy > 0.5, accuracy
    return teacher


def test_cli_rded_on_digits(digits, tmp_path, capsys):
    teacher = _trained_digits_teacher(digits)
    teacher.save_pretrained(tmp_path / "teacher")
    out = tmp_path / "rded"
    # crop scale 1: every crop is the whole image, and every image of a class is a candidate (300 > class
    # size), so RDED keeps exactly the 2 real images of each class with the lowest teacher CE
    assert (
        main(
            [
                "distill",
                "rded",
                "--teacher",
                str(tmp_path / "teacher"),
                "--ipc",
                "2",
                "--crops_per_image",
                "2",
                "--crop_scale",
                "1",
                "1",
                "--seed",
                "1",
                "--batch_size",
                "64",
                "--output_dir",
                str(out),
            ]
        )
        == 0
    )
    assert "saved 20 images (rded, IPC 2, factor 1)" in capsys.readouterr().out
    ds, info = load_distilled(out, cache_dir=str(tmp_path / "cache"))
    assert len(ds["train"]) == 20 and info.method == "rded" and info.seed == 1 and info.extra["factor"] == 1
    assert info.extra["selection_teacher"] == str(tmp_path / "teacher")
    assert info.extra["crop_scale"] == [1.0, 1.0] and info.source_dataset == "digits"
    train = digits["train"]
    labels = np.asarray(train["label"])
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(
            teacher(pixel_values=digits_pixels(train)).logits, torch.as_tensor(labels), reduction="none"
        ).numpy()
    real = np.stack([np.asarray(img) for img in train["image"]])
    kept = np.stack([np.asarray(img) for img in ds["train"]["image"]])
    for cls in range(10):
        best = np.flatnonzero(labels == cls)[np.argsort(ce[labels == cls])[:2]]
        assert {r.tobytes() for r in real[best]} == {k.tobytes() for k in kept[2 * cls : 2 * cls + 2]}, cls
    assert ds["train"]["label"] == sorted(list(range(10)) * 2)

    out2 = tmp_path / "rded2"
    assert (
        main(
            [
                "distill",
                "--method",
                "rded",
                "--teacher",
                str(tmp_path / "teacher"),
                "--ipc",
                "1",
                "--factor",
                "2",
                "--candidates_per_class",
                "8",
                "--crops_per_image",
                "2",
                "--output_dir",
                str(out2),
            ]
        )
        == 0
    )
    ds2, info2 = load_distilled(out2, cache_dir=str(tmp_path / "cache"))
    assert len(ds2["train"]) == 10 and info2.extra["factor"] == 2 and ds2["train"][0]["image"].size == (8, 8)

    capsys.readouterr()
    assert main(["distill", "rded", "--output_dir", str(tmp_path / "x")]) == 2
    assert "error: teacher: got None; method 'rded' needs --teacher" in capsys.readouterr().err
    assert (
        main(
            [
                "distill",
                "rded",
                "--teacher",
                str(tmp_path / "teacher"),
                "--factor",
                "3",
                "--image_size",
                "8",
                "--output_dir",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "error: image_size: got 8; expected a positive multiple of factor 3" in capsys.readouterr().err
    assert (
        main(
            [
                "distill",
                "rded",
                "--teacher",
                str(tmp_path / "teacher"),
                "--ipc",
                "40",
                "--factor",
                "2",
                "--output_dir",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert re.search(
        r"error: ipc: class \d has \d+ images but factor²·ipc = 2²·40 = 160 distinct images are needed",
        capsys.readouterr().err,
    )
    assert not (tmp_path / "x").exists()


def test_the_docs_example_runs(tmp_path, monkeypatch):
    """The Python block of docs/datasets.md's RDED section, run as written with a small saved teacher."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "datasets.md").read_text()
    section = text[text.index("### RDED") :]
    block = section[section.index("```python\n") + len("```python\n") :]
    block = block[: block.index("```")]
    monkeypatch.chdir(tmp_path)
    digits_teacher(seed=4).save_pretrained("outputs/teacher")
    exec(compile(block, "docs/datasets.md", "exec"), {})
    ds, info = load_distilled("outputs/digits-ipc10-rded", cache_dir=str(tmp_path / "cache"))
    assert len(ds["train"]) == 100 and (info.method, info.extra["factor"], info.seed) == ("rded", 2, 0)
