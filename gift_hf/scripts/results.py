"""``gift-hf results``: regenerate every table and plot of the results pages (``make results``).

Trains the digit-pair teacher, builds the random and RDED sets and runs the loss benchmark
on each (AdamW and SGD), then rewrites the generated blocks of ``docs/results.md`` and
``docs/when-gift-helps.md`` with their provenance (commit, versions, protocol). Resumable:
finished cells in ``output_dir`` are reused. ``--size ci`` is a smoke run of every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gift_hf.parser import GIFTParser
from gift_hf.scripts._study import run_as_script


@dataclass
class ResultsArguments:
    """Options of ``gift-hf results``."""

    size: str = field(default="full", metadata={"help": "'full' (the pages' numbers) or 'ci' (a smoke run)."})
    output_dir: str = field(default="outputs/results", metadata={"help": "Teachers, sets and study cells."})
    docs_dir: str = field(default="docs", metadata={"help": "Folder of the pages (results.md, when-gift-helps.md)."})


def make_parser() -> GIFTParser:
    return GIFTParser((ResultsArguments,), prog="gift-hf results", description=__doc__)


def main(argv: list[str] | None = None) -> int:
    (args,) = make_parser().parse_args_and_config(argv)
    from gift_hf.studies.results import run_results

    result = run_results(args.size, args.output_dir, args.docs_dir)
    print(f"teacher: {result['teacher_accuracy']:.1f}%; pages written: {', '.join(result['pages'])}")
    return 0


if __name__ == "__main__":
    run_as_script(main)
