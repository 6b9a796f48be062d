"""timm-backed image classifiers that `transformers.Trainer` trains, saves and reloads.

:class:`GIFTClassifier` wraps any ``timm`` architecture (ours included: ``gift_convnet_d3``
…) as a ``PreTrainedModel``: ``forward(pixel_values, labels=None)`` returns an
``ImageClassifierOutput``, ``save_pretrained`` writes ``config.json`` +
``model.safetensors``, and ``AutoModelForImageClassification.from_pretrained(dir)`` reloads
it once ``gift_hf`` is imported. Teachers may also be any transformers image classifier.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import timm
import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import ImageClassifierOutput

from . import convnet as _convnet  # noqa: F401  (registers gift_convnet_* in timm)
from . import resnet as _resnet  # noqa: F401  (registers gift_resnet18_modified in timm)

__all__ = ["GIFTClassifier", "GIFTClassifierConfig", "create_model", "load_teacher", "num_classes_of"]


class GIFTClassifierConfig(PretrainedConfig):
    """Configuration of a :class:`GIFTClassifier`: which timm architecture and its input.

    Args:
        arch: a timm model name (``resnet18``, ``gift_convnet_d3``, …).
        num_labels: number of classes.
        in_chans: input channels.
        img_size: input height/width; passed to architectures that take it (``gift_*``).
        model_kwargs: extra keyword arguments for ``timm.create_model``.
        image_mean, image_std: per-channel normalisation the model was trained with.
    """

    model_type = "gift_timm"

    def __init__(
        self,
        arch: str = "gift_convnet_d3",
        in_chans: int = 3,
        img_size: int = 32,
        model_kwargs: dict[str, Any] | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        self.arch = arch
        self.in_chans = in_chans
        self.img_size = img_size
        self.model_kwargs = dict(model_kwargs or {})
        self.image_mean = list(image_mean) if image_mean is not None else None
        self.image_std = list(image_std) if image_std is not None else None
        super().__init__(**kwargs)


class GIFTClassifier(PreTrainedModel):
    """A timm model behind the transformers image-classification interface."""

    config_class = GIFTClassifierConfig
    base_model_prefix = "timm_model"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = False

    def __init__(self, config: GIFTClassifierConfig) -> None:
        super().__init__(config)
        kwargs = dict(config.model_kwargs)
        if config.arch.startswith("gift_"):
            kwargs.setdefault("img_size", config.img_size)
        self.timm_model = timm.create_model(
            config.arch, pretrained=False, num_classes=config.num_labels, in_chans=config.in_chans, **kwargs
        )
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # timm initialises its own weights in the constructor; re-initialising here would
        # replace timm's scheme with transformers' defaults.
        pass

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs: Any
    ) -> ImageClassifierOutput:
        expected = self.config.in_chans
        if pixel_values.dim() != 4 or pixel_values.shape[1] != expected:
            raise ValueError(
                f"pixel_values must have shape (batch, {expected}, H, W) for this model, "
                f"got {tuple(pixel_values.shape)}"
            )
        if self.config.arch.startswith("gift_"):
            # Our ConvNets flatten into a linear head sized for config.img_size: any other
            # size would fail deep inside with an unhelpful matmul shape error.
            size = self.config.model_kwargs.get("img_size", self.config.img_size)
            height, width = (size, size) if isinstance(size, int) else tuple(size)
            if tuple(pixel_values.shape[-2:]) != (height, width):
                raise ValueError(
                    f"pixel_values: got {pixel_values.shape[-2]}×{pixel_values.shape[-1]} images; this "
                    f"{self.config.arch} expects {height}×{width} (config.img_size)"
                )
        logits = self.timm_model(pixel_values)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.float(), labels)
        return ImageClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(GIFTClassifierConfig.model_type, GIFTClassifierConfig, exist_ok=True)
AutoModelForImageClassification.register(GIFTClassifierConfig, GIFTClassifier, exist_ok=True)


def create_model(
    arch: str,
    num_classes: int,
    in_chans: int = 3,
    img_size: int = 32,
    id2label: dict[int, str] | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    **model_kwargs: Any,
) -> GIFTClassifier:
    """Create a freshly initialised classifier from any timm architecture name.

    Example:
        >>> model = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8)
        >>> model(pixel_values=torch.zeros(2, 1, 8, 8)).logits.shape
        torch.Size([2, 10])
    """
    if arch not in timm.list_models(arch):
        raise ValueError(f"unknown timm architecture {arch!r}; see timm.list_models() (ours: gift_convnet_d3..d6)")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    config = GIFTClassifierConfig(
        arch=arch,
        in_chans=in_chans,
        img_size=img_size,
        model_kwargs=model_kwargs,
        image_mean=image_mean,
        image_std=image_std,
        num_labels=num_classes,
        **({"id2label": dict(id2label), "label2id": {v: k for k, v in id2label.items()}} if id2label else {}),
    )
    return GIFTClassifier(config)


def num_classes_of(model: nn.Module) -> int | None:
    """Number of output classes of a classifier, if it can be read off its config."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "num_labels", None) is not None:
        return int(config.num_labels)
    return getattr(model, "num_classes", None)


def load_teacher(
    teacher: str | os.PathLike | nn.Module,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    role: str = "teacher",
    **init_kwargs: Any,
) -> nn.Module:
    """Load a teacher classifier, frozen and in eval mode.

    ``teacher`` may be a model instance; a local directory saved by ``save_pretrained``
    (ours: ``config.json`` + ``model.safetensors``; or any transformers image classifier);
    a Hub id of an ``AutoModelForImageClassification`` checkpoint; or a timm architecture
    name, created fresh with ``init_kwargs`` (``num_classes``, ``in_chans``, ``img_size``).
    Remote code is never run unless ``trust_remote_code=True``. A local path that does not
    exist is a ``FileNotFoundError`` ("not found"); ``role`` names the model in errors
    (``"teacher"``, ``"student"``).
    """
    from .distilled import check_local_path

    if isinstance(teacher, nn.Module):
        model = teacher
    else:
        name = check_local_path(teacher, role)
        if os.path.isdir(name):
            if not os.path.isfile(os.path.join(name, "config.json")):
                raise ValueError(f"{role} directory {name!r} has no config.json; save it with save_pretrained")
            try:
                model = AutoModelForImageClassification.from_pretrained(
                    name, trust_remote_code=trust_remote_code, **init_kwargs
                )
            except OSError as err:  # missing or unreadable weights, bad config.json
                raise ValueError(f"{role} directory {name!r} cannot be loaded: {err}") from None
        elif os.path.lexists(name):
            raise ValueError(f"{role} {name!r} is a file; expected a directory saved with save_pretrained "
                             "(config.json + model.safetensors), a Hub model id or a timm architecture name")
        elif "/" not in name and timm.list_models(name):
            kwargs = dict(init_kwargs)
            num_classes = kwargs.pop("num_classes", None)
            if num_classes is None:
                raise ValueError(f"{role} {name!r} is a timm architecture: pass num_classes in teacher init kwargs")
            model = create_model(name, num_classes, **kwargs)
        else:
            try:
                model = AutoModelForImageClassification.from_pretrained(
                    name, revision=revision, trust_remote_code=trust_remote_code, **init_kwargs
                )
            except OSError as err:  # offline, unknown repo, no access
                raise ValueError(f"{role} {name!r} not found: no local directory or timm architecture of that name, "
                                 f"and the Hub model {name!r} could not be loaded ({type(err).__name__}); expected a "
                                 "directory saved with save_pretrained, a timm architecture name or an existing Hub "
                                 "model id") from None
    model.eval()
    model.requires_grad_(False)
    return model


def teacher_logits(teacher: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """Logits of a teacher (ours, a transformers classifier, or a bare timm/torch module)."""
    out = teacher(pixel_values=pixel_values) if isinstance(teacher, PreTrainedModel) else teacher(pixel_values)
    return out.logits if hasattr(out, "logits") else out
