"""The classic dataset-distillation ConvNets, registered in timm's model registry.

ConvNet-D``n`` is ``n`` blocks of ``conv3×3(width) → instance norm → ReLU → avg-pool 2×2``
followed by a linear classifier on the flattened features — the student and expert
architecture of the dataset-distillation literature (width 128). Importing this module
(``import gift_hf`` does) registers ``gift_convnet_d3`` … ``gift_convnet_d6`` so that
``timm.create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8)`` works.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

__all__ = ["ConvNet"]


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "instancenorm":
        # GroupNorm with one group per channel is instance norm with an affine transform,
        # the form the distillation literature uses.
        return nn.GroupNorm(width, width, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(width)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'instancenorm', 'batchnorm' or 'none', got {kind!r}")


class ConvNet(nn.Module):
    """ConvNet-D``depth`` of width ``width`` for ``img_size``×``img_size`` inputs."""

    def __init__(
        self,
        depth: int = 3,
        width: int = 128,
        num_classes: int = 10,
        in_chans: int = 3,
        img_size: int | tuple[int, int] = 32,
        norm: str = "instancenorm",
        pool: str = "avgpool",
        drop_rate: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        height, width_px = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if height >> depth < 1 or width_px >> depth < 1:
            raise ValueError(
                f"img_size {img_size} is too small for depth {depth}: each block halves the size "
                f"(need at least {2**depth} pixels per side)"
            )
        if pool not in ("avgpool", "maxpool"):
            raise ValueError(f"pool must be 'avgpool' or 'maxpool', got {pool!r}")
        layers: list[nn.Module] = []
        channels = in_chans
        for _ in range(depth):
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=1),
                _norm(norm, width),
                nn.ReLU(inplace=True),
                nn.AvgPool2d(2) if pool == "avgpool" else nn.MaxPool2d(2),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.num_features = width * (height >> depth) * (width_px >> depth)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.img_size = (height, width_px)
        self.depth = depth
        self.drop_rate = drop_rate
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # The flattened features feed a linear head sized for img_size: any other input
        # would fail deep inside with a bare shape error, so name the mismatch here.
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"pixel_values must have shape (batch, {self.in_chans}, H, W) for this model, got {tuple(x.shape)}"
            )
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(
                f"pixel_values: got {x.shape[-2]}×{x.shape[-1]} images; this gift_convnet_d{self.depth} "
                f"expects {self.img_size[0]}×{self.img_size[1]} (img_size)"
            )
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.flatten(1)
        if self.drop_rate:
            x = nn.functional.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": None,
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2470, 0.2435, 0.2616),
        "first_conv": "features.0",
        "classifier": "head",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "gift_convnet_d3.untrained": _cfg(),
        "gift_convnet_d4.untrained": _cfg(input_size=(3, 64, 64)),
        "gift_convnet_d5.untrained": _cfg(input_size=(3, 128, 128)),
        "gift_convnet_d6.untrained": _cfg(input_size=(3, 256, 256)),
    }
)


def _create_convnet(variant: str, depth: int, pretrained: bool = False, **kwargs: Any) -> ConvNet:
    if pretrained:
        raise ValueError(
            f"{variant} has no pretrained weights; train one (gift-hf quickstart or gift-hf train-teacher)"
        )
    return build_model_with_cfg(ConvNet, variant, pretrained=False, depth=depth, **kwargs)


@register_model
def gift_convnet_d3(pretrained: bool = False, **kwargs: Any) -> ConvNet:
    """ConvNet-D3 (width 128, instance norm): the CIFAR-scale distillation student."""
    return _create_convnet("gift_convnet_d3", 3, pretrained, **kwargs)


@register_model
def gift_convnet_d4(pretrained: bool = False, **kwargs: Any) -> ConvNet:
    """ConvNet-D4: the Tiny-ImageNet-scale (64×64) distillation student."""
    return _create_convnet("gift_convnet_d4", 4, pretrained, **kwargs)


@register_model
def gift_convnet_d5(pretrained: bool = False, **kwargs: Any) -> ConvNet:
    """ConvNet-D5: for 128×128 inputs."""
    return _create_convnet("gift_convnet_d5", 5, pretrained, **kwargs)


@register_model
def gift_convnet_d6(pretrained: bool = False, **kwargs: Any) -> ConvNet:
    """ConvNet-D6: for 256×256 inputs."""
    return _create_convnet("gift_convnet_d6", 6, pretrained, **kwargs)
