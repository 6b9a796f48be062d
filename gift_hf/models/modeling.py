"""Image classifiers as standard transformers models: students and teachers anyone can load.

:func:`create_model` returns a ``transformers.TimmWrapperForImageClassification`` for any
``timm`` architecture (ours included: ``gift_convnet_d3`` …). ``save_pretrained`` writes
``config.json`` + ``model.safetensors``; ``config.json`` holds the timm ``architecture``,
the label names, ``model_args`` (``in_chans``, ``img_size``, extra constructor arguments)
and ``pretrained_cfg`` (input size, mean, std, interpolation): the last is what
``AutoImageProcessor`` (``TimmWrapperImageProcessor``) reads, so the preprocessing travels
with the weights. A student on a stock timm architecture therefore loads with
``AutoModelForImageClassification`` and ``pipeline("image-classification", model=dir)``
where only transformers and timm are installed; our ConvNets need ``import gift_hf``, and
only for timm's registry.

Checkpoints written by gift_hf 0.1 (``model_type: gift_timm``, :class:`GIFTClassifier`)
still load; :func:`to_timm_wrapper` converts them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import timm
import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
    TimmWrapperConfig,
    TimmWrapperForImageClassification,
)
from transformers.modeling_outputs import ImageClassifierOutput

from gift_hf.data.images import ImageTransform
from gift_hf.models import convnet as _convnet  # noqa: F401  (registers gift_convnet_* in timm)
from gift_hf.models import resnet as _resnet  # noqa: F401  (registers gift_resnet18_modified in timm)

__all__ = [
    "GIFTClassifier",
    "GIFTClassifierConfig",
    "RenormalizeInput",
    "TeacherWithRenormalizedInput",
    "adapt_teacher",
    "check_teacher_preprocessing",
    "create_model",
    "image_transform_for",
    "load_teacher",
    "model_spec",
    "num_classes_of",
    "teacher_logits",
    "to_rgb_student",
    "to_timm_wrapper",
]

DEFAULT_MEAN = (0.5,)
DEFAULT_STD = (0.5,)


# ------------------------------------------------------------------------------ create
def _per_channel(name: str, values: Sequence[float] | None, default: Sequence[float], in_chans: int) -> list[float]:
    values = tuple(default if values is None else values)
    if len(values) not in (1, in_chans):
        raise ValueError(f"{name}: got {list(values)}; expected 1 or in_chans={in_chans} values")
    return [float(v) for v in (values * in_chans if len(values) == 1 else values)]


def _build_timm(arch: str, num_classes: int, model_args: dict[str, Any], img_size: int) -> tuple[nn.Module, dict]:
    """The timm network and the ``model_args`` that rebuild it.

    ``img_size`` reaches architectures whose constructor takes it (our ConvNets, ViTs, …);
    the others are size-agnostic and get it through ``pretrained_cfg`` only.
    """
    try:
        args = {**model_args, "img_size": img_size}
        return timm.create_model(arch, pretrained=False, num_classes=num_classes, **args), args
    except TypeError as err:
        if "img_size" not in str(err):
            raise
    return timm.create_model(arch, pretrained=False, num_classes=num_classes, **model_args), dict(model_args)


def create_model(
    arch: str,
    num_classes: int,
    in_chans: int = 3,
    img_size: int = 32,
    id2label: dict[int, str] | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    **model_kwargs: Any,
) -> TimmWrapperForImageClassification:
    """A freshly initialised ``TimmWrapperForImageClassification`` of any timm architecture.

    The input is stated here, once: ``in_chans``, ``img_size`` and the per-channel
    ``image_mean``/``image_std`` (default 0.5) are saved in ``config.json``
    (``model_args`` and ``pretrained_cfg``), where :func:`image_transform_for`, the
    dataset cards and ``AutoImageProcessor`` read them. ``model_kwargs`` go to
    ``timm.create_model`` (e.g. ``width=64`` for our ConvNets). The weights keep timm's
    own initialisation.

    ``pipeline("image-classification")`` always feeds RGB images: give a student meant
    for it ``in_chans=3`` (``ImageTransform(channels=3)`` turns grayscale data into RGB).

    Example:
        >>> model = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8)
        >>> model(pixel_values=torch.zeros(2, 1, 8, 8)).logits.shape
        torch.Size([2, 10])
    """
    if not isinstance(arch, str) or arch not in timm.list_models(arch):
        raise ValueError(f"unknown timm architecture {arch!r}; see timm.list_models() (ours: gift_convnet_d3..d6)")
    for name, value in (("num_classes", num_classes), ("in_chans", in_chans), ("img_size", img_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: got {value!r}; expected a positive integer")
    mean = _per_channel("image_mean", image_mean, DEFAULT_MEAN, in_chans)
    std = _per_channel("image_std", image_std, DEFAULT_STD, in_chans)
    net, model_args = _build_timm(arch, num_classes, {"in_chans": in_chans, **model_kwargs}, img_size)
    labels = {int(k): str(v) for k, v in id2label.items()} if id2label else {i: str(i) for i in range(num_classes)}
    if sorted(labels) != list(range(num_classes)):
        raise ValueError(f"id2label: got keys {sorted(labels)}; expected every class id 0..{num_classes - 1}")
    config = TimmWrapperConfig(
        architecture=arch,
        num_labels=num_classes,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
        model_args=model_args,
        pretrained_cfg={
            "input_size": [in_chans, img_size, img_size],
            "mean": mean,
            "std": std,
            # crop_pct 1: resize to img_size and keep the whole image, as ImageTransform does.
            "interpolation": "bicubic",
            "crop_pct": 1.0,
            "crop_mode": "center",
        },
    )
    # transformers re-initialises a fresh model's weights with its own scheme (normal,
    # std 0.02): build the wrapper on the meta device (no init, no memory) and put the
    # timm-initialised network in it.
    try:
        with torch.device("meta"):
            model = TimmWrapperForImageClassification(config)
    except RuntimeError:  # timm releases that read values while building (drop-path rates) cannot on meta
        model = TimmWrapperForImageClassification(config)
    model.timm_model = net
    return model


# ------------------------------------------------------------------------ input spec
def _load_config(model: nn.Module | PretrainedConfig | str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """(config or None, preprocessor_config.json contents) of a model, config or saved directory."""
    if isinstance(model, PretrainedConfig):
        return model, {}
    if isinstance(model, nn.Module):
        return getattr(model, "config", None), {}
    path = Path(model)
    if not (path / "config.json").is_file():
        raise ValueError(f"{str(path)!r} has no config.json; expected a directory written by save_pretrained")
    processor = path / "preprocessor_config.json"
    extra = json.loads(processor.read_text()) if processor.is_file() else {}
    return AutoConfig.from_pretrained(path), extra


def model_spec(model: nn.Module | PretrainedConfig | str | os.PathLike) -> dict[str, Any]:
    """The :func:`create_model` keyword arguments that describe a classifier's input.

    Returns ``{"arch", "in_chans", "img_size", "image_mean", "image_std", "model_kwargs"}``
    read from a model, its config or a saved directory: timm-backed models (ours, 0.1
    checkpoints, ``timm/…`` Hub checkpoints) have them all; for other transformers
    classifiers ``num_channels``/``image_size`` and a ``preprocessor_config.json`` are read
    and what is unknown is None.
    """
    config, processor = _load_config(model)
    if isinstance(config, TimmWrapperConfig) or getattr(config, "model_type", None) == "timm_wrapper":
        args = dict(getattr(config, "model_args", None) or {})
        cfg = dict(getattr(config, "pretrained_cfg", None) or {})
        input_size = list(cfg.get("input_size") or [3, 224, 224])
        return {
            "arch": config.architecture,
            "in_chans": int(args.pop("in_chans", input_size[0])),
            "img_size": int(args.pop("img_size", None) or input_size[-1]),
            "image_mean": [float(v) for v in cfg["mean"]] if cfg.get("mean") else None,
            "image_std": [float(v) for v in cfg["std"]] if cfg.get("std") else None,
            "model_kwargs": args,
        }
    if isinstance(config, GIFTClassifierConfig):
        return {
            "arch": config.arch,
            "in_chans": config.in_chans,
            "img_size": config.img_size,
            "image_mean": config.image_mean,
            "image_std": config.image_std,
            "model_kwargs": dict(config.model_kwargs),
        }
    size = getattr(config, "image_size", None)
    size = processor.get("size", size)
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge")
    if isinstance(size, (list, tuple)):
        size = size[0]
    return {
        "arch": (getattr(config, "architectures", None) or [type(model).__name__])[0],
        "in_chans": getattr(config, "num_channels", None),
        "img_size": size,
        "image_mean": processor.get("image_mean"),
        "image_std": processor.get("image_std"),
        "model_kwargs": {},
    }


def image_transform_for(
    model: nn.Module | PretrainedConfig | str | os.PathLike,
    *,
    image_column: str = "image",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> ImageTransform:
    """The :class:`~gift_hf.ImageTransform` a classifier was made for: channels, size, normalisation.

    Read from the saved model (:func:`model_spec`), so training, evaluation, relabelling
    and the cards prepare images the way ``create_model`` was told. ``mean``/``std`` fill
    in what the model does not record (default 0.5).
    """
    spec = model_spec(model)
    channels = spec["in_chans"] or 3
    if channels not in (1, 3):
        raise ValueError(f"{spec['arch']} takes {channels}-channel images; ImageTransform makes 1 or 3 channels")
    return ImageTransform(
        image_size=spec["img_size"],
        channels=int(channels),
        mean=tuple(spec["image_mean"] or mean or DEFAULT_MEAN),
        std=tuple(spec["image_std"] or std or DEFAULT_STD),
        image_column=image_column,
    )


# -------------------------------------------------------------------------- teachers
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
    (ours, any transformers image classifier, or a timm checkpoint with its
    ``config.json``); a Hub id of an ``AutoModelForImageClassification`` checkpoint
    (``timm/…`` ones included); or a timm architecture name, created fresh with
    ``init_kwargs`` (``num_classes``, ``in_chans``, ``img_size``, …); or a torchvision
    state-dict file (``.pth``, ``.pt``, ``.bin`` or ``.safetensors``, read without running
    code) with ``arch`` (and optionally ``num_classes``) in ``init_kwargs``. Remote code is never
    run unless ``trust_remote_code=True``. A local path that does not exist is a
    ``FileNotFoundError`` ("not found"); ``role`` names the model in errors (``"teacher"``,
    ``"student"``).
    """
    from gift_hf.files import check_local_path

    if isinstance(teacher, nn.Module):
        model = teacher
    else:
        name = check_local_path(teacher, role)
        if os.path.isdir(name):
            if not os.path.isfile(os.path.join(name, "config.json")):
                raise ValueError(f"{role} directory {name!r} has no config.json; save it with save_pretrained")
            kwargs = dict(init_kwargs)
            try:
                config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
                if isinstance(config, TimmWrapperConfig) and "num_classes" in (config.model_args or {}):
                    # timm's own save_for_hf repeats num_classes in model_args, which
                    # TimmWrapper would pass to timm twice.
                    config.model_args = {k: v for k, v in config.model_args.items() if k != "num_classes"}
                    kwargs["config"] = config
                model = AutoModelForImageClassification.from_pretrained(
                    name, trust_remote_code=trust_remote_code, **kwargs
                )
            except Exception as err:  # missing or unreadable weights, bad config.json
                from gift_hf.files import check_saved_files

                check_saved_files(name, role)  # a corrupt or truncated file: named, with what to do
                if not isinstance(err, OSError):
                    raise
                raise ValueError(f"{role} directory {name!r} cannot be loaded: {err}") from None
        elif os.path.isfile(name) and name.endswith(STATE_DICT_SUFFIXES):
            model = _load_torchvision(name, role, **init_kwargs)
        elif os.path.lexists(name):
            raise ValueError(
                f"{role} {name!r} is a file; expected a directory saved with save_pretrained "
                "(config.json + model.safetensors), a torchvision state dict "
                f"({', '.join(STATE_DICT_SUFFIXES)}), a Hub model id or a timm architecture name"
            )
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
                raise ValueError(
                    f"{role} {name!r} not found: no local directory or timm architecture of that name, "
                    f"and the Hub model {name!r} could not be loaded ({type(err).__name__}); expected a "
                    "directory saved with save_pretrained, a timm architecture name or an existing Hub "
                    "model id"
                ) from None
    model.eval()
    model.requires_grad_(False)
    return model


STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
"""Files :func:`load_teacher` reads as a torchvision model's state dict."""


def _load_torchvision(
    path: str, role: str, arch: str | None = None, num_classes: int | None = None, **kwargs: Any
) -> nn.Module:
    """A torchvision classifier ``arch`` with the state dict saved in ``path``.

    ``.safetensors`` files are read with safetensors, the others with
    ``torch.load(weights_only=True)`` (tensors only, no code); a training checkpoint's
    ``{"state_dict": …}`` and DDP's ``module.`` prefixes are accepted. ``num_classes``
    defaults to the rows of the last 2-D weight (the classifier).
    """
    import torchvision
    from safetensors.torch import load_file

    if arch is None:
        raise ValueError(
            f"{role} {path!r} is a file; expected a directory saved with save_pretrained (config.json "
            "+ model.safetensors), or for a torchvision state dict its architecture named by arch in the "
            'init kwargs, e.g. --teacher_model_init_kwargs \'{"arch": "resnet18"}\''
        )
    if arch not in torchvision.models.list_models():
        raise ValueError(f"arch: got {arch!r}; expected a torchvision model name (torchvision.models.list_models())")
    state = (
        load_file(path) if path.endswith(".safetensors") else torch.load(path, map_location="cpu", weights_only=True)
    )
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{role} {path!r}: expected a state dict (parameter name → tensor)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if num_classes is None:
        matrices = [v for v in state.values() if v.dim() == 2]
        if not matrices:
            raise ValueError(f"{role} {path!r}: no classifier weight to read num_classes from; pass num_classes")
        num_classes = int(matrices[-1].shape[0])
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(
            f"{role} {path!r} does not hold a torchvision {arch} of {num_classes} classes: {err}"
        ) from None
    model.num_classes = num_classes  # read by num_classes_of
    return model


def teacher_logits(teacher: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """Logits of a teacher (ours, a transformers classifier, or a bare timm/torch module)."""
    out = teacher(pixel_values=pixel_values) if isinstance(teacher, PreTrainedModel) else teacher(pixel_values)
    return out.logits if hasattr(out, "logits") else out


# ------------------------------------------------------- teacher against student input
def _input_of(model: nn.Module | PretrainedConfig | str | os.PathLike) -> dict[str, Any]:
    """``{"channels", "size", "mean", "std"}`` a model was made for; mean/std per channel, None unknown."""
    has_config = not isinstance(model, nn.Module) or getattr(model, "config", None) is not None
    spec = model_spec(model) if has_config else {}
    channels = spec.get("in_chans")

    def per_channel(values: Sequence[float] | None) -> list[float] | None:
        if not values:
            return None
        values = [float(v) for v in values]
        return values * channels if channels and len(values) == 1 else values

    return {
        "channels": channels,
        "size": spec.get("img_size"),
        "mean": per_channel(spec.get("image_mean")),
        "std": per_channel(spec.get("image_std")),
    }


class RenormalizeInput(nn.Module):
    """Pixels normalised with ``(mean_from, std_from)`` → the same pixels normalised with ``(mean_to, std_to)``.

    ``x_to = (x_from · std_from + mean_from − mean_to) / std_to``, per channel, computed as
    ``x_from · scale + shift`` (exact up to float rounding): the teacher then sees the student's
    batch exactly as its own preprocessing would have made it.
    """

    def __init__(
        self, mean_from: Sequence[float], std_from: Sequence[float], mean_to: Sequence[float], std_to: Sequence[float]
    ) -> None:
        super().__init__()
        mean_from, std_from, mean_to, std_to = (
            torch.tensor(v, dtype=torch.float64).view(-1, 1, 1) for v in (mean_from, std_from, mean_to, std_to)
        )
        self.register_buffer("scale", (std_from / std_to).float(), persistent=False)
        self.register_buffer("shift", ((mean_from - mean_to) / std_to).float(), persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pixel_values * self.scale.to(pixel_values.dtype) + self.shift.to(pixel_values.dtype)


class TeacherWithRenormalizedInput(nn.Module):
    """A teacher that takes the student's batches: :class:`RenormalizeInput`, then the teacher.

    Called like a bare module (``teacher(pixel_values) → logits``, what
    :func:`teacher_logits` does with it); ``config`` is the teacher's, so its class count
    still reads off it.
    """

    def __init__(self, teacher: nn.Module, renormalize: RenormalizeInput) -> None:
        super().__init__()
        self.teacher, self.renormalize = teacher, renormalize
        self.config = getattr(teacher, "config", None)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return teacher_logits(self.teacher, self.renormalize(pixel_values))


def check_teacher_preprocessing(
    teacher: nn.Module | PretrainedConfig | str | os.PathLike,
    student: nn.Module | PretrainedConfig | str | os.PathLike,
    *,
    teacher_role: str = "teacher",
) -> RenormalizeInput | None:
    """Check that ``teacher`` can label ``student``'s batches; return the conversion they need.

    The teacher must see images in its own preprocessing (read by :func:`model_spec`: input
    channels, size, mean, std). Another number of channels or another input size cannot be
    undone from the student's batch: a ``ValueError`` naming both. Another mean/std can: the
    :class:`RenormalizeInput` to apply to the student's ``pixel_values`` before the teacher
    (:func:`adapt_teacher` wraps the teacher with it). None when the two agree, or when a model
    does not record what would be compared.
    """
    t, s = _input_of(teacher), _input_of(student)
    for key, what in (("channels", "{}-channel images"), ("size", "{0}×{0} images")):
        if t[key] is not None and s[key] is not None and t[key] != s[key]:
            raise ValueError(
                f"{teacher_role}: the teacher takes {what.format(t[key])} but the student's batches are "
                f"{what.format(s[key])}; expected the teacher's own preprocessing (a teacher cannot label images "
                "of another size or number of channels: use a teacher made for the student's input, or train the "
                "student at the teacher's --image_size/--channels)"
            )
    if None in (t["mean"], t["std"], s["mean"], s["std"]):
        return None
    if len(t["mean"]) != len(s["mean"]) or len(t["std"]) != len(s["std"]):
        raise ValueError(
            f"{teacher_role}: the teacher normalises {len(t['mean'])} channel(s) (mean {t['mean']}) "
            f"but the student {len(s['mean'])} (mean {s['mean']}); expected the same channels"
        )
    if t["mean"] == s["mean"] and t["std"] == s["std"]:
        return None
    return RenormalizeInput(s["mean"], s["std"], t["mean"], t["std"])


def adapt_teacher(
    teacher: nn.Module, student: nn.Module | PretrainedConfig | str | os.PathLike, *, teacher_role: str = "teacher"
) -> nn.Module:
    """``teacher`` itself when it takes the student's batches as they are, else the teacher behind the
    exact mean/std conversion (:func:`check_teacher_preprocessing`; refused for another size or channels)."""
    renormalize = check_teacher_preprocessing(teacher, student, teacher_role=teacher_role)
    if renormalize is None:
        return teacher
    weight = next(teacher.parameters(), None)
    if weight is not None:
        renormalize = renormalize.to(weight.device)
    return TeacherWithRenormalizedInput(teacher, renormalize)


# ---------------------------------------------------------------- gift_hf 0.1 models
class GIFTClassifierConfig(PretrainedConfig):
    """Configuration of a gift_hf 0.1 checkpoint (``model_type: gift_timm``); loaded for compatibility.

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
    """A gift_hf 0.1 checkpoint: a timm model behind the image-classification interface.

    New models are ``TimmWrapperForImageClassification`` (:func:`create_model`); convert
    an old one with :func:`to_timm_wrapper`.
    """

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
        # timm initialises its own weights in the constructor.
        pass

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs: Any
    ) -> ImageClassifierOutput:
        logits = self.timm_model(pixel_values)
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(GIFTClassifierConfig.model_type, GIFTClassifierConfig, exist_ok=True)
AutoModelForImageClassification.register(GIFTClassifierConfig, GIFTClassifier, exist_ok=True)


def to_timm_wrapper(model: GIFTClassifier | str | os.PathLike) -> TimmWrapperForImageClassification:
    """A gift_hf 0.1 :class:`GIFTClassifier` (or its directory) as a ``TimmWrapperForImageClassification``.

    Same architecture, weights, labels and normalisation; ``save_pretrained`` the result to
    publish a checkpoint that loads without gift_hf.
    """
    if not isinstance(model, nn.Module):
        model = AutoModelForImageClassification.from_pretrained(os.fspath(model))
    if not isinstance(model, GIFTClassifier):
        raise TypeError(f"model: got {type(model).__name__}; expected a GIFTClassifier (model_type 'gift_timm')")
    spec = model_spec(model)
    converted = create_model(
        spec["arch"],
        model.config.num_labels,
        in_chans=spec["in_chans"],
        img_size=spec["img_size"],
        id2label=model.config.id2label,
        image_mean=spec["image_mean"],
        image_std=spec["image_std"],
        **spec["model_kwargs"],
    )
    converted.timm_model.load_state_dict(model.timm_model.state_dict())
    return converted.train(model.training)


def to_rgb_student(model: nn.Module | str | os.PathLike) -> TimmWrapperForImageClassification:
    """A grayscale (1-channel) student as an exactly equivalent RGB (3-channel) one.

    ``pipeline("image-classification")`` feeds RGB images, so a 1-channel student cannot be
    used with it. On a gray image given as RGB (R = G = B) the copy computes the same logits:
    every input-channel weight of the first layer is the 1-channel weight divided by 3 and
    repeated over the channels, and its normalisation repeats
    the mean and std, so each normalised channel equals the 1-channel input and the three
    thirds add up to the original response. ``save_pretrained`` the result to publish a
    pipeline-ready checkpoint (a stock timm architecture then needs no gift_hf).
    """
    if not isinstance(model, nn.Module):
        model = load_teacher(model, role="model").requires_grad_(True)
    if isinstance(model, GIFTClassifier):
        model = to_timm_wrapper(model)
    if not isinstance(model, TimmWrapperForImageClassification):
        raise TypeError(f"model: got {type(model).__name__}; expected a TimmWrapperForImageClassification student")
    spec = model_spec(model)
    if spec["in_chans"] != 1:
        raise ValueError(f"model: in_chans is {spec['in_chans']}; expected a grayscale (in_chans=1) student")
    rgb = create_model(
        spec["arch"],
        model.config.num_labels,
        in_chans=3,
        img_size=spec["img_size"],
        id2label=model.config.id2label,
        image_mean=list(spec["image_mean"]) * 3,
        image_std=list(spec["image_std"]) * 3,
        **spec["model_kwargs"],
    )
    state = model.timm_model.state_dict()
    target = rgb.timm_model.state_dict()
    # The layers that read the input are the ones whose shape depends on in_chans.
    adapted = [k for k in state if state[k].shape != target[k].shape]
    for key in adapted:
        if state[key].dim() < 2 or state[key].shape[1] != 1 or target[key].shape[1] != 3:
            raise ValueError(f"model: cannot adapt {key!r} of shape {tuple(state[key].shape)} to 3 input channels")
        state[key] = state[key].repeat(1, 3, *[1] * (state[key].dim() - 2)) / 3
    if not adapted:
        raise ValueError(f"model: no input layer of {spec['arch']!r} depends on in_chans; cannot convert it")
    rgb.timm_model.load_state_dict(state)
    return rgb.train(model.training)
