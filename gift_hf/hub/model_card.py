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
from gift_hf.files import write_output_text
from gift_hf.models.modeling import model_spec

__all__ = [
    "CITATIONS",
    "ModelCardCallback",
    "build_model_card",
    "dataset_reference",
    "public_name",
    "save_model_card",
    "write_model_card",
]

CARD_KEY = "gift_hf"
DEFAULT_TAGS = ("dataset-distillation", "gift_hf", "image-classification")
# Trainer metrics that describe speed, not the model.
_NOT_SCORES = ("runtime", "samples_per_second", "steps_per_second", "epoch")
# TrainingArguments fields a reader needs to reproduce the training.
_TRAINING_FIELDS = (
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "weight_decay",
    "optim",
    "lr_scheduler_type",
    "warmup_steps",
    "soft_label_source",
    "soft_label_kind",
    "augmentation",
    "augmentation_mode",
    "factor_crop",
    "patch_shuffle_factor",
    "mix",
    "mix_prob",
    "mix_beta",
    "zca",
    "zca_epsilon",
    "bf16",
    "fp16",
)


# Protocol fields that are per-dataset settings of one protocol (the papers scale them with the
# set), so a run that changes only these still follows the named protocol.
_PER_DATASET_FIELDS = (
    "num_train_epochs",
    "seed",
    "factor_crop",
    "patch_shuffle_factor",
    "batch_size_rule",
    "batch_size_thresholds",
    "batch_sizes",
    "per_device_train_batch_size",
)

# BibTeX of the works a student's training rests on; the method's only when the set records it.
CITATIONS = {
    "gift": """@inproceedings{shang2025gift,
  title     = {{GIFT}: Unlocking Full Potential of Labels in Distilled Dataset at Near-zero Cost},
  author    = {Shang, Xinyi and Sun, Peng and Lin, Tao},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2025}
}""",
    "label_paper": """@inproceedings{qin2024label,
  title     = {A Label is Worth a Thousand Images in Dataset Distillation},
  author    = {Qin, Tian and Deng, Zhiwei and Alvarez-Melis, David},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2024}
}""",
    "rded": """@inproceedings{sun2024rded,
  title     = {On the Diversity and Realism of Distilled Dataset: An Efficient Dataset Distillation Paradigm},
  author    = {Sun, Peng and Shi, Bei and Yu, Daiwei and Lin, Tao},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2024}
}""",
    "sre2l": """@inproceedings{yin2023sre2l,
  title     = {Squeeze, Recover and Relabel: Dataset Condensation at {ImageNet} Scale From A New Perspective},
  author    = {Yin, Zeyuan and Xing, Eric and Shen, Zhiqiang},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2023}
}""",
}


def _is_hub_id(name: str | None) -> bool:
    return bool(name) and not os.path.exists(name) and re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None


def public_name(name: str | os.PathLike | None) -> str | None:
    """How a card names a model or dataset: a Hub id as is, a local path by its folder name
    (a card is meant to be published: it never shows a local, possibly absolute, path)."""
    if name is None:
        return None
    text = os.fspath(name)
    if _is_hub_id(text) or not (os.path.isabs(text) or os.path.exists(text) or os.sep in text.rstrip(os.sep)):
        return text
    return Path(text).name or text


def _method_citation(method: str | None) -> str | None:
    key = re.sub(r"[^a-z0-9]", "", (method or "").lower())
    return next((k for k in ("rded", "sre2l") if key.startswith(k)), None)


def dataset_reference(dataset: Any) -> tuple[str | None, str | None, str | None]:
    """``(name, split, license)`` of a ``datasets.Dataset`` from its ``info`` (None where not
    recorded): the builder's or dataset's name, the split, the license."""
    info = getattr(dataset, "info", None)
    if info is None:
        return None, None, None
    name = getattr(info, "dataset_name", None) or getattr(info, "builder_name", None) or None
    split = getattr(dataset, "split", None)
    return name, (str(split) if split is not None else None), (getattr(info, "license", None) or None)


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
    preset whose settings it keeps, else ``"custom"``. Per-dataset settings (epochs, seed, batch
    sizes, crop factors) may differ: the papers scale them with the set."""
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
    name = next(
        (
            n
            for n, preset in PROTOCOLS.items()
            if all(value(k) == _plain(v) for k, v in preset.items() if k not in _PER_DATASET_FIELDS)
        ),
        "custom",
    )
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
    eval_split: str | None = None,
    license: str | None = None,
    repo_id: str | None = None,
    model_name: str | None = None,
    tags: Sequence[str] = (),
    default_license: str | None = None,
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
            distilled set's source; the split is shown when known).
        license: the model's license; default: the distilled set's card's, else ``unknown``.
            (:func:`save_model_card` also reads the trainer's datasets' ``info.license``.)
        repo_id: the Hub id the student is published under (used in the snippet).
        model_name: the name in the card and ``model-index``; default: ``repo_id``'s, else
            ``student``.
        tags: extra tags.
        default_license: the license when neither ``license`` nor the set's card gives one
            (e.g. the training data's ``info.license``).
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    spec = model_spec(model)
    distilled = distilled_info is not None  # a set with a gift_hf card, not a plain (real) split
    info = distilled_info or DistilledInfo()
    loss_name, loss_params = _loss(args)
    teacher = (
        teacher
        or getattr(args, "teacher_model_name_or_path", None)
        or (info.teacher_id if isinstance(info.teacher_id, str) else None)
    )
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
    license = license or default_license
    scores = _scores(eval_results)
    model_name = model_name or (repo_id or "student").split("/")[-1]
    teacher = public_name(teacher)
    dataset_path, dataset = dataset, public_name(dataset)
    evaluated_on = public_name(eval_dataset or info.source_dataset or dataset) or "unknown"
    results = [
        EvalResult(
            task_type="image-classification",
            task_name="Image Classification",
            dataset_type=evaluated_on,
            dataset_name=evaluated_on,
            dataset_split=eval_split or None,
            metric_type=name,
            metric_value=value,
            metric_name=name.replace("_", " ").capitalize(),
        )
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
        datasets=[dataset] if _is_hub_id(dataset_path) else None,
        model_name=model_name,
        eval_results=results or None,
    )
    setattr(card_data, CARD_KEY, _plain(record))
    kind = "the distilled dataset" if distilled else "the dataset"
    where = f"{evaluated_on} ({eval_split})" if eval_split else evaluated_on
    body = "\n".join(
        [
            f"# {model_name}",
            "",
            f"A `{spec['arch']}` image classifier trained by gift_hf on "
            + (f"{kind} `{dataset}`" if dataset else "a dataset that was not recorded")
            + (f" ({info.ipc} images per class)" if info.ipc else "")
            + (f" with the `{loss_name}` loss" if loss_name else "")
            + ".",
            "",
            "## Use it",
            "",
            _usage_snippet(spec, repo_id),
            "",
            "## How it was trained",
            "",
            *_describe(record, info, distilled),
            "",
            "## Evaluation",
            "",
            *(
                ["| metric | value | data |", "| --- | --- | --- |"]
                + [f"| {name} | {_show_score(name, value)} | {where} |" for name, value in scores.items()]
                if scores
                else ["Not evaluated yet."]
            ),
            *(
                [""] + [_EVAL_LOSS_NOTE.format(loss=loss_name)]
                if "loss" in scores and loss_name not in (None, "ce")
                else []
            ),
            "",
            *_intended_use(distilled),
            "",
            "## Citation",
            "",
            "```bibtex",
            "\n\n".join(CITATIONS[k] for k in ("gift", "label_paper", _method_citation(info.method)) if k),
            "```",
            "",
        ]
    )
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")


_EVAL_LOSS_NOTE = (
    "The eval loss is the hard-label cross-entropy; a student trained with `{loss}` (not CE) "
    "does not calibrate its logits for it, so that loss can be high while the accuracy is high."
)


def _show_score(name: str, value: float) -> str:
    """Accuracies (fractions in the metadata) are shown to people in percent; other metrics as they are."""
    return f"{100 * value:.2f}%" if "accuracy" in name else f"{value:.4g}"


def _intended_use(distilled: bool) -> list[str]:
    data = "a distilled (few images per class) training set" if distilled else "its training set"
    return [
        "## Intended use",
        "",
        "A research artefact of dataset distillation: it shows how well a student learns from "
        f"{data} with soft labels, for comparing distillation methods, label sources and losses. It "
        "classifies images of the classes it was trained on, preprocessed as its image processor says.",
        "",
        "## Limitations",
        "",
        *([f"- Trained on {data}: expect lower accuracy than a model trained on the full data."] if distilled else []),
        "- Check it on your own data before relying on it.",
        "- It inherits the biases of its training images and of its teacher's labels.",
        "- It knows only its label set; images of other classes still get one of those labels.",
        "- Accuracy is from the evaluation above (its data and split); other data will differ.",
    ]


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
        'pixels = image_transform_for(model)({"image": [Image.open("image.png")]})["pixel_values"]\n'
        "with torch.no_grad():\n"
        "    label = model(pixel_values=torch.stack(pixels)).logits.argmax(-1).item()\n"
        "print(model.config.id2label[label])\n"
        "```\n\n"
        'For `pipeline("image-classification")`, which feeds RGB images, save an exactly equivalent '
        "3-channel copy with `gift_hf.models.modeling.to_rgb_student(model).save_pretrained(...)`."
    )


def _describe(record: dict[str, Any], info: DistilledInfo, distilled: bool = True) -> list[str]:
    def show(value: Any) -> str:
        return f"`{value}`" if value is not None else "not recorded"

    protocol = record.get("protocol")
    lines = [
        f"- **Base architecture:** `{record['architecture']}` (timm), input {record['input']['in_chans']}×"
        f"{record['input']['img_size']}×{record['input']['img_size']}, mean {record['input']['image_mean']}, "
        f"std {record['input']['image_std']}",
        f"- **{'Distilled dataset' if distilled else 'Training dataset'}:** {show(record.get('dataset'))}"
        + (f", fingerprint `{record['dataset_fingerprint']}`" if record.get("dataset_fingerprint") else ""),
        f"- **Images per class (IPC):** {info.ipc if info.ipc is not None else 'not recorded'}"
        + (f" (from {info.source_dataset}, method {info.method})" if info.source_dataset else ""),
        f"- **Teacher:** {show(record.get('teacher'))}",
        f"- **Loss:** {show(record.get('loss'))}"
        + (
            " with " + ", ".join(f"{k}={v}" for k, v in record["loss_params"].items())
            if record.get("loss_params")
            else ""
        ),
        f"- **Protocol:** {show((protocol or {}).get('name'))}",
        f"- **Seed:** {show(record.get('seed'))}",
    ]
    return lines


def write_model_card(card: Any, output_dir: str | os.PathLike) -> Path:
    """Write ``card`` as ``output_dir/README.md`` atomically (a temp file renamed into place);
    a README.md gift_hf did not write is never replaced (:func:`gift_hf.files.write_output`)."""
    return Path(write_output_text(Path(output_dir) / "README.md", str(card)))


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
        # what the datasets' info says: (name, split, license) of the evaluation data, the
        # training data's license
        self.eval_reference: tuple[str | None, str | None, str | None] = (None, None, None)
        self.train_license: str | None = None

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        dataset = getattr(train_dataloader, "dataset", None)
        self.fingerprint = getattr(dataset, "_fingerprint", None) or self.fingerprint
        self.train_license = dataset_reference(dataset)[2] or self.train_license

    def on_evaluate(self, args, state, control, metrics=None, eval_dataloader=None, **kwargs):
        self.metrics = dict(metrics or {})
        reference = dataset_reference(getattr(eval_dataloader, "dataset", None))
        if reference[0] is not None:
            self.eval_reference = reference

    def on_save(self, args, state, control, model=None, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and model is not None and folder.is_dir():
            write_model_card(self.card(model, args), folder)

    def card(self, model: nn.Module, args: Any, **overrides: Any) -> Any:
        name, split, eval_license = self.eval_reference
        kwargs = {
            "dataset_fingerprint": self.fingerprint,
            "eval_results": self.metrics or None,
            "default_license": self.train_license or eval_license,
            **self.card_kwargs,
            **{k: v for k, v in overrides.items() if v is not None},
        }
        if kwargs.get("eval_dataset") is None and name is not None:
            kwargs["eval_dataset"], kwargs["eval_split"] = name, kwargs.get("eval_split") or split
        return build_model_card(model, args, **kwargs)


def save_model_card(trainer: Any, output_dir: str | os.PathLike | None = None, **overrides: Any) -> Path | None:
    """Write the card of ``trainer``'s student into ``output_dir`` (default ``args.output_dir``).

    Uses the trainer's :class:`ModelCardCallback` when it has one, else what the trainer
    knows (its args, training set fingerprint, last evaluation in ``state.log_history``).
    ``overrides`` are ``build_model_card`` keyword arguments (e.g. ``license``, ``tags``,
    ``dataset`` as ``Trainer.create_model_card`` receives them), and ``model``/``args`` for one
    student of a population. Only the main process writes.
    """
    if not trainer.is_world_process_zero():
        return None
    callback = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, ModelCardCallback)), None)
    if callback is None:
        callback = ModelCardCallback()
    if callback.fingerprint is None:
        callback.fingerprint = getattr(trainer.train_dataset, "_fingerprint", None)
    callback.train_license = callback.train_license or dataset_reference(trainer.train_dataset)[2]
    if callback.eval_reference[0] is None:
        callback.eval_reference = dataset_reference(trainer.eval_dataset)
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
    if (
        teacher is not None
        and "teacher" not in callback.card_kwargs
        and overrides.get("teacher") is None
        and not getattr(trainer.args, "teacher_model_name_or_path", None)
    ):
        # a teacher given as an instance: name it by where it was loaded from, else its architecture
        teacher = trainer.accelerator.unwrap_model(teacher)
        path = getattr(getattr(teacher, "config", None), "_name_or_path", None)
        arch = model_spec(teacher)["arch"] if getattr(teacher, "config", None) is not None else type(teacher).__name__
        overrides["teacher"] = path or f"{arch} (passed as a model instance)"
    # one student of a population: its own model, config (seed, learning rate) and metrics
    model = overrides.pop("model", None) or trainer.accelerator.unwrap_model(trainer.model)
    args = overrides.pop("args", None) or trainer.args
    card = callback.card(model, args, **overrides)
    return write_model_card(card, output_dir)
