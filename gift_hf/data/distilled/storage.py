"""Storage of a distilled dataset in the Hub layout: :func:`save_distilled` and :func:`load_distilled`.

A save stages the parquet shards and the card in a hidden folder beside the target and swaps
it into place atomically; :func:`recover_leftovers` cleans up after a killed save.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterator

from datasets import Dataset, DatasetDict, Image

from gift_hf.data.distilled.card import fetch_card_text, license_of_card, render_card
from gift_hf.data.distilled.info import CARD_KEY, IMAGE_COLUMN, DistilledInfo, read_card_info
from gift_hf.data.distilled.validation import (
    DatasetLike,
    as_splits,
    complete_info,
    dataset_nbytes,
    soft_label_columns,
    soft_label_names,
    validate_distilled,
)
from gift_hf.files import exchange_directories, process_alive

__all__ = [
    "load_distilled",
    "quiet_datasets",
    "recover_leftovers",
    "save_distilled",
]


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Silence datasets' progress bars (parquet writing, map) inside library calls."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def _parse_size(value: int | str) -> int:
    """Bytes of a size given as an int or a string such as ``"500MB"`` or ``"1GiB"``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    if match is None or match.group(2).upper() not in _SIZE_UNITS or float(match.group(1)) <= 0:
        raise ValueError(
            f"max_shard_size: got {value!r}; expected a positive number of bytes or a size such as '500MB' or '1GiB'"
        )
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


def _embed_images(ds: Dataset) -> Dataset:
    """Images given as file paths read into the rows, so a parquet shard is self-contained.

    As ``push_to_hub`` stores them: the file's bytes, and its base name as ``path``.
    """
    if IMAGE_COLUMN not in ds.features:
        return ds
    feature = ds.features[IMAGE_COLUMN]

    def embed(batch: dict[str, list]) -> dict[str, list]:
        items = []
        for item in batch[IMAGE_COLUMN]:
            if item is not None:
                data, path = item.get("bytes"), item.get("path")
                if data is None and path:
                    with open(path, "rb") as f:
                        data = f.read()
                item = {"bytes": data, "path": os.path.basename(path) if path else None}
            items.append(item)
        return {IMAGE_COLUMN: items}

    raw = ds.cast_column(IMAGE_COLUMN, Image(decode=False))
    return raw.map(embed, batched=True, keep_in_memory=True).cast_column(IMAGE_COLUMN, feature)


def _write_shards(ds: Dataset, data_dir: Path, split: str, max_shard_size: int | str, num_shards: int | None) -> int:
    """Write ``ds`` as ``data/<split>-0000i-of-0000n.parquet``; returns the bytes written.

    The file names are those ``DatasetDict.push_to_hub`` gives the same shards on the Hub.
    """
    if num_shards is None:
        num_shards = max(1, math.ceil(dataset_nbytes(ds) / _parse_size(max_shard_size)))
    num_shards = min(num_shards, len(ds))
    written = 0
    for index in range(num_shards):
        shard = _embed_images(ds.shard(num_shards=num_shards, index=index, contiguous=True))
        path = data_dir / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
        shard.with_format(None).to_parquet(str(path))
        written += path.stat().st_size
    return written


def _written_by_gift_hf(path: Path) -> str | None:
    """None when ``path`` holds only what :func:`save_distilled` writes (a ``README.md`` card
    with a ``gift_hf`` block, ``data/*.parquet``); else the reason it does not."""
    from huggingface_hub import DatasetCard

    names = sorted(entry.name for entry in path.iterdir())
    foreign = [name for name in names if name not in ("README.md", "data")]
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        return f"it holds {foreign[0]!r}{more}, which save_distilled does not write"
    if "README.md" not in names or not (path / "README.md").is_file():
        return "it has no README.md dataset card"
    try:
        has_block = DatasetCard((path / "README.md").read_text(encoding="utf-8")).data.to_dict().get(CARD_KEY)
    except Exception:  # not a card at all
        has_block = None
    if not has_block:
        return f"its README.md has no {CARD_KEY!r} block"
    data = path / "data"
    if data.exists():
        if data.is_symlink() or not data.is_dir():
            return "its 'data' is not a folder"
        other = sorted(p.name for p in data.iterdir() if p.suffix != ".parquet" or not p.is_file() or p.is_symlink())
        if other:
            return f"data/ holds {other[0]!r}, which save_distilled does not write"
    return None


def _check_target(output_dir: Path, overwrite: bool) -> None:
    """Refuse an ``output_dir`` that is not new, empty or (with ``overwrite``) a gift_hf dataset."""
    if output_dir.is_symlink():
        raise FileExistsError(
            f"output_dir {str(output_dir)!r} is a symbolic link; expected a real directory path "
            f"(pass the link's target {os.path.realpath(output_dir)!r} instead)"
        )
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(
            f"output_dir {str(output_dir)!r} exists and is not a directory; expected a new directory path"
        )
    if not output_dir.is_dir() or not any(output_dir.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(
            f"output_dir {str(output_dir)!r} exists and is not empty; pass overwrite=True "
            "(--overwrite) to replace the dataset it holds"
        )
    reason = _written_by_gift_hf(output_dir)
    if reason is not None:
        raise FileExistsError(
            f"output_dir {str(output_dir)!r}: overwrite only replaces a dataset written by gift_hf "
            f"(README.md with a {CARD_KEY!r} block + data/*.parquet), but {reason}; nothing was "
            "changed. Choose a new or empty directory"
        )


# Staging folders beside output_dir: ".<name>.tmp-<pid>-<hex>" (being written) and
# ".<name>.old-<pid>-<hex>" (the replaced dataset, while it is swapped out).
_STAGING = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}")


def _staging_path(output_dir: Path, kind: str) -> Path:
    return output_dir.parent / f".{output_dir.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def recover_leftovers(output_dir: str | os.PathLike) -> list[Path]:
    """Clean up after saves to ``output_dir`` that were killed, and return what was removed.

    A save stages into hidden sibling folders (``.NAME.tmp-<pid>-*``, ``.NAME.old-<pid>-*``).
    When their process is gone they are leftovers: if ``output_dir`` itself is missing (a kill
    between the two renames of a system without an atomic swap), the replaced dataset is
    moved back; every other leftover is deleted. Folders of live processes are never touched.
    :func:`save_distilled` and :func:`load_distilled` call this first.
    """
    output_dir = Path(output_dir).expanduser().absolute()
    parent = output_dir.parent
    if not parent.is_dir():
        return []
    stale = []
    for entry in parent.iterdir():
        match = _STAGING.fullmatch(entry.name)
        if match and match["name"] == output_dir.name and not process_alive(int(match["pid"])):
            stale.append((match["kind"] != "old", entry))  # restore an "old" first, then delete
    removed = []
    for _, entry in sorted(stale):
        if entry.name.startswith(f".{output_dir.name}.old-") and not os.path.lexists(output_dir):
            try:
                os.rename(entry, output_dir)
                continue
            except OSError:
                pass
        shutil.rmtree(entry, ignore_errors=True)
        if not os.path.lexists(entry):
            removed.append(entry)
    return removed


def _atomic_replace(staged: Path, output_dir: Path) -> None:
    """Move ``staged`` to ``output_dir``, replacing it, so readers never see a half-written dataset.

    An existing ``output_dir`` is swapped with ``staged`` in one atomic step, so the path
    always holds the old or the new dataset, whenever the process is killed. Without an
    atomic swap it is renamed aside first; a kill between the two renames is undone by
    :func:`recover_leftovers` at the next save or load.
    """
    if not output_dir.exists() or (output_dir.is_dir() and not any(output_dir.iterdir())):
        os.replace(staged, output_dir)  # a new or empty directory
        return
    if exchange_directories(staged, output_dir):
        shutil.rmtree(staged, ignore_errors=True)  # now holds the old dataset
        return
    backup = _staging_path(output_dir, "old")
    os.replace(output_dir, backup)
    try:
        os.replace(staged, output_dir)
    except BaseException:
        os.replace(backup, output_dir)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def save_distilled(
    dataset: DatasetLike,
    output_dir: str | os.PathLike,
    info: DistilledInfo | None = None,
    *,
    overwrite: bool = False,
    license: str | None = None,
    tags: list[str] | None = None,
    repo_id: str | None = None,
    max_shard_size: int | str = "500MB",
    num_shards: dict[str, int] | None = None,
    check_images: bool = True,
) -> Path:
    """Write a distilled dataset in the Hub layout: ``data/*.parquet`` shards + ``README.md`` card.

    The dataset is validated first (:func:`validate_distilled`). A ``Dataset`` is saved as
    split ``train``. Fields of ``info`` that can be read off the data (``num_classes``,
    ``image_size``, ``topk``) are filled in. The write is atomic: everything goes to a
    hidden folder beside ``output_dir`` that is then swapped into place, so the path always
    holds a complete dataset; leftovers of killed saves are cleaned up (:func:`recover_leftovers`).
    ``overwrite`` replaces only a dataset written by gift_hf: a folder holding anything else
    is refused. Folders and files follow the user's umask.

    Args:
        dataset: a ``Dataset`` or ``DatasetDict`` following the schema (see module docs).
        output_dir: the directory to create; an existing non-empty one is refused unless
            ``overwrite=True`` and it holds a dataset written by gift_hf.
        info: provenance; recorded under ``gift_hf:`` in the card. Required with
            ``soft_label_kind`` set when the dataset has soft labels.
        license: the card's license id; default: the source dataset's (its ``DatasetInfo.license``
            or card), else ``unknown``.
        tags: extra card tags.
        repo_id: the Hub id, used in the card's code example.
        max_shard_size: shard size limit (bytes or a string such as ``"500MB"``).
        num_shards: per split, an exact number of shards (overrides ``max_shard_size``).
        check_images: decode every image to refuse corrupt bytes.

    Returns:
        ``output_dir`` as a ``Path``.
    """
    splits = as_splits(dataset)
    first = next(iter(splits.values()), None)
    if first is not None and soft_label_columns(first.features) and (info is None or info.soft_label_kind is None):
        columns = soft_label_names(first.features)
        raise ValueError(
            f"info.soft_label_kind: the dataset has soft-label columns ({columns}) "
            "but no kind was given; pass info=DistilledInfo(soft_label_kind='logits' or "
            "'probabilities') saying what the stored values are, so training reads them correctly"
        )
    validate_distilled(splits_dict := DatasetDict(splits), info, check_images=check_images)
    info = complete_info(splits, info)
    output_dir = Path(output_dir).expanduser().absolute()
    recover_leftovers(output_dir)
    _check_target(output_dir, overwrite)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = _staging_path(output_dir, "tmp")
    os.mkdir(staged)  # mode 0o777 less the umask, like any folder the user makes (mkdtemp would give 0o700)
    try:
        (staged / "data").mkdir()
        shard_bytes: dict[str, int] = {}
        with quiet_datasets():
            for split, ds in splits.items():
                shard_bytes[split] = _write_shards(
                    ds, staged / "data", split, max_shard_size, (num_shards or {}).get(split)
                )
        card = render_card(splits_dict, info, repo_id=repo_id, license=license, tags=tags, shard_bytes=shard_bytes)
        (staged / "README.md").write_text(card, encoding="utf-8")
        _check_target(output_dir, overwrite)  # something may have appeared meanwhile
        _atomic_replace(staged, output_dir)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return output_dir


def _check_local_shards(path: Path) -> None:
    """Open every parquet footer so a corrupt shard is named before ``datasets`` tries to read it."""
    import pyarrow.parquet as pq

    shards = sorted((path / "data").glob("*.parquet")) if (path / "data").is_dir() else []
    if not shards:
        raise ValueError(
            f"{str(path)!r} has no data/*.parquet shards; expected a directory written by save_distilled (Hub layout)"
        )
    for shard in shards:
        try:
            pq.read_metadata(shard)
        except Exception as err:
            raise ValueError(
                f"shard {str(shard.relative_to(path))!r} of {str(path)!r} is not a readable parquet "
                f"file ({type(err).__name__}: {err}); expected parquet written by save_distilled"
            ) from None


def load_distilled(
    repo_id_or_dir: str | os.PathLike,
    revision: str | None = None,
    *,
    validate: bool = True,
    check_images: bool = True,
    token: str | bool | None = None,
    **load_kwargs: Any,
) -> tuple[DatasetDict, DistilledInfo]:
    """Load a distilled dataset (a Hub repo id or a local directory in Hub layout).

    Reads the data with ``datasets.load_dataset(repo_id_or_dir, revision=...)`` and the
    provenance from the ``gift_hf`` block of its card. ``load_kwargs`` go to
    ``load_dataset`` (e.g. ``cache_dir``).

    Returns:
        ``(dataset_dict, info)``. With ``validate`` the schema is checked as in
        :func:`validate_distilled`; with ``check_images`` too every image is decoded, so a
        corrupt one is named here rather than mid-training.

    A local path that does not exist is a ``FileNotFoundError`` ("not found"); leftovers of
    a killed save are recovered first (:func:`recover_leftovers`).
    """
    import datasets

    target = os.fspath(repo_id_or_dir)
    if not os.path.lexists(target):
        recover_leftovers(target)  # a save killed mid-swap may have left the dataset aside
    card_text = fetch_card_text(target, revision, token)
    if os.path.isdir(target):
        _check_local_shards(Path(target))
    info = read_card_info(card_text)
    kwargs = dict(load_kwargs)
    if os.path.isdir(target) and "cache_dir" not in kwargs:
        from gift_hf.data.images import local_cache_dir

        kwargs["cache_dir"] = local_cache_dir(target)  # never another folder's cache of the same name
    if revision is not None:
        kwargs["revision"] = revision
    if token is not None:
        kwargs["token"] = token
    try:
        with quiet_datasets():
            dataset = datasets.load_dataset(target, **kwargs)
    except Exception as err:
        raise ValueError(
            f"datasets.load_dataset({target!r}) failed ({type(err).__name__}: {err}); expected a "
            "distilled dataset in Hub layout (README.md + data/<split>-*.parquet)"
        ) from None
    if not isinstance(dataset, DatasetDict):
        dataset = DatasetDict({"train": dataset}) if isinstance(dataset, Dataset) else dataset
    # datasets does not read the card's license into DatasetInfo: carry it, so saving or
    # pushing the loaded set (and a model card of a student trained on it) keeps it.
    card_license = license_of_card(card_text)
    for split in dataset.values():
        if card_license and not split.info.license:
            split.info.license = card_license
    if validate:
        first = next(iter(dataset.values()), None)
        if first is not None and soft_label_columns(first.features) and info.soft_label_kind is None:
            columns = soft_label_names(first.features)
            raise ValueError(
                f"README.md of {target!r}: the data has soft-label columns ({columns}) "
                f"but the card's {CARD_KEY!r} block records no soft_label_kind; add "
                f"'soft_label_kind: logits' or 'soft_label_kind: probabilities' under '{CARD_KEY}:'"
            )
        validate_distilled(dataset, info, check_images=check_images)
    return dataset, info
