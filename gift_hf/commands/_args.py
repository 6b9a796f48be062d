"""Shared helper: parse a command's dataclasses from argv or a single YAML/JSON file."""

from __future__ import annotations

import re
from typing import Any, Iterable

from transformers import HfArgumentParser

# Options whose values are secrets (``--hub_token``, a mistyped ``--hub_tokn`` too), and Hub
# tokens wherever they appear: both are masked in every parsing error.
SECRET_OPTION = re.compile(r"tok|secret|passw|api_?key|credential", re.IGNORECASE)
HUB_TOKEN = re.compile(r"hf_[A-Za-z0-9]{8,}")


def _secret_values(argv: list[str], options: dict[str, Any] | None = None) -> list[str]:
    """Values given to secret-looking options in ``argv`` (``--flag value``, ``--flag=value``) or ``options``."""
    values = [str(v) for k, v in (options or {}).items() if SECRET_OPTION.search(str(k)) and v]
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if not flag.startswith("-") or not SECRET_OPTION.search(flag):
            continue
        if eq:
            values.append(value)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            values.append(argv[i + 1])
    return [v for v in values if v]


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every value in ``secrets`` and every Hub token replaced by ``***``."""
    for value in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(value, "***")
    return HUB_TOKEN.sub("hf_***", text)


def parse_args(dataclass_types: tuple, argv: list[str], prog: str, description: str | None) -> tuple[Any, ...]:
    """``HfArgumentParser`` over ``dataclass_types`` for the program ``prog`` (``"gift-hf relabel"``,
    ``"train_student.py"``); a single ``.yaml``/``.yml``/``.json`` argument is read as the options file.

    No error it raises or prints shows a secret: values of token-like options (even mistyped
    ones) and Hub tokens are masked."""
    parser = HfArgumentParser(dataclass_types, prog=prog, description=description)
    argv = list(argv)
    from_file = len(argv) == 1 and argv[0].endswith((".yaml", ".yml", ".json"))
    options = _read_options(argv[0]) if from_file else None
    secrets = _secret_values(argv, options)
    print_error = parser.error
    parser.error = lambda message: print_error(mask_secrets(message, secrets))  # argparse's usage errors
    try:
        if from_file and argv[0].endswith(".json"):
            return parser.parse_json_file(argv[0])
        if from_file:
            return parser.parse_yaml_file(argv[0])
        return parser.parse_args_into_dataclasses(args=argv)
    except (ValueError, TypeError) as err:  # unused options, __post_init__ validation
        masked = mask_secrets(str(err), secrets)
        if masked != str(err):
            raise type(err)(masked) from None
        raise


def _read_options(path: str) -> dict[str, Any] | None:
    """The mapping of an options file, to know its secrets (None if unreadable: the parser reports that)."""
    import json

    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            loaded = json.load(f) if path.endswith(".json") else yaml.safe_load(f)
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return loaded if isinstance(loaded, dict) else None
