"""``gift-hf quickstart``: CE vs KL vs GIFT students on a random IPC subset of digits."""

from __future__ import annotations

from ..quickstart import QuickstartArguments, run_quickstart
from ._args import parse_args

HELP = "the main job: teacher, random IPC subset of digits, CE vs KL vs GIFT students, table + plot"


def main(argv: list[str]) -> int:
    (args,) = parse_args((QuickstartArguments,), argv, "gift-hf quickstart", __doc__)
    run_quickstart(args)
    return 0
