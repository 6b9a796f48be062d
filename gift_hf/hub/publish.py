"""Publishing to the Hub: :func:`push_distilled` uploads a distilled dataset and its card."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from datasets import DatasetDict

from gift_hf.data.distilled.info import DistilledInfo
from gift_hf.data.distilled.storage import load_distilled, quiet_datasets, save_distilled
from gift_hf.data.distilled.validation import DatasetLike, as_splits

__all__ = ["push_distilled"]


def push_distilled(
    dataset: DatasetLike | str | os.PathLike,
    repo_id: str,
    info: DistilledInfo | None = None,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
    license: str | None = None,
    tags: list[str] | None = None,
) -> Any:
    """Publish a distilled dataset to the Hub with ``DatasetDict.push_to_hub`` and its card with ``DatasetCard``.

    The set is first staged with :func:`save_distilled` (validated, card rendered); the
    shards are pushed by ``datasets`` under the same names (``data/<split>-0000i-of-0000n.parquet``,
    stale shards of an earlier push are deleted), then the staged ``README.md`` replaces
    the card ``datasets`` wrote. The repo then holds exactly the staged folder.

    ``dataset`` may also be a local directory written by :func:`save_distilled`; it is
    validated with :func:`load_distilled` and published as it is. The token is passed to
    ``huggingface_hub`` only, never printed or stored.

    Returns:
        the ``CommitInfo`` of the data commit (the card follows in a second commit).
    """
    from huggingface_hub import DatasetCard

    if not isinstance(repo_id, str) or repo_id.count("/") > 1 or not repo_id.strip():
        raise ValueError(f"repo_id: got {repo_id!r}; expected 'namespace/name' or 'name'")
    with tempfile.TemporaryDirectory(prefix="gift_hf_push_") as tmp:
        if isinstance(dataset, (str, os.PathLike)):
            folder = Path(dataset)
            if info is not None:
                raise ValueError(
                    "info: a saved directory carries its own DistilledInfo in README.md; pass "
                    "info=None (or the dataset object instead of the directory)"
                )
            splits, _ = load_distilled(folder, cache_dir=os.path.join(tmp, "cache"))  # validates the folder
        else:
            splits = DatasetDict(as_splits(dataset))
            folder = save_distilled(splits, Path(tmp) / "staged", info, license=license, tags=tags, repo_id=repo_id)
        # The same shard count per split as the staged folder, so the Hub has the same files.
        num_shards = {split: len(list((folder / "data").glob(f"{split}-*.parquet"))) for split in splits}
        with quiet_datasets():
            commit = splits.push_to_hub(
                repo_id,
                private=private,
                token=token,
                revision=revision,
                num_shards=num_shards,
                commit_message=commit_message or "Upload distilled dataset with gift_hf",
            )
        card = DatasetCard((folder / "README.md").read_text(encoding="utf-8"))
        card.push_to_hub(
            repo_id,
            token=token,
            repo_type="dataset",
            revision=revision,
            commit_message="Dataset card with the gift_hf provenance",
        )
    return commit
