"""``gift-hf relabel``: add teacher soft labels to a distilled dataset.

Reads a dataset in the Hub layout (local directory or Hub id), runs the teacher (or an
ensemble, logits averaged) on every un-augmented image, and saves the dataset with a
dense ``soft_label`` column, or sparse top-k columns with ``--topk``. The card records the
teacher, its expert epoch, the label kind and temperature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from gift_hf.parser import GIFTParser


@dataclass
class RelabelArguments:
    """Options of ``gift-hf relabel``."""

    dataset: str = field(metadata={"help": "The dataset to relabel: a local directory in the Hub layout or a Hub id."})
    teacher: list[str] = field(
        metadata={
            "help": "Teacher(s): a directory saved with save_pretrained (or a Trainer output_dir with "
            "--expert_epoch), or a Hub image-classification model id. Several = an ensemble whose logits are "
            "averaged."
        }
    )
    output_dir: str = field(metadata={"help": "Directory to write the relabelled dataset to (Hub layout)."})
    output: str = field(
        default="probabilities",
        metadata={
            "help": "What to store: 'probabilities' (softmax(logits / T), the label paper's labels) or "
            "'logits' (raw logits)."
        },
    )
    temperature: Optional[float] = field(
        default=None, metadata={"help": "Softmax temperature T for --output probabilities (default 1)."}
    )
    topk: Optional[int] = field(
        default=None,
        metadata={
            "help": "Store only the k largest entries per row (sparse soft_label_topk_values/_indices). "
            "Default: the dense soft_label column."
        },
    )
    expert_epoch: Optional[float] = field(
        default=None,
        metadata={
            "help": "Use the teacher's training checkpoint of this epoch (the 'expert epoch'); teachers must "
            "be Trainer output_dirs with checkpoint-* folders (gift-hf train-teacher keeps one per epoch)."
        },
    )
    dtype: str = field(default="float32", metadata={"help": "Storage dtype of the soft labels: float32 or float16."})
    batch_size: int = field(default=256, metadata={"help": "Teacher inference batch size."})
    device: Optional[str] = field(default=None, metadata={"help": "Inference device (default: cuda if available)."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers decoding images."})
    revision: Optional[str] = field(default=None, metadata={"help": "Hub revision of --dataset."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow Hub teachers to run their own code (only for repos you trust)."}
    )
    license: Optional[str] = field(
        default=None, metadata={"help": "License id for the card (default: keep the input card's, else 'unknown')."}
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Replace output_dir when it holds a dataset written by gift_hf (anything else is refused)."},
    )
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})


def make_parser() -> GIFTParser:
    return GIFTParser((RelabelArguments,), prog="gift-hf relabel", description=__doc__)


def main(argv: list[str] | None = None) -> int:
    (args,) = make_parser().parse_args_and_config(argv)
    from gift_hf.data.distilled import card_license, load_distilled, save_distilled
    from gift_hf.data.relabel import relabel

    dataset, info = load_distilled(args.dataset, revision=args.revision)
    labelled, info = relabel(
        dataset,
        args.teacher if len(args.teacher) > 1 else args.teacher[0],
        info=info,
        output=args.output,
        temperature=args.temperature,
        topk=args.topk,
        expert_epoch=args.expert_epoch,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        num_workers=args.num_workers,
        progress=args.progress,
        teacher_kwargs={"trust_remote_code": args.trust_remote_code},
    )
    license = args.license or card_license(args.dataset, revision=args.revision) or "unknown"
    path = save_distilled(labelled, args.output_dir, info, overwrite=args.overwrite, license=license)
    print(
        f"saved {sum(len(s) for s in labelled.values())} relabelled rows ({args.output}"
        + (f", top-{args.topk}" if args.topk else "")
        + f") to {path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
