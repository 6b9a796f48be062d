"""The CIFAR-style ("modified") ResNet-18, registered in timm's model registry.

The distillation evaluations of RDED and SRe2L train and relabel small images (32 px
CIFAR, 64 px Tiny-ImageNet) with a ResNet-18 whose stem keeps the resolution: a 3×3,
stride-1 convolution in place of the 7×7, stride-2 one, and no max-pool. Everything else
is timm's ``resnet18`` (basic blocks ``[2, 2, 2, 2]``, batch norm, global average pool).
Importing this module (``import gift_hf`` does) registers ``gift_resnet18_modified`` so
that ``timm.create_model("gift_resnet18_modified", num_classes=200)`` works.
"""

from __future__ import annotations

from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

__all__ = ["ModifiedResNet"]


class ModifiedResNet(ResNet):
    """timm's :class:`~timm.models.resnet.ResNet` with a 3×3 stride-1 stem and no max-pool.

    Output stride is 8 instead of 32: a 32 px input reaches the pooling as 4×4 features.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stem_width = self.conv1.out_channels
        self.conv1 = nn.Conv2d(self.conv1.in_channels, stem_width, kernel_size=3, stride=1, padding=1, bias=False)
        # timm's ResNet initialisation of convolutions (kaiming normal, fan-out, ReLU).
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()
        # Each stage now reduces 4x less than in the ImageNet stem (features_only users read these).
        for info in self.feature_info:
            info["reduction"] = max(1, info["reduction"] // 4)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (4, 4),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2470, 0.2435, 0.2616),
        "first_conv": "conv1",
        "classifier": "fc",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "gift_resnet18_modified.untrained": _cfg(),
    }
)


def _create_resnet(variant: str, pretrained: bool = False, **kwargs: Any) -> ModifiedResNet:
    if pretrained:
        raise ValueError(f"{variant} has no pretrained weights; train one (e.g. with the teacher-training recipe)")
    # GIFTClassifier passes img_size to every gift_* architecture; a ResNet pools globally
    # and accepts any size, so it is not needed.
    kwargs.pop("img_size", None)
    return build_model_with_cfg(ModifiedResNet, variant, pretrained=False, **kwargs)


@register_model
def gift_resnet18_modified(pretrained: bool = False, **kwargs: Any) -> ModifiedResNet:
    """ResNet-18 with a 3×3 stride-1 stem and no max-pool: the CIFAR/Tiny-ImageNet teacher and student."""
    model_args = dict(block=BasicBlock, layers=(2, 2, 2, 2))
    return _create_resnet("gift_resnet18_modified", pretrained, **dict(model_args, **kwargs))
