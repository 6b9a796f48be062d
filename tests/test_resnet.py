"""gift_resnet18_modified: the CIFAR-style ResNet-18 (3×3 stride-1 stem, no max-pool) in timm's registry."""

import timm
import torch
from torch import nn

from gift_hf import create_model
from gift_hf.models.resnet import ModifiedResNet


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_registered_and_created_by_timm():
    assert "gift_resnet18_modified" in timm.list_models("gift_*")
    model = timm.create_model("gift_resnet18_modified", num_classes=200, in_chans=3)
    assert isinstance(model, ModifiedResNet)
    assert model.pretrained_cfg["architecture"] == "gift_resnet18_modified"
    conv = model.conv1
    assert (conv.kernel_size, conv.stride, conv.padding, conv.bias) == ((3, 3), (1, 1), (1, 1), None)
    assert isinstance(model.maxpool, nn.Identity)


def test_forward_shapes_keep_resolution_in_the_stem():
    model = timm.create_model("gift_resnet18_modified", num_classes=10).eval()
    for size in (32, 64):
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            features = model.forward_features(x)
            logits = model(x)
        # stem stride 1, stages 1/2/4/8: output stride 8 (timm's resnet18: 32)
        assert features.shape == (2, 512, size // 8, size // 8)
        assert logits.shape == (2, 10)
    with torch.no_grad():
        reference = timm.create_model("resnet18", num_classes=10).eval().forward_features(torch.randn(2, 3, 64, 64))
    assert reference.shape == (2, 512, 2, 2)
    maps = timm.create_model("gift_resnet18_modified", features_only=True)(torch.randn(1, 3, 32, 32))
    assert [tuple(m.shape[-2:]) for m in maps] == [(32, 32), (32, 32), (16, 16), (8, 8), (4, 4)]


def test_parameter_count_against_hand_computation():
    for in_chans, classes in ((3, 10), (1, 100)):
        modified = timm.create_model("gift_resnet18_modified", num_classes=classes, in_chans=in_chans)
        standard = timm.create_model("resnet18", num_classes=classes, in_chans=in_chans)
        # only the stem convolution differs: 64 filters of in_chans×7×7 become in_chans×3×3 (no bias)
        assert n_params(standard) - n_params(modified) == 64 * in_chans * (7 * 7 - 3 * 3)
    # hand count: ResNet-18 has 11,689,512 parameters with a 1000-way head (512·1000 + 1000);
    # a 10-way head (512·10 + 10) leaves 11,689,512 − 513,000 + 5,130 = 11,181,642
    assert n_params(timm.create_model("resnet18", num_classes=10)) == 11_181_642
    assert n_params(timm.create_model("gift_resnet18_modified", num_classes=10)) == 11_181_642 - 7_680


def test_create_model_wraps_it_for_the_trainer():
    model = create_model("gift_resnet18_modified", 100, in_chans=3, img_size=64)
    out = model(pixel_values=torch.randn(2, 3, 64, 64), labels=torch.tensor([0, 99]))
    assert out.logits.shape == (2, 100) and torch.isfinite(out.loss)
