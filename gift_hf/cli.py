"""The ``gift-hf`` command: ``gift-hf <command> [--help] [options]``.

Each command lives in ``gift_hf/commands/<name>.py`` and exposes ``HELP`` (one line) and
``main(argv)``, which parses its options with ``HfArgumentParser`` (so ``--help`` lists
every option with its explanation, and a YAML/JSON file path is accepted as the only
argument).
"""

from __future__ import annotations

import importlib
import sys

# command name → module under gift_hf.commands
COMMANDS = {
    "quickstart": "quickstart",
    "distill": "distill",
    "relabel": "relabel",
    "convert": "convert",
    "push": "push",
    "evaluate": "evaluate",
    "loss-benchmark": "loss_benchmark",
    "cross-architecture": "cross_architecture",
    "expert-epochs": "expert_epochs",
    "temperature-grid": "temperature_grid",
    "label-swap": "label_swap",
    "data-knowledge-scaling": "data_knowledge_scaling",
    "improvement-over-random": "improvement_over_random",
}


def _usage() -> str:
    lines = ["usage: gift-hf <command> [options]   (gift-hf <command> --help for its options)", "", "commands:"]
    width = max(map(len, COMMANDS))
    for name, module in COMMANDS.items():
        lines.append(f"  {name:<{width}}  {importlib.import_module(f'gift_hf.commands.{module}').HELP}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"gift_hf {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"gift-hf: unknown command {name!r}; expected one of {sorted(COMMANDS)}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"gift_hf.commands.{COMMANDS[name]}")
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
