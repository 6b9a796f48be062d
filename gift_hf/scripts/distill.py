"""``gift-hf distill random|difficulty|rded``: a distilled set made from a dataset's real images.

``random`` draws ``--ipc`` images per class at random (class-balanced, reproducible by
``--seed``); ``difficulty`` ranks each class's images by the teacher's cross-entropy
(easiest first) and draws ``--ipc`` from the quantile band ``--band_low``..``--band_high``;
``rded`` (RDED, Sun et al., CVPR 2024) scores random-resized crops of ``--candidates_per_class``
images per class by the teacher's cross-entropy and stitches the best ``factor²·ipc`` crops
``--factor × --factor`` into each image.
The result is saved in the Hub layout (``data/*.parquet`` + ``README.md``); add soft labels
with ``gift-hf relabel``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Optional

from gift_hf.parser import GIFTParser

METHODS = ("random", "difficulty", "rded")
#: methods that score images with a teacher
TEACHER_METHODS = ("difficulty", "rded")


@dataclass
class DistillArguments:
    """Options of ``gift-hf distill``."""

    output_dir: str = field(metadata={"help": "Directory to write the distilled dataset to (Hub layout)."})
    method: str = field(
        default="random",
        metadata={
            "help": "Selection method: 'random' (class-balanced random real images), 'difficulty' "
            "(per class, ranked by the teacher's cross-entropy, drawn from the quantile band "
            "[band_low, band_high]) or 'rded' (RDED: the teacher's lowest-cross-entropy random-resized crops, "
            "stitched factor × factor). May also be given first: `gift-hf distill rded ...`."
        },
    )
    dataset_name: Optional[str] = field(
        default=None,
        metadata={
            "help": "Real dataset to select from: a Hub id or a local directory read with "
            "datasets.load_dataset, or 'digit_pairs' (embedded). Default: the embedded digits."
        },
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
        metadata={
            "help": "difficulty and rded: the teacher(s) scoring the images (saved directory, Hub id; "
            "several = ensemble with averaged logits)."
        },
    )
    expert_epoch: Optional[float] = field(
        default=None,
        metadata={
            "help": "difficulty and rded: use the teacher's checkpoint of this training epoch (teacher given "
            "as a Trainer output_dir with checkpoint-* folders)."
        },
    )
    band_low: float = field(
        default=0.0, metadata={"help": "difficulty only: lower quantile of the band (0 = easiest)."}
    )
    band_high: float = field(
        default=0.5, metadata={"help": "difficulty only: upper quantile of the band (1 = hardest)."}
    )
    factor: int = field(
        default=1,
        metadata={
            "help": "rded only: crops per side of each image (factor² crops, each image_size / factor pixels); "
            "1 keeps whole crops. RDED uses 2 on ImageNet-1K, 1 at small resolutions."
        },
    )
    candidates_per_class: int = field(
        default=300,
        metadata={"help": "rded only: real images drawn per class (all of a smaller class); at least factor²·ipc."},
    )
    crops_per_image: int = field(
        default=5, metadata={"help": "rded only: random-resized crops scored per candidate image."}
    )
    crop_scale: list[float] = field(
        default_factory=lambda: [0.08, 1.0],
        metadata={"help": "rded only: area fraction range (low high) of the crops, as RandomResizedCrop's scale."},
    )
    image_size: Optional[int] = field(
        default=None, metadata={"help": "rded only: side of the images made (default: the teacher's input size)."}
    )
    image_column: str = field(default="image", metadata={"help": "rded only: the source's image column."})
    batch_size: int = field(
        default=256, metadata={"help": "difficulty and rded: images (crops) per teacher forward pass."}
    )
    device: Optional[str] = field(
        default=None, metadata={"help": "difficulty and rded: device (default: cuda if available)."}
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
        if self.method in TEACHER_METHODS and not self.teacher:
            raise ValueError(f"teacher: got None; method {self.method!r} needs --teacher to score the images")
        if self.ipc < 1:
            raise ValueError(f"ipc: got {self.ipc}; expected a positive number of images per class")
        for name in ("factor", "candidates_per_class", "crops_per_image", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: got {getattr(self, name)}; expected a positive integer")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(
                f"crop_scale: got {self.crop_scale}; expected two numbers low high with 0 < low <= high <= 1"
            )
        if self.image_size is not None and (self.image_size < 1 or self.image_size % self.factor):
            raise ValueError(f"image_size: got {self.image_size}; expected a positive multiple of factor {self.factor}")


def load_source(name: Optional[str], config: Optional[str] = None, revision: Optional[str] = None):
    """The real dataset: an embedded one by name (default digits), else ``datasets.load_dataset``."""
    from gift_hf.data.images import embedded_dataset, open_dataset

    embedded = embedded_dataset(name)
    if embedded is not None:
        return embedded

    # a missing local path is "not found", never a Hub or network error
    return open_dataset(name, "dataset_name", config, revision=revision)


def make_parser() -> GIFTParser:
    return GIFTParser((DistillArguments,), prog="gift-hf distill", description=__doc__)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in METHODS:  # `gift-hf distill random ...`
        argv = ["--method", argv[0], *argv[1:]]
    (args,) = make_parser().parse_args_and_config(argv)
    from gift_hf.data.distilled import save_distilled
    from gift_hf.data.rded import build_rded_distilled
    from gift_hf.data.selection import build_difficulty_distilled, build_random_distilled

    data = load_source(args.dataset_name, args.dataset_config_name, args.dataset_revision)
    source = args.source_dataset or args.dataset_name or "digits"
    if args.method == "random":
        ds, info = build_random_distilled(
            data, args.ipc, seed=args.seed, split=args.split, label_column=args.label_column, source_dataset=source
        )
    elif args.method == "rded":
        ds, info = build_rded_distilled(
            data,
            args.teacher if len(args.teacher) > 1 else args.teacher[0],
            args.ipc,
            factor=args.factor,
            candidates_per_class=args.candidates_per_class,
            crops_per_image=args.crops_per_image,
            scale=tuple(args.crop_scale),
            image_size=args.image_size,
            seed=args.seed,
            split=args.split,
            label_column=args.label_column,
            image_column=args.image_column,
            source_dataset=source,
            expert_epoch=args.expert_epoch,
            batch_size=args.batch_size,
            device=args.device,
        )
    else:
        ds, info = build_difficulty_distilled(
            data,
            args.ipc,
            args.teacher if len(args.teacher) > 1 else args.teacher[0],
            band=(args.band_low, args.band_high),
            seed=args.seed,
            split=args.split,
            label_column=args.label_column,
            source_dataset=source,
            expert_epoch=args.expert_epoch,
            batch_size=args.batch_size,
            device=args.device,
        )
    path = save_distilled(ds, args.output_dir, info, overwrite=args.overwrite, license=args.license)
    how = f"{args.method}, IPC {args.ipc}" + (f", factor {args.factor}" if args.method == "rded" else "")
    print(f"saved {len(ds)} images ({how}) to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
