"""Shared body of the experiment commands: parse (study, data, protocol) options, run, report."""

from __future__ import annotations

from typing import Callable

from ..evaluation import ProtocolArguments
from ..recipe_utils import DataArguments
from ._args import parse_args


def run_experiment_command(
    argv: list[str], prog: str, description: str, arguments_class: type, run: Callable, default_protocol: str
) -> int:
    """``gift-hf <prog>``: the study's options, ``DataArguments`` and ``ProtocolArguments``.

    Runs unchanged under ``accelerate launch`` (cells shared between processes); only the
    main process prints the table and the files written.
    """
    args, data_args, protocol_args = parse_args(
        (arguments_class, DataArguments, ProtocolArguments), argv, f"gift-hf {prog}", description
    )
    result = run(args, data_args, protocol_args.to_protocol(default_protocol))
    if result.is_main:
        print(result.table)
        print()
        for kind, path in result.files.items():
            print(f"{kind:>8}: {path}")
        stats = result.stats
        print(f"cells: {stats.total} ({stats.trained} trained now, {stats.reused} reused from {args.output_dir})")
    return 0
