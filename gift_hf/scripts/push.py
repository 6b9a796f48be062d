"""``gift-hf push``: publish a distilled dataset directory to the Hugging Face Hub.

Validates the directory (as ``load_distilled`` reads it), creates the dataset repo if
needed and uploads it in two commits: ``data/*.parquet`` (``datasets``' ``push_to_hub``,
deleting stale shards), then ``README.md``, the card with the set's provenance.
The token comes from ``--token``, ``HF_TOKEN`` or ``hf auth login``; it is never printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from gift_hf.parser import GIFTParser


@dataclass
class PushArguments:
    """Options of ``gift-hf push``."""

    dataset_dir: str = field(
        metadata={"help": "A directory written by save_distilled / gift-hf distill|relabel|convert."}
    )
    repo_id: str = field(metadata={"help": "Hub dataset repo, 'namespace/name' (created if missing)."})
    private: bool = field(default=False, metadata={"help": "Create the repo private (ignored if it exists)."})
    token: Optional[str] = field(
        default=None,
        metadata={
            "help": "Hub token with write access. Default: HF_TOKEN or the saved `hf auth login` token. "
            "Prefer those: a token on the command line can show up in the shell history."
        },
    )
    commit_message: Optional[str] = field(default=None, metadata={"help": "Commit message of the upload."})
    revision: Optional[str] = field(default=None, metadata={"help": "Branch to push to (default: main)."})


def make_parser() -> GIFTParser:
    return GIFTParser((PushArguments,), prog="gift-hf push", description=__doc__)


def main(argv: list[str] | None = None) -> int:
    (args,) = make_parser().parse_args_and_config(argv)
    from gift_hf.hub.publish import push_distilled

    result = push_distilled(
        args.dataset_dir,
        args.repo_id,
        private=args.private,
        token=args.token,
        commit_message=args.commit_message,
        revision=args.revision,
    )
    url = getattr(result, "commit_url", None) or f"https://huggingface.co/datasets/{args.repo_id}"
    print(f"pushed {args.dataset_dir} to {args.repo_id}: {url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
