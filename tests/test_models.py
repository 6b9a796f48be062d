"""create_model for timm architectures and each registered ConvNet; saved models anyone can load; teachers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    TimmWrapperForImageClassification,
    pipeline,
)

from gift_hf import GIFTClassifier, create_model, image_transform_for, load_teacher, model_spec
from gift_hf.data.images import DIGITS_MEAN, DIGITS_STD, ImageTransform
from gift_hf.models.convnet import ConvNet
from gift_hf.models.modeling import teacher_logits, to_timm_wrapper

FIXTURE = Path(__file__).parent / "fixtures" / "gift_timm_v0_1"


def digit_images(digits, n=3):
    """The first ``n`` test digits as PIL images, with their labels."""
    rows = digits["test"].select(range(n))
    return list(rows["image"]), list(rows["label"])


@pytest.mark.parametrize("depth,size", [(3, 32), (4, 16), (5, 32), (6, 64)])
def test_registered_convnets(depth, size):
    name = f"gift_convnet_d{depth}"
    assert name in timm.list_models("gift_*")
    model = create_model(name, num_classes=7, in_chans=3, img_size=size)
    assert isinstance(model, TimmWrapperForImageClassification)
    net = model.timm_model
    assert isinstance(net, ConvNet)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(convs) == depth and all(c.out_channels == 128 for c in convs)
    # instance norm: one group per channel, affine
    assert len(norms) == depth and all(n.num_groups == n.num_channels == 128 and n.affine for n in norms)
    assert net.head.in_features == 128 * (size >> depth) ** 2
    out = model(pixel_values=torch.randn(2, 3, size, size))
    assert out.logits.shape == (2, 7)


def test_convnet_through_timm_directly_and_grayscale():
    net = timm.create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8)
    assert net(torch.randn(4, 1, 8, 8)).shape == (4, 10)
    assert net.pretrained_cfg["architecture"] == "gift_convnet_d3"
    with pytest.raises(ValueError, match="too small for depth 4"):
        timm.create_model("gift_convnet_d4", img_size=8)


def test_any_timm_architecture_keeps_timms_initialisation():
    torch.manual_seed(0)
    model = create_model("resnet10t", num_classes=5, in_chans=3)
    torch.manual_seed(0)
    reference = timm.create_model("resnet10t", num_classes=5, in_chans=3)
    # transformers would re-draw a fresh model's weights with std 0.02; the student keeps timm's scheme.
    for (name, ours), theirs in zip(model.timm_model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(ours, theirs, msg=name)
    assert model.config.model_args == {"in_chans": 3}  # resnets take no img_size: it stays in pretrained_cfg
    out = model(pixel_values=torch.randn(2, 3, 32, 32), labels=torch.tensor([0, 4]))
    assert out.logits.shape == (2, 5) and out.loss.ndim == 0
    with pytest.raises(ValueError, match="unknown timm architecture 'no_such_net'"):
        create_model("no_such_net", num_classes=5)
    with pytest.raises(ValueError, match=r"image_mean: got \[0.1, 0.2\]; expected 1 or in_chans=3 values"):
        create_model("resnet10t", num_classes=5, image_mean=(0.1, 0.2))


def test_img_size_reaches_architectures_that_take_it():
    vit = create_model("vit_tiny_patch16_224", num_classes=4, img_size=32, depth=1)
    assert vit.config.model_args == {"in_chans": 3, "depth": 1, "img_size": 32}
    assert vit(pixel_values=torch.randn(1, 3, 32, 32)).logits.shape == (1, 4)


def test_channel_and_size_mismatch_are_clear_errors():
    model = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8)
    with pytest.raises(ValueError, match=r"pixel_values must have shape \(batch, 1, H, W\).*got \(2, 3, 8, 8\)"):
        model(pixel_values=torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"pixel_values: got 16×16 images; this gift_convnet_d3 expects 8×8"):
        model(pixel_values=torch.randn(2, 1, 16, 16))


def test_save_and_reload_with_the_preprocessing(tmp_path):
    model = create_model(
        "gift_convnet_d3",
        num_classes=10,
        in_chans=1,
        img_size=8,
        id2label={i: f"d{i}" for i in range(10)},
        image_mean=DIGITS_MEAN,
        image_std=DIGITS_STD,
        width=8,
    )
    model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "timm_wrapper" and config["architecture"] == "gift_convnet_d3"
    assert config["model_args"] == {"in_chans": 1, "width": 8, "img_size": 8}
    assert config["pretrained_cfg"]["input_size"] == [1, 8, 8]
    assert config["pretrained_cfg"]["mean"] == [DIGITS_MEAN[0]] and config["pretrained_cfg"]["std"] == [DIGITS_STD[0]]
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path)
    assert isinstance(reloaded, TimmWrapperForImageClassification) and reloaded.config.id2label[3] == "d3"
    x = torch.randn(3, 1, 8, 8)
    model.eval()
    torch.testing.assert_close(reloaded(pixel_values=x).logits, model(pixel_values=x).logits)
    # the one place the preprocessing is read from: stated once at create_model
    expected = ImageTransform(image_size=8, channels=1, mean=DIGITS_MEAN, std=DIGITS_STD)
    assert image_transform_for(tmp_path) == image_transform_for(model) == expected
    assert model_spec(tmp_path) == {
        "arch": "gift_convnet_d3",
        "in_chans": 1,
        "img_size": 8,
        "image_mean": [DIGITS_MEAN[0]],
        "image_std": [DIGITS_STD[0]],
        "model_kwargs": {"width": 8},
    }
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert processor.data_config["mean"] == DIGITS_MEAN and processor.data_config["input_size"] == (1, 8, 8)


def test_stock_timm_student_classifies_without_gift_hf(tmp_path, digits):
    """A student on a stock timm architecture: AutoModel + pipeline in a process that cannot import gift_hf."""
    images, _ = digit_images(digits)
    mean, std = DIGITS_MEAN * 3, DIGITS_STD * 3
    model = create_model(
        "resnet10t",
        num_classes=10,
        in_chans=3,
        img_size=16,
        image_mean=mean,
        image_std=std,
        id2label={i: str(i) for i in range(10)},
    )
    model.save_pretrained(tmp_path / "student")
    for i, image in enumerate(images):
        image.save(tmp_path / f"digit{i}.png")
    script = f"""
import json, sys
sys.modules["gift_hf"] = None  # importing gift_hf now raises ImportError
import torch
from PIL import Image
from transformers import AutoModelForImageClassification, pipeline
model = AutoModelForImageClassification.from_pretrained("student")
classify = pipeline("image-classification", model="student", top_k=10)
images = [Image.open(f"digit{{i}}.png") for i in range({len(images)})]
print(json.dumps({{"model": type(model).__name__, "gift_hf": [m for m in sys.modules if m.startswith("gift_hf.")],
                  "gift_arch": "gift_convnet_d3" in __import__("timm").list_models("gift_*"),
                  "predictions": classify(images)}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["model"] == "TimmWrapperForImageClassification"
    assert result["gift_hf"] == [] and result["gift_arch"] is False
    # the pipeline prepares images exactly as gift_hf's training transform does
    transform = image_transform_for(tmp_path / "student")
    assert transform == ImageTransform(image_size=16, channels=3, mean=mean, std=std)
    pixels = torch.stack(transform({"image": images})["pixel_values"])
    model.eval()
    with torch.no_grad():
        probabilities = model(pixel_values=pixels).logits.softmax(-1)
    for row, predictions in zip(probabilities, result["predictions"]):
        scores = {int(p["label"]): p["score"] for p in predictions}
        np.testing.assert_allclose([scores[i] for i in range(10)], row.numpy(), rtol=1e-4, atol=1e-6)


def test_our_convnet_needs_gift_hf_only_for_the_registry(tmp_path, digits):
    images, _ = digit_images(digits, 2)
    model = create_model("gift_convnet_d3", num_classes=10, in_chans=3, img_size=8, width=4)
    model.save_pretrained(tmp_path)
    predictions = pipeline("image-classification", model=str(tmp_path))(images)
    assert len(predictions) == 2 and all(len(p) == 5 for p in predictions)


def test_checkpoints_of_gift_hf_0_1_still_load():
    expected = json.loads((FIXTURE / "expected_logits.json").read_text())
    x = torch.linspace(-1, 1, 128).reshape(2, 1, 8, 8)
    old = AutoModelForImageClassification.from_pretrained(FIXTURE)
    assert isinstance(old, GIFTClassifier) and old.config.id2label == {0: "zero", 1: "one", 2: "two"}
    old.eval()
    with torch.no_grad():
        torch.testing.assert_close(old(pixel_values=x).logits, torch.tensor(expected["logits"]))
    teacher = load_teacher(FIXTURE)
    torch.testing.assert_close(teacher_logits(teacher, x), torch.tensor(expected["logits"]))
    assert image_transform_for(FIXTURE) == ImageTransform(image_size=8, channels=1, mean=(0.3056,), std=(0.376,))
    # converted: the same network as a standard TimmWrapperForImageClassification
    new = to_timm_wrapper(FIXTURE).eval()
    assert isinstance(new, TimmWrapperForImageClassification) and new.config.id2label[2] == "two"
    with torch.no_grad():
        torch.testing.assert_close(new(pixel_values=x).logits, torch.tensor(expected["logits"]))
    assert model_spec(new) == model_spec(old)


def test_load_teacher_from_directory_is_frozen(tmp_path):
    create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8).save_pretrained(tmp_path)
    teacher = load_teacher(str(tmp_path))
    assert isinstance(teacher, TimmWrapperForImageClassification)
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())


def test_load_teacher_from_a_transformers_checkpoint(tmp_path):
    """Any AutoModelForImageClassification checkpoint is a valid teacher."""
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=10)
    ResNetForImageClassification(config).save_pretrained(tmp_path)
    teacher = load_teacher(tmp_path)
    assert isinstance(teacher, ResNetForImageClassification)
    assert teacher(pixel_values=torch.randn(2, 1, 8, 8)).logits.shape == (2, 10)
    assert image_transform_for(tmp_path).channels == 1


def test_load_teacher_from_a_timm_checkpoint(tmp_path):
    """A folder written by timm itself (``save_for_hf``: config.json without model_type) is a teacher."""
    from timm.models import save_for_hf

    net = timm.create_model("resnet10t", num_classes=4).eval()
    save_for_hf(net, tmp_path)
    teacher = load_teacher(tmp_path)
    assert isinstance(teacher, TimmWrapperForImageClassification)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(teacher_logits(teacher, x), net(x))


def test_load_teacher_from_timm_name_needs_num_classes(tmp_path):
    teacher = load_teacher("gift_convnet_d3", num_classes=4, in_chans=1, img_size=8)
    assert teacher.config.num_labels == 4
    with pytest.raises(ValueError, match="pass num_classes"):
        load_teacher("gift_convnet_d3")
    with pytest.raises(ValueError, match="has no config.json"):
        load_teacher(tmp_path)
