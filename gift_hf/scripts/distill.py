"""``gift-hf distill random|difficulty``: a distilled set of real images selected from a dataset.

``random`` draws ``--ipc`` images per class at random (class-balanced, reproducible by
``--seed``); ``difficulty`` ranks each class's images by the teacher's cross-entropy
(easiest first) and draws ``--ipc`` from the quantile band ``--band_low``..``--band_high``.
The result is saved in the Hub layout (``data/*.parquet`` + ``README.md``); add soft labels
with ``gift-hf relabel``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Optional

from gift_hf.parser import GIFTParser

METHODS = ("random", "difficulty")


@dataclass
class DistillArguments:
    """Options of ``gift-hf distill``."""

    output_dir: str = field(metadata={"help": "Directory to write the distilled dataset to (Hub layout)."})
    method: str = field(
        default="random",
        metadata={"help": "Selection method: 'random' (class-balanced random real images) or 'difficulty' "
                  "(per class, ranked by the teacher's cross-entropy, drawn from the quantile band "
                  "[band_low, band_high]). May also be given first: `gift-hf distill difficulty ...`."},
    )
    dataset_name: Optional[str] = field(
        default=None,
        metadata={"help": "Real dataset to select from: a Hub id or a local directory read with "
                  "datasets.load_dataset. Default: the embedded digits (gift_hf.load_digits_dataset)."},
    )
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "Configuration name of the dataset."})
    dataset_revision: Optional[str] = field(default=None, metadata={"help": "Hub revision (branch, tag or commit)."})
    split: str = field(default="train", metadata={"help": "Split to select from."})
    label_column: str = field(
        default="label", metadata={"help": "Column of class ids (renamed 'label' in the output)."}
    )
    ipc: int = field(default=10, metadata={"help": "Images per class; every class must have at least this many."})
    seed: int = field(default=0, metadata={"help": "Selection seed: the same seed selects the same rows."})
    teacher: Optional[list[str]] = field(
        default=None,
        metadata={"help": "difficulty only: the teacher(s) ranking the images (saved directory, Hub id; several = "
                  "ensemble with averaged logits)."},
    )
    expert_epoch: Optional[float] = field(
        default=None,
        metadata={"help": "difficulty only: use the teacher's checkpoint of this training epoch (teacher given as a "
                  "Trainer output_dir with checkpoint-* folders)."},
    )
    band_low: float = field(
        default=0.0, metadata={"help": "difficulty only: lower quantile of the band (0 = easiest)."}
    )
    band_high: float = field(
        default=0.5, metadata={"help": "difficulty only: upper quantile of the band (1 = hardest)."}
    )
    batch_size: int = field(default=256, metadata={"help": "difficulty only: teacher inference batch size."})
    device: Optional[str] = field(
        default=None, metadata={"help": "difficulty only: device (default: cuda if available)."}
    )
    source_dataset: Optional[str] = field(
        default=None, metadata={"help": "Source name recorded in the card (default: dataset_name, or 'digits')."}
    )
    license: Optional[str] = field(
        default=None,
        metadata={"help": "License id for the dataset card (default: the source dataset's, from its info or card)."},
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Replace output_dir when it holds a dataset written by gift_hf (anything else is refused)."},
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method: got {self.method!r}; expected one of {METHODS}")
        if self.method == "difficulty" and not self.teacher:
            raise ValueError("teacher: got None; method 'difficulty' needs --teacher to rank the images")
        if self.ipc < 1:
            raise ValueError(f"ipc: got {self.ipc}; expected a positive number of images per class")


def load_source(name: Optional[str], config: Optional[str] = None, revision: Optional[str] = None):
    """The real dataset: the embedded digits by default, else ``datasets.load_dataset``."""
    if name is None or name == "digits":
        from gift_hf.data.images import load_digits_dataset

        return load_digits_dataset()
    import datasets

    from gift_hf.data.distilled import check_local_path

    # a missing local path is "not found", never a Hub or network error
    return datasets.load_dataset(check_local_path(name, "dataset_name"), config, revision=revision)


def make_parser() -> GIFTParser:
    return GIFTParser((DistillArguments,), prog="gift-hf distill", description=__doc__)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in METHODS:  # `gift-hf distill random ...`
        argv = ["--method", argv[0], *argv[1:]]
    (args,) = make_parser().parse_args_and_config(argv)
    from gift_hf.data.distilled import save_distilled
    from gift_hf.data.selection import build_difficulty_distilled, build_random_distilled

    data = load_source(args.dataset_name, args.dataset_config_name, args.dataset_revision)
    source = args.source_dataset or args.dataset_name or "digits"
    if args.method == "random":
        ds, info = build_random_distilled(data, args.ipc, seed=args.seed, split=args.split,
                                          label_column=args.label_column, source_dataset=source)
    else:
        ds, info = build_difficulty_distilled(
            data, args.ipc, args.teacher if len(args.teacher) > 1 else args.teacher[0],
            band=(args.band_low, args.band_high), seed=args.seed, split=args.split, label_column=args.label_column,
            source_dataset=source, expert_epoch=args.expert_epoch, batch_size=args.batch_size, device=args.device,
        )
    path = save_distilled(ds, args.output_dir, info, overwrite=args.overwrite, license=args.license)
    print(f"saved {len(ds)} images ({args.method}, IPC {args.ipc}) to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
