"""Shared helper: parse a command's dataclasses from argv or a single YAML/JSON file."""

from __future__ import annotations

from typing import Any

from transformers import HfArgumentParser


def parse_args(dataclass_types: tuple, argv: list[str], prog: str, description: str | None) -> tuple[Any, ...]:
    """``HfArgumentParser`` over ``dataclass_types`` for the program ``prog`` (``"gift-hf relabel"``,
    ``"train_student.py"``); a single ``.yaml``/``.yml``/``.json`` argument is read as the options file."""
    parser = HfArgumentParser(dataclass_types, prog=prog, description=description)
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(argv[0])
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(argv[0])
    return parser.parse_args_into_dataclasses(args=argv)
