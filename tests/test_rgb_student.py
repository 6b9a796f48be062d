"""A grayscale student as an RGB one: the same logits on gray images given as RGB, and a checkpoint
that pipeline("image-classification") serves in a fresh process without gift_hf."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from gift_hf import create_model, image_transform_for
from gift_hf.data.images import DIGITS_MEAN, DIGITS_STD
from gift_hf.models.modeling import model_spec, to_rgb_student


def gray_student(arch, **kwargs):
    torch.manual_seed(0)
    model = create_model(
        arch,
        10,
        in_chans=1,
        img_size=16,
        image_mean=DIGITS_MEAN,
        image_std=DIGITS_STD,
        id2label={i: f"digit {i}" for i in range(10)},
        **kwargs,
    )
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode is really tested
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("arch,kwargs", [("gift_convnet_d3", {"width": 8}), ("resnet10t", {})])
def test_the_rgb_copy_computes_the_same_logits_on_gray_images(arch, kwargs):
    gray = gray_student(arch, **kwargs)
    rgb = to_rgb_student(gray).eval()
    spec = model_spec(rgb)
    assert spec["in_chans"] == 3 and spec["image_mean"] == [DIGITS_MEAN[0]] * 3
    assert spec["image_std"] == [DIGITS_STD[0]] * 3 and rgb.config.id2label == gray.config.id2label
    # gray images through each model's own preprocessing: 1 channel vs the same image as RGB
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), mode="L") for _ in range(4)]
    x1 = torch.stack(image_transform_for(gray)({"image": images})["pixel_values"])
    x3 = torch.stack(image_transform_for(rgb)({"image": [im.convert("RGB") for im in images]})["pixel_values"])
    assert x1.shape == (4, 1, 16, 16) and x3.shape == (4, 3, 16, 16)
    with torch.no_grad():
        a, b = gray(pixel_values=x1).logits, rgb(pixel_values=x3).logits
    assert (a - b).abs().max().item() < 1e-5 and a.std() > 0
    # and the first layer really is w/3 on each channel
    key = next(k for k, v in rgb.timm_model.state_dict().items() if v.dim() == 4 and v.shape[1] == 3)
    w1, w3 = gray.timm_model.state_dict()[key], rgb.timm_model.state_dict()[key]
    for c in range(3):
        torch.testing.assert_close(w3[:, c : c + 1], w1 / 3)


def test_only_grayscale_students_convert():
    with pytest.raises(ValueError, match="in_chans is 3; expected a grayscale"):
        to_rgb_student(create_model("resnet10t", 10, in_chans=3, img_size=16))
    with pytest.raises(TypeError, match="model: got Linear"):
        to_rgb_student(torch.nn.Linear(2, 2))


PIPELINE = """
import json, sys
import numpy as np
from PIL import Image
from transformers import pipeline
gray = np.array(json.loads(sys.argv[2]), dtype=np.uint8)
out = pipeline("image-classification", model=sys.argv[1], device="cpu", top_k=10)(Image.fromarray(gray).convert("RGB"))
print(json.dumps({"gift_hf": "gift_hf" in sys.modules, "out": out}))
"""


def test_pipeline_serves_the_rgb_copy_of_a_resnet10t_student_without_gift_hf(tmp_path):
    gray = gray_student("resnet10t")
    to_rgb_student(gray).save_pretrained(tmp_path / "rgb")
    pixels = np.random.default_rng(1).integers(0, 256, (16, 16), dtype=np.uint8)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", PIPELINE, str(tmp_path / "rgb"), json.dumps(pixels.tolist())],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["gift_hf"] is False
    scores = {row["label"]: row["score"] for row in result["out"]}
    # the 1-channel student's probabilities on the gray image
    x = torch.stack(image_transform_for(gray)({"image": [Image.fromarray(pixels, mode="L")]})["pixel_values"])
    with torch.no_grad():
        probs = gray(pixel_values=x).logits.softmax(-1)[0]
    assert len(scores) == 10
    for i, p in enumerate(probs.tolist()):
        assert scores[f"digit {i}"] == pytest.approx(p, abs=1e-5)
