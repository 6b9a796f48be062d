"""Model cards for students: what a student learnt from, how, and how well.

:func:`build_model_card` renders a ``huggingface_hub.ModelCard``: YAML the Hub reads
(license, tags ``dataset-distillation``/``gift_hf``/the loss, the distilled dataset, and the
evaluation results in the ``model-index`` format), a ``gift_hf`` block with the whole story
(base architecture and input, distilled set with fingerprint and IPC, teacher, loss and its
parameters, protocol, seed, training settings), and a body with a ``pipeline`` snippet.

In a ``transformers.Trainer`` the card is written beside every saved student:
:class:`ModelCardCallback` carries what the Trainer cannot know (dataset id, provenance,
protocol, license) and writes ``README.md`` into each checkpoint; :func:`save_model_card`
writes it into any folder the trainer saved the model to (``save_model``,
``create_model_card`` for ``push_to_hub``).
"""

from __future__ import annotations

import enum
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import nn
from transformers import TrainerCallback

from gift_hf.data.distilled import DistilledInfo
from gift_hf.files import atomic_write_text
from gift_hf.models.modeling import model_spec

__all__ = ["ModelCardCallback", "build_model_card", "save_model_card", "write_model_card"]

CARD_KEY = "gift_hf"
DEFAULT_TAGS = ("dataset-distillation", "gift_hf", "image-classification")
# Trainer metrics that describe speed, not the model.
_NOT_SCORES = ("runtime", "samples_per_second", "steps_per_second", "epoch")
# TrainingArguments fields a reader needs to reproduce the training.
_TRAINING_FIELDS = ("num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
                    "learning_rate", "weight_decay", "optim", "lr_scheduler_type", "warmup_steps",
                    "soft_label_source", "soft_label_kind", "augmentation", "augmentation_mode", "mix", "mix_prob",
                    "mix_beta", "zca", "zca_epsilon", "bf16", "fp16")


def _is_hub_id(name: str | None) -> bool:
    return bool(name) and not os.path.exists(name) and re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None


def _plain(value: Any) -> Any:
    """YAML-safe copy: enums by value, tuples as lists, non-finite floats as strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _scores(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """``{"eval_accuracy": 0.9, "eval_runtime": 1.2}`` → ``{"accuracy": 0.9}``."""
    out = {}
    for key, value in (metrics or {}).items():
        name = key.split("_", 1)[1] if key.startswith(("eval_", "test_")) else key
        if isinstance(value, (int, float)) and not isinstance(value, bool) and name not in _NOT_SCORES:
            out[name] = float(value)
    return out


def _protocol_record(protocol: Any) -> dict[str, Any] | None:
    """The protocol's name and settings: a preset name, or a ``GIFTConfig`` named after the
    preset whose settings it keeps (epochs and seed may differ), else ``"custom"``."""
    from gift_hf.engine.config import PROTOCOLS, GIFTConfig

    if isinstance(protocol, str):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol: got {protocol!r}; expected a GIFTConfig or one of {sorted(PROTOCOLS)}")
        return {"name": protocol, **_plain({k: v for k, v in PROTOCOLS[protocol].items() if k != "seed"})}
    if not isinstance(protocol, GIFTConfig):
        return None

    def value(name: str) -> Any:
        return _plain(getattr(protocol, name))

    fields = sorted({k for preset in PROTOCOLS.values() for k in preset} - {"seed"} | {"max_steps"})
    name = next((n for n, preset in PROTOCOLS.items()
                 if all(value(k) == _plain(v) for k, v in preset.items() if k not in ("num_train_epochs", "seed"))),
                "custom")
    return {"name": name, **{k: value(k) for k in fields}}


def _loss(args: Any) -> tuple[str | None, dict[str, Any]]:
    if args is None or getattr(args, "loss", None) is None:
        return None, {}
    if hasattr(args, "build_loss"):
        loss = args.build_loss()
        return loss.name, dict(loss.kwargs)
    return str(args.loss), {}


def build_model_card(
    model: nn.Module,
    args: Any = None,
    *,
    dataset: str | None = None,
    distilled_info: DistilledInfo | None = None,
    dataset_fingerprint: str | None = None,
    teacher: str | None = None,
    protocol: "str | GIFTConfig | None" = None,  # noqa: F821
    eval_results: Mapping[str, Any] | None = None,
    eval_dataset: str | None = None,
    eval_split: str = "test",
    license: str | None = None,
    repo_id: str | None = None,
    model_name: str | None = None,
    tags: Sequence[str] = (),
) -> "ModelCard":  # noqa: F821  (huggingface_hub, imported lazily)
    """The model card of a student.

    Args:
        model: the student (its architecture and input are read with :func:`model_spec`).
        args: its ``GIFTConfig``: loss and parameters, seed, teacher, training settings.
        dataset: the distilled set it was trained on (Hub id or local path).
        distilled_info: that set's provenance (IPC, source, method, soft labels).
        dataset_fingerprint: the ``datasets`` fingerprint of the training split.
        teacher: the teacher (Hub id or path); default ``args.teacher_model_name_or_path``.
        protocol: the protocol it was trained under: a ``GIFTConfig`` or a preset name of
            :data:`gift_hf.engine.config.PROTOCOLS` (``"gift"``, ``"label_paper"``); default ``args``.
            Recorded with the preset it matches (``"custom"`` when none).
        eval_results: metrics (``trainer.evaluate()`` output or ``{"accuracy": 0.93}``).
        eval_dataset, eval_split: the data the metrics were measured on (default: the
            distilled set's source).
        license: the model's license; default: the distilled set's card's, else ``unknown``.
        repo_id: the Hub id the student is published under (used in the snippet).
        model_name: the name in the card and ``model-index``; default: ``repo_id``'s, else
            ``student``.
        tags: extra tags.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    spec = model_spec(model)
    info = distilled_info or DistilledInfo()
    loss_name, loss_params = _loss(args)
    teacher = teacher or getattr(args, "teacher_model_name_or_path", None) or (
        info.teacher_id if isinstance(info.teacher_id, str) else None)
    if loss_name is not None and getattr(args, "soft_label_source", None) == "none":
        teacher = None
    protocol_record = _protocol_record(protocol if protocol is not None else args)
    if license is None and dataset is not None:
        from huggingface_hub.errors import HfHubHTTPError

        from gift_hf.data.distilled import card_license

        try:
            license = card_license(dataset) if (os.path.isdir(dataset) or _is_hub_id(dataset)) else None
        except (OSError, ValueError, HfHubHTTPError):  # no card, offline, private, …
            license = None
    scores = _scores(eval_results)
    model_name = model_name or (repo_id or "student").split("/")[-1]
    evaluated_on = eval_dataset or info.source_dataset or dataset or "unknown"
    results = [
        EvalResult(task_type="image-classification", task_name="Image Classification", dataset_type=evaluated_on,
                   dataset_name=evaluated_on, dataset_split=eval_split, metric_type=name, metric_value=value,
                   metric_name=name.replace("_", " ").capitalize())
        for name, value in scores.items()
    ]
    training = {name: _plain(getattr(args, name)) for name in _TRAINING_FIELDS if hasattr(args, name)}
    record = {
        "architecture": spec["arch"],
        "input": {k: spec[k] for k in ("in_chans", "img_size", "image_mean", "image_std")},
        "model_kwargs": spec["model_kwargs"] or None,
        "dataset": dataset,
        "dataset_fingerprint": dataset_fingerprint,
        "ipc": info.ipc,
        "source_dataset": info.source_dataset,
        "distillation_method": info.method,
        "stored_soft_labels": info.soft_label_kind,
        "teacher": teacher,
        "loss": loss_name,
        "loss_params": loss_params or None,
        "protocol": protocol_record,
        "seed": getattr(args, "seed", None),
        "training": training or None,
    }
    from gift_hf import __version__

    record["library_version"] = __version__
    record = {k: v for k, v in record.items() if v is not None}
    card_data = ModelCardData(
        license=license or "unknown",
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=sorted({*DEFAULT_TAGS, *tags, *([loss_name] if loss_name else []), spec["arch"]}),
        datasets=[dataset] if _is_hub_id(dataset) else None,
        model_name=model_name,
        eval_results=results or None,
    )
    setattr(card_data, CARD_KEY, _plain(record))
    body = "\n".join([
        f"# {model_name}",
        "",
        f"A `{spec['arch']}` image classifier trained by gift_hf on the distilled dataset "
        f"{f'`{dataset}`' if dataset else '(not recorded)'}"
        + (f" ({info.ipc} images per class)" if info.ipc else "")
        + (f" with the `{loss_name}` loss" if loss_name else "") + ".",
        "",
        "## Use it",
        "",
        _usage_snippet(spec, repo_id),
        "",
        "## How it was trained",
        "",
        *_describe(record, info),
        "",
        "## Evaluation",
        "",
        *(["| metric | value | data |", "| --- | --- | --- |"]
          + [f"| {name} | {value:.4g} | {evaluated_on} ({eval_split}) |" for name, value in scores.items()]
          if scores else ["Not evaluated yet."]),
        "",
    ])
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")


def _usage_snippet(spec: dict[str, Any], repo_id: str | None) -> str:
    where = repo_id or "<repo_id or local directory>"
    registry = "import gift_hf  # registers gift_hf's ConvNets in timm\n" if spec["arch"].startswith("gift_") else ""
    if spec["in_chans"] == 3:
        return (
            "```python\n"
            f"{registry}from transformers import pipeline\n\n"
            f'classify = pipeline("image-classification", model="{where}")\n'
            'classify("image.png")\n'
            "```"
        )
    # pipeline() feeds RGB images; a grayscale student takes its own transform.
    return (
        "```python\n"
        "import torch\n"
        "from PIL import Image\n"
        "from transformers import AutoModelForImageClassification\n"
        "from gift_hf import image_transform_for\n\n"
        f'model = AutoModelForImageClassification.from_pretrained("{where}").eval()\n'
        "pixels = image_transform_for(model)({\"image\": [Image.open(\"image.png\")]})[\"pixel_values\"]\n"
        "with torch.no_grad():\n"
        "    label = model(pixel_values=torch.stack(pixels)).logits.argmax(-1).item()\n"
        "print(model.config.id2label[label])\n"
        "```"
    )


def _describe(record: dict[str, Any], info: DistilledInfo) -> list[str]:
    def show(value: Any) -> str:
        return f"`{value}`" if value is not None else "not recorded"

    protocol = record.get("protocol")
    lines = [
        f"- **Base architecture:** `{record['architecture']}` (timm), input {record['input']['in_chans']}×"
        f"{record['input']['img_size']}×{record['input']['img_size']}, mean {record['input']['image_mean']}, "
        f"std {record['input']['image_std']}",
        f"- **Distilled dataset:** {show(record.get('dataset'))}"
        + (f", fingerprint `{record['dataset_fingerprint']}`" if record.get("dataset_fingerprint") else ""),
        f"- **Images per class (IPC):** {info.ipc if info.ipc is not None else 'not recorded'}"
        + (f" (from {info.source_dataset}, method {info.method})" if info.source_dataset else ""),
        f"- **Teacher:** {show(record.get('teacher'))}",
        f"- **Loss:** {show(record.get('loss'))}"
        + (" with " + ", ".join(f"{k}={v}" for k, v in record["loss_params"].items()) if record.get("loss_params")
           else ""),
        f"- **Protocol:** {show((protocol or {}).get('name'))}",
        f"- **Seed:** {show(record.get('seed'))}",
    ]
    return lines


def write_model_card(card: Any, output_dir: str | os.PathLike) -> Path:
    """Write ``card`` as ``output_dir/README.md`` atomically (a temp file renamed into place)."""
    return Path(atomic_write_text(Path(output_dir) / "README.md", str(card)))


class ModelCardCallback(TrainerCallback):
    """Write the student's model card into every checkpoint the Trainer saves.

    It holds what the Trainer cannot know — the ``build_model_card`` keyword arguments
    (``dataset``, ``distilled_info``, ``protocol``, ``license``, ``teacher``, ``tags``,
    ``repo_id``, ``eval_dataset``) — and remembers the training set's fingerprint and the
    last evaluation, which :func:`save_model_card` also uses.
    """

    def __init__(self, **card_kwargs: Any) -> None:
        self.card_kwargs = card_kwargs
        self.fingerprint: str | None = None
        self.metrics: dict[str, Any] = {}

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        dataset = getattr(train_dataloader, "dataset", None)
        self.fingerprint = getattr(dataset, "_fingerprint", None) or self.fingerprint

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.metrics = dict(metrics or {})

    def on_save(self, args, state, control, model=None, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and model is not None and folder.is_dir():
            write_model_card(self.card(model, args), folder)

    def card(self, model: nn.Module, args: Any, **overrides: Any) -> Any:
        kwargs = {"dataset_fingerprint": self.fingerprint, "eval_results": self.metrics or None,
                  **self.card_kwargs, **{k: v for k, v in overrides.items() if v is not None}}
        return build_model_card(model, args, **kwargs)


def save_model_card(trainer: Any, output_dir: str | os.PathLike | None = None, **overrides: Any) -> Path | None:
    """Write the card of ``trainer``'s student into ``output_dir`` (default ``args.output_dir``).

    Uses the trainer's :class:`ModelCardCallback` when it has one, else what the trainer
    knows (its args, training set fingerprint, last evaluation in ``state.log_history``).
    ``overrides`` are ``build_model_card`` keyword arguments (e.g. ``license``, ``tags``,
    ``dataset`` as ``Trainer.create_model_card`` receives them). Only the main process writes.
    """
    if not trainer.is_world_process_zero():
        return None
    callback = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, ModelCardCallback)), None)
    if callback is None:
        callback = ModelCardCallback()
    if callback.fingerprint is None:
        callback.fingerprint = getattr(trainer.train_dataset, "_fingerprint", None)
    if not callback.metrics:
        evaluations = [entry for entry in trainer.state.log_history if any(k.startswith("eval_") for k in entry)]
        callback.metrics = dict(evaluations[-1]) if evaluations else {}
    if overrides.get("tags") is not None and isinstance(overrides["tags"], str):
        overrides["tags"] = [overrides["tags"]]
    if overrides.get("repo_id") is None and getattr(trainer.args, "hub_model_id", None):
        overrides["repo_id"] = trainer.args.hub_model_id
    output_dir = output_dir if output_dir is not None else trainer.args.output_dir
    if overrides.get("model_name") is None and overrides.get("repo_id") is None:
        overrides["model_name"] = Path(output_dir).name
    teacher = getattr(trainer, "teacher_model", None)
    if teacher is not None and "teacher" not in callback.card_kwargs and overrides.get("teacher") is None \
            and not getattr(trainer.args, "teacher_model_name_or_path", None):
        # a teacher given as an instance: name it by where it was loaded from, else its architecture
        teacher = trainer.accelerator.unwrap_model(teacher)
        path = getattr(getattr(teacher, "config", None), "_name_or_path", None)
        arch = model_spec(teacher)["arch"] if getattr(teacher, "config", None) is not None else type(teacher).__name__
        overrides["teacher"] = path or f"{arch} (passed as a model instance)"
    model = trainer.accelerator.unwrap_model(trainer.model)
    card = callback.card(model, trainer.args, **overrides)
    return write_model_card(card, output_dir)
