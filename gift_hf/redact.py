"""Keep secrets out of messages: values of token-like options and Hub tokens are masked.

Used by :class:`~gift_hf.parser.GIFTParser` so that no parsing error, not even one about a
mistyped ``--hub_tokn``, prints a token.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

__all__ = ["mask_secrets", "secret_values"]

# Options whose values are secrets (``--hub_token``, and mistyped ``--hub_tokn``), and Hub
# tokens wherever they appear.
SECRET_OPTION = re.compile(r"tok|secret|passw|api[-_]?key|credential", re.IGNORECASE)
HUB_TOKEN = re.compile(r"hf_[A-Za-z0-9]{8,}")


def secret_values(args: Iterable[str], options: Mapping[str, Any] | None = None) -> list[str]:
    """The values given to token-like options in ``args`` (``--flag value``, ``--flag=value``)
    and in ``options`` (a recipe file's mapping)."""
    args = list(args)
    values = [str(v) for k, v in (options or {}).items() if SECRET_OPTION.search(str(k)) and v]
    for i, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        if not flag.startswith("-") or not SECRET_OPTION.search(flag):
            continue
        if eq:
            values.append(value)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            values.append(args[i + 1])
    return [v for v in values if v]


def mask_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every value of ``secrets`` and every Hub token replaced by ``***``."""
    for value in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(value, "***")
    return HUB_TOKEN.sub("hf_***", text)
