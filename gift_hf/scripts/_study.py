"""What every study script shares: its parser (study, data and training options) and its main."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable

from gift_hf.parser import GIFTParser


def study_script(
    name: str, module: str, arguments: str, run: str, protocol: str, doc: str
) -> tuple[Callable[[], GIFTParser], Callable[[list[str] | None], int]]:
    """``(make_parser, main)`` of the study ``gift-hf <name>``.

    ``module`` (under ``gift_hf.studies``) holds the study's ``arguments`` dataclass and
    ``run`` function; ``protocol`` names the :data:`gift_hf.engine.config.PROTOCOLS` entry its
    students train with by default (every field can be overridden, or set by ``--config``).
    The study writes into ``output_dir`` (default ``outputs/<module>``); it runs unchanged
    under ``accelerate launch``, the cells shared between the processes, and only the main
    process prints the table and the files written.
    """

    def make() -> GIFTParser:
        from gift_hf.data.images import DataArguments
        from gift_hf.engine.config import PROTOCOLS, GIFTConfig

        study = importlib.import_module(f"gift_hf.studies.{module}")
        parser = GIFTParser(
            (getattr(study, arguments), DataArguments, GIFTConfig), prog=f"gift-hf {name}", description=doc
        )
        parser.set_defaults(output_dir=f"outputs/{module}", **PROTOCOLS[protocol])
        return parser

    def main(argv: list[str] | None = None) -> int:
        from gift_hf.studies.sweep import detach_from_launcher

        # Before GIFTConfig exists: under `accelerate launch` each process trains whole
        # students on its own, and a GIFTConfig would join the launch's process group.
        detach_from_launcher()
        args, data_args, config = make().parse_args_and_config(argv)
        from gift_hf.files import check_outputs

        # before any training: a user's results file in output_dir is refused now, not after the cells
        check_outputs(*(os.path.join(config.output_dir, f"results.{ext}") for ext in ("json", "csv", "md")))
        runner: Any = getattr(importlib.import_module(f"gift_hf.studies.{module}"), run)
        result = runner(args, data_args, config)
        if result.is_main:
            print(result.table)
            print()
            for kind, path in result.files.items():
                print(f"{kind:>8}: {path}")
            stats = result.stats
            print(f"cells: {stats.total} ({stats.trained} trained now, {stats.reused} reused from {config.output_dir})")
        return 0

    return make, main


def run_as_script(main: Callable[[list[str] | None], Any]) -> None:
    """``if __name__ == "__main__"`` of a script: exit with its status."""
    status = main(None)
    sys.exit(status if isinstance(status, int) else 0)
