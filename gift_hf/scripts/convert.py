"""``gift-hf convert``: a tensor file or a class-folder tree → a distilled dataset in the Hub layout.

Tensor files are ``torch.save`` dicts ``{"data": N×C×H×W, "label": N or N×C}`` (or a
``(data, label)`` pair), loaded with ``torch.load(weights_only=True)``: files that need
arbitrary objects unpickled are refused. Image folders have one sub-folder per class (the
SRe2L / RDED output layout). ``N×C`` labels become the ``soft_label`` column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from gift_hf.parser import GIFTParser


@dataclass
class ConvertArguments:
    """Options of ``gift-hf convert``."""

    input: str = field(metadata={"help": "A tensor file (torch.save) or a folder with one sub-folder per class."})
    output_dir: str = field(metadata={"help": "Directory to write the dataset to (Hub layout)."})
    input_format: str = field(
        default="auto",
        metadata={"help": "'tensor', 'folder', or 'auto' (a directory is a folder, a file a tensor file)."},
    )
    class_names: Optional[list[str]] = field(
        default=None,
        metadata={
            "help": "One name per class, in class-id order (default: '0', '1', ... for tensor files; the "
            "sorted sub-folder names for folders)."
        },
    )
    data_key: str = field(default="data", metadata={"help": "tensor: key of the N×C×H×W images."})
    label_key: str = field(default="label", metadata={"help": "tensor: key of the N class ids or N×C soft labels."})
    image_format: str = field(
        default="auto",
        metadata={
            "help": "tensor: 'image' (8-bit PNG; float data must be in [0, 1]), 'pixel_values' (float Array3D, "
            "lossless for normalised/ZCA data) or 'auto' (uint8 → image, float → pixel_values)."
        },
    )
    soft_label_kind: str = field(
        default="logits", metadata={"help": "tensor: what N×C labels are, 'logits' or 'probabilities'."}
    )
    source_dataset: Optional[str] = field(default=None, metadata={"help": "Source dataset recorded in the card."})
    method: Optional[str] = field(
        default=None, metadata={"help": "Distillation method recorded in the card (e.g. sre2l, rded, mtt)."}
    )
    image_mean: Optional[list[float]] = field(
        default=None, metadata={"help": "Per-channel mean recorded in the card (of pixel_values, or to train with)."}
    )
    image_std: Optional[list[float]] = field(default=None, metadata={"help": "Per-channel std recorded in the card."})
    license: Optional[str] = field(
        default=None, metadata={"help": "License id for the dataset card (default: unknown, as nothing records it)."}
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Replace output_dir when it holds a dataset written by gift_hf (anything else is refused)."},
    )


def make_parser() -> GIFTParser:
    return GIFTParser((ConvertArguments,), prog="gift-hf convert", description=__doc__)


def main(argv: list[str] | None = None) -> int:
    (args,) = make_parser().parse_args_and_config(argv)
    import os

    from gift_hf.data.convert import convert

    folder = args.input_format == "folder" or (args.input_format == "auto" and os.path.isdir(args.input))
    tensor_options = (
        {}
        if folder
        else dict(
            data_key=args.data_key,
            label_key=args.label_key,
            image_format=args.image_format,
            soft_label_kind=args.soft_label_kind,
        )
    )
    path, info = convert(
        args.input,
        args.output_dir,
        input_format=args.input_format,
        overwrite=args.overwrite,
        license=args.license,
        image_mean=args.image_mean,
        image_std=args.image_std,
        class_names=args.class_names,
        source_dataset=args.source_dataset,
        method=args.method,
        **tensor_options,
    )
    print(f"saved {info.num_classes} classes (IPC {info.ipc}) to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
