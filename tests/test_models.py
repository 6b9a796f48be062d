"""create_model for timm architectures and each registered ConvNet; teacher loading."""

import json

import pytest
import timm
import torch
from transformers import AutoModelForImageClassification

from gift_hf import GIFTClassifier, create_model, load_teacher
from gift_hf.convnet import ConvNet


@pytest.mark.parametrize("depth,size", [(3, 32), (4, 16), (5, 32), (6, 64)])
def test_registered_convnets(depth, size):
    name = f"gift_convnet_d{depth}"
    assert name in timm.list_models("gift_*")
    model = create_model(name, num_classes=7, in_chans=3, img_size=size)
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


def test_any_timm_architecture():
    model = create_model("resnet18", num_classes=5, in_chans=3)
    out = model(pixel_values=torch.randn(2, 3, 32, 32), labels=torch.tensor([0, 4]))
    assert out.logits.shape == (2, 5) and out.loss.ndim == 0
    with pytest.raises(ValueError, match="unknown timm architecture 'no_such_net'"):
        create_model("no_such_net", num_classes=5)


def test_channel_mismatch_is_a_clear_error():
    model = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8)
    with pytest.raises(ValueError, match=r"pixel_values must have shape \(batch, 1, H, W\).*got \(2, 3, 8, 8\)"):
        model(pixel_values=torch.randn(2, 3, 8, 8))


def test_save_and_reload_through_auto_classes(tmp_path):
    model = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8, id2label={i: str(i) for i in range(10)})
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "gift_timm" and config["arch"] == "gift_convnet_d3"
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path)
    assert isinstance(reloaded, GIFTClassifier)
    x = torch.randn(3, 1, 8, 8)
    model.eval()
    torch.testing.assert_close(reloaded(pixel_values=x).logits, model(pixel_values=x).logits)


def test_load_teacher_from_directory_is_frozen(tmp_path):
    create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8).save_pretrained(tmp_path)
    teacher = load_teacher(str(tmp_path))
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


def test_load_teacher_from_timm_name_needs_num_classes(tmp_path):
    teacher = load_teacher("gift_convnet_d3", num_classes=4, in_chans=1, img_size=8)
    assert teacher.config.num_labels == 4
    with pytest.raises(ValueError, match="pass num_classes"):
        load_teacher("gift_convnet_d3")
    with pytest.raises(ValueError, match="has no config.json"):
        load_teacher(tmp_path)
