"""The dataset card (``README.md``) of a distilled dataset: render it, and read one back.

:func:`render_card` writes the YAML the Hub and ``datasets`` read (configs, dataset_info, the
``gift_hf`` provenance block) and a body with a training snippet; the readers fetch a card from
a local directory or the Hub without loading the data.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from datasets import Dataset, DatasetInfo, SplitDict, SplitInfo

from gift_hf.data.distilled.info import (
    CARD_KEY,
    DEFAULT_TAGS,
    IMAGE_COLUMN,
    PIXEL_COLUMN,
    DistilledInfo,
    read_card_info,
    resolve_soft_label_kind,
)
from gift_hf.data.distilled.validation import DatasetLike, as_splits, dataset_nbytes, soft_label_columns
from gift_hf.files import check_local_path

__all__ = [
    "card_license",
    "distilled_card_info",
    "license_of_card",
    "read_distilled_info",
    "render_card",
    "stored_soft_label_kind",
]


def _size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < bound:
            return name
    return "1M<n<10M"


def _describe(info: DistilledInfo, splits: dict[str, Dataset]) -> list[str]:
    rows = {name: len(ds) for name, ds in splits.items()}
    lines = [
        f"- **Source dataset:** {info.source_dataset or 'not recorded'}",
        f"- **Method:** {info.method or 'not recorded'}",
        f"- **Images per class (IPC):** {info.ipc if info.ipc is not None else 'not recorded'}",
        f"- **Classes:** {info.num_classes}",
        "- **Rows:** " + ", ".join(f"{k}: {v}" for k, v in rows.items()),
    ]
    if info.image_size:
        lines.append(f"- **Image size:** {info.image_size[0]}×{info.image_size[1]}")
    first = next(iter(splits.values()))
    if PIXEL_COLUMN in first.features:
        lines.append(
            "- **Images:** float `pixel_values` (already normalised"
            + (f" with mean {info.image_mean}, std {info.image_std}" if info.image_mean else "")
            + ")"
        )
    kind = soft_label_columns(first.features)
    if kind is None:
        lines.append("- **Soft labels:** none stored (hard labels only; train with a teacher online)")
    else:
        what = info.soft_label_kind
        if what == "probabilities":
            what = f"probabilities softmax(logits / T) with T = {info.temperature if info.temperature else 1}"
        storage = "dense `soft_label`" if kind == "dense" else f"sparse top-{info.topk} `soft_label_topk_*`"
        lines.append(f"- **Soft labels:** {what}, stored as {storage}")
        teacher = info.teacher_id if not isinstance(info.teacher_id, list) else f"ensemble of {info.teacher_id}"
        lines.append(
            f"- **Teacher:** {teacher or 'not recorded'}"
            + (f" ({info.teacher_architecture})" if info.teacher_architecture else "")
            + (f", checkpoint `{info.teacher_checkpoint}`" if info.teacher_checkpoint else "")
            + (f", expert epoch {info.teacher_epoch:g}" if info.teacher_epoch is not None else "")
        )
    return lines


def _channels(ds: Dataset) -> int:
    """Channels of the stored images (1 for grayscale, else 3 as ImageTransform converts)."""
    if PIXEL_COLUMN in ds.features:
        return int(ds.features[PIXEL_COLUMN].shape[0])
    return 1 if ds[0][IMAGE_COLUMN].mode in ("L", "I", "I;16", "F", "1") else 3


def _training_snippet(info: DistilledInfo, ds: Dataset, repo: str) -> str:
    channels, size = _channels(ds), (info.image_size[0] if info.image_size else 32)
    norm = (
        f", image_mean={list(info.image_mean)}, image_std={list(info.image_std)}"
        if info.image_mean and info.image_std
        else ""
    )
    kwargs = info.training_kwargs()
    config_args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    stored = kwargs["soft_label_source"] == "dataset"
    teacher = "" if stored else ', teacher_model_name_or_path="<teacher>"'
    labels = (
        f"--soft_label_source dataset --soft_label_kind {kwargs['soft_label_kind']} --student_arch gift_convnet_d3"
        if stored
        else "--teacher_model_name_or_path <teacher>"
    )
    return (
        "Score it the GIFT paper's way (3 students, 1000 epochs, mean ± std on the real test split of"
        " `--dataset_name`, here the source dataset):\n\n"
        "```bash\n"
        f"gift-hf evaluate --distilled {repo} --dataset_name <source dataset> {labels}\n"
        "```\n\n"
        "or train one student in Python (GIFTConfig's defaults are the GIFT paper's protocol: AdamW, learning rate"
        " 1e-3, weight decay 1e-4, ×0.2 at 2/3 and 5/6 of training, no gradient clipping):\n\n"
        "```python\n"
        "from gift_hf import GIFTConfig, GIFTTrainer, create_model, image_transform_for, load_distilled\n\n"
        f'ds, info = load_distilled("{repo}")\n'
        "# the input is stated once, here; the saved student carries it (config.json)\n"
        f'model = create_model("gift_convnet_d3", num_classes=info.num_classes, in_chans={channels}, '
        f"img_size={size}{norm})\n"
        'train = ds["train"].with_transform(image_transform_for(model))\n'
        f'args = GIFTConfig(output_dir="student", loss="gift", num_train_epochs=1000, {config_args}{teacher})\n'
        "GIFTTrainer(model=model, args=args, train_dataset=train).train()\n"
        "```"
    )


def _source_license(splits: dict[str, Dataset], info: DistilledInfo) -> str:
    """The source dataset's license: its ``DatasetInfo.license``, else its card's, else ``unknown``."""
    for ds in splits.values():
        if ds.info.license:
            return ds.info.license
    source = info.source_dataset
    if source and (os.path.isdir(source) or re.fullmatch(r"[\w.-]+/[\w.-]+", source)):
        from huggingface_hub.errors import HfHubHTTPError

        try:
            return card_license(source) or "unknown"
        except (OSError, ValueError, HfHubHTTPError):  # no card, offline, private, …
            return "unknown"
    return "unknown"


def render_card(
    dataset: DatasetLike,
    info: DistilledInfo,
    *,
    repo_id: str | None = None,
    license: str | None = None,
    tags: list[str] | None = None,
    shard_counts: dict[str, int] | None = None,
    shard_bytes: dict[str, int] | None = None,
) -> str:
    """The dataset card (``README.md``): YAML metadata the Hub and ``datasets`` read, then a body.

    ``license`` defaults to the source's (:func:`_source_license`): the images' license
    travels with any subset of them.
    """
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard, DatasetCardData

    splits = as_splits(dataset)
    first = next(iter(splits.values()))
    split_dict = SplitDict()
    for name, ds in splits.items():
        split_dict.add(SplitInfo(name=name, num_bytes=dataset_nbytes(ds), num_examples=len(ds)))
    download_size = sum((shard_bytes or {}).values())
    dataset_size = sum(dataset_nbytes(ds) for ds in splits.values())
    ds_info = DatasetInfo(
        features=first.features, splits=split_dict, download_size=download_size, dataset_size=dataset_size
    )
    card_data = DatasetCardData(
        license=license or _source_license(splits, info),
        task_categories=["image-classification"],
        size_categories=[_size_category(sum(len(ds) for ds in splits.values()))],
        tags=sorted({*DEFAULT_TAGS, *(tags or []), *([info.method] if info.method else [])}),
        pretty_name=(
            f"{info.source_dataset} distilled ({info.method}, IPC {info.ipc})" if info.source_dataset else None
        ),
        # The Hub's data-files configuration: every split's shards under data/.
        configs=[
            {"config_name": "default", "data_files": [{"split": name, "path": f"data/{name}-*"} for name in splits]}
        ],
    )
    DatasetInfosDict({"default": ds_info}).to_dataset_card_data(card_data)
    setattr(card_data, CARD_KEY, info.to_dict())
    title = card_data.pretty_name or (repo_id or "Distilled dataset")
    repo = repo_id or "<repo_id or local directory>"
    body = "\n".join(
        [
            f"# {title}",
            "",
            "A distilled image-classification dataset in the Hugging Face Hub layout, written by "
            "gift_hf (`save_distilled`). `datasets.load_dataset` reads it as is; "
            "`gift_hf.load_distilled` also returns its provenance (the `gift_hf` block of this card's metadata).",
            "",
            "## How it was made",
            "",
            *_describe(info, splits),
            "",
            "## Train on it with gift_hf",
            "",
            _training_snippet(info, first, repo),
            "",
            "## Columns",
            "",
            "| column | feature |",
            "| --- | --- |",
            *[f"| `{name}` | `{feature}` |" for name, feature in first.features.items()],
            "",
        ]
    )
    return str(DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}"))


def fetch_card_text(
    repo_id_or_dir: str | os.PathLike, revision: str | None = None, token: str | bool | None = None
) -> str:
    """The text of a distilled dataset's ``README.md``: from a local directory, else from the Hub."""
    target = check_local_path(repo_id_or_dir, "dataset")
    if os.path.isdir(target):
        readme = Path(target) / "README.md"
        if not readme.is_file():
            raise ValueError(
                f"{target!r} has no README.md; expected a directory written by save_distilled "
                "(Hub layout: README.md + data/*.parquet)"
            )
        return readme.read_text(encoding="utf-8")
    if os.path.lexists(target):
        raise ValueError(
            f"dataset {target!r} is a file; expected a directory written by save_distilled (README.md "
            "+ data/*.parquet) or a Hub dataset id 'namespace/name'"
        )
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(target, "README.md", repo_type="dataset", revision=revision, token=token)
    except Exception as err:  # offline, unknown repo, no access: all end here
        raise ValueError(
            f"dataset {target!r} not found: there is no local directory of that name, and the Hub "
            f"dataset {target!r} could not be read ({type(err).__name__}); expected a local directory "
            "written by save_distilled or an existing Hub dataset id"
        ) from None
    return Path(path).read_text(encoding="utf-8")


def read_distilled_info(
    repo_id_or_dir: str | os.PathLike, revision: str | None = None, token: str | bool | None = None
) -> DistilledInfo:
    """The :class:`DistilledInfo` of a distilled dataset's card, without loading its data."""
    return read_card_info(fetch_card_text(repo_id_or_dir, revision, token))


def distilled_card_info(
    dataset: str | os.PathLike | None, revision: str | None = None, token: str | bool | None = None
) -> DistilledInfo | None:
    """The :class:`DistilledInfo` of a gift_hf set's card; None for any other dataset (no card,
    a card without a ``gift_hf`` block, ``dataset`` None)."""
    from huggingface_hub import DatasetCard

    if dataset is None:
        return None
    target = os.fspath(dataset)
    if os.path.isdir(target) and not (Path(target) / "README.md").is_file():
        return None
    try:
        text = fetch_card_text(target, revision, token)
    except ValueError:  # a Hub dataset without a readable card, or a data file: no gift_hf card
        return None
    try:
        block = DatasetCard(text).data.to_dict().get(CARD_KEY)
    except Exception:  # not a YAML card
        block = None
    return read_card_info(text) if block is not None else None


def stored_soft_label_kind(
    dataset: str | os.PathLike | None,
    requested: str | None = None,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
) -> str:
    """The kind of the soft labels stored in ``dataset`` to train with.

    A gift_hf set (:func:`distilled_card_info`): the card's kind, checked against
    ``requested`` (:func:`resolve_soft_label_kind`: a contradiction is a ``ValueError``). Any
    other dataset: ``requested``, else ``"logits"``.
    """
    info = distilled_card_info(dataset, revision, token)
    if info is None:
        return requested or "logits"
    return resolve_soft_label_kind(info, requested, source=f"the dataset card of {os.fspath(dataset)!r}")


def card_license(repo_id_or_dir: str | os.PathLike, revision: str | None = None) -> str | None:
    """The ``license`` of a distilled dataset's card (None when it has none)."""
    return license_of_card(fetch_card_text(repo_id_or_dir, revision))


def license_of_card(card_text: str) -> str | None:
    """The ``license`` in a card's YAML header (None when it has none)."""
    from huggingface_hub import DatasetCard

    license = DatasetCard(card_text).data.license
    return license if isinstance(license, str) else None
