"""`GIFTParser`: the one option parser of every script (``--config FILE.yaml`` plus overrides).

Modelled on TRL's ``TrlParser``: a ``transformers.HfArgumentParser`` over the script's
dataclasses that also reads ``--config FILE.yaml``. The file's keys are the options' names;
options given on the command line win over the file. A key no dataclass has, or a value of
the wrong type, is an error that names the key and the file.

Dict-valued options (``teacher_model_init_kwargs``, ``student_model_kwargs`` …) are given
as a JSON object on the command line and as a mapping in YAML, the way ``TrainingArguments``
takes ``lr_scheduler_kwargs``; :func:`parse_dict_option` is the one place a JSON string
becomes a dict.

"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any, Iterable, Optional, Sequence

from transformers import HfArgumentParser

from gift_hf.redact import mask_secrets, secret_values

__all__ = ["ConfigError", "GIFTParser", "parse_dict_option"]


class ConfigError(ValueError):
    """A recipe file that cannot be used: unknown key, wrong type, not a mapping."""


def parse_dict_option(name: str, value: Any) -> Optional[dict]:
    """``value`` as a dict: a dict as is, a JSON object string parsed, None kept.

    Raises a ``ValueError`` naming the option ``name`` for anything else.
    """
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"{name}: got {value!r}; expected a JSON object such as '{{\"key\": 1}}'") from err
        if isinstance(parsed, dict):
            return parsed
    raise ValueError(f"{name}: got {value!r}; expected a JSON object (a mapping in YAML)")


def _as_token(value: Any) -> list[str]:
    """A YAML value as command-line tokens (lists become several values, mappings JSON)."""
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _as_token(v)]
    if isinstance(value, dict):
        return [json.dumps(value)]
    return [str(value)]


class GIFTParser(HfArgumentParser):
    """``HfArgumentParser`` plus ``--config FILE.yaml`` (see the module docstring).

    :meth:`parse_args_and_config` returns one instance per dataclass, in order.
    """

    def __init__(self, dataclass_types: Sequence[type], **kwargs: Any) -> None:
        super().__init__(tuple(dataclass_types), **kwargs)
        self.add_argument(
            "--config",
            default=None,
            metavar="FILE.yaml",
            help="A YAML recipe of options (keys are the option names below); options given on the command line "
            "override it.",
        )

    # ------------------------------------------------------------------ helpers
    def _known_options(self) -> dict[str, Any]:
        """``dest`` → argparse action of every option the dataclasses define."""
        options: dict[str, Any] = {}
        for action in self._actions:  # the first action of a dest: `--flag`, not its `--no_flag` complement
            if action.dest not in ("help", "config"):
                options.setdefault(action.dest, action)
        return options

    def _field_names(self) -> set[str]:
        return {f.name for dtype in self.dataclass_types for f in dataclasses.fields(dtype) if f.init}

    def read_config(self, path: str) -> dict[str, Any]:
        """The options of a YAML recipe, checked against this parser's options."""
        import yaml

        try:
            with open(path) as f:
                config = yaml.safe_load(f)
        except FileNotFoundError as err:
            raise ConfigError(f"--config: file {path!r} not found") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"--config: {path!r} is not valid YAML: {err}") from err
        if config is None:
            return {}
        if not isinstance(config, dict):
            raise ConfigError(f"--config: {path!r} holds a {type(config).__name__}; expected a mapping of options")
        known = self._field_names()
        unknown = sorted(str(k) for k in config if k not in known)
        if unknown:
            raise ConfigError(
                f"{path}: unknown key(s) {unknown}; expected option names of `{self.prog} --help` "
                f"(e.g. {sorted(known)[:6]} …)"
            )
        return config

    def _check_values(self, config: dict[str, Any], path: str) -> list[str]:
        """Convert the recipe into command-line tokens, checking each value's type on its own
        so that the error names the key and the file."""
        actions = self._known_options()
        tokens: list[str] = []
        for key, value in config.items():
            action = actions[key]
            if value is None or (isinstance(value, (list, tuple)) and not value and action.nargs in ("+", "*")):
                # no command-line form ("--lr_milestones" needs a value): the file's value becomes the default
                self.set_defaults(**{key: None if value is None else []})
                continue
            if isinstance(value, dict) and action.type not in (None, str):
                raise ConfigError(f"{path}: key {key!r} got a mapping {value!r}; expected {self._expected(action)}")
            if isinstance(value, (list, tuple)) and action.nargs not in ("+", "*"):
                raise ConfigError(f"{path}: key {key!r} got a list {value!r}; expected {self._expected(action)}")
            if isinstance(value, bool) and action.type in (int, float):
                raise ConfigError(f"{path}: key {key!r} got {value!r}; expected {self._expected(action)}")
            values = _as_token(value)
            if action.type is not None:
                for v in values:
                    try:
                        action.type(v)
                    except Exception as err:  # ValueError, argparse.ArgumentTypeError (bools) …
                        raise ConfigError(
                            f"{path}: key {key!r} got {value!r}; expected {self._expected(action)}"
                        ) from err
            if action.choices is not None and any(v not in action.choices for v in values):
                raise ConfigError(f"{path}: key {key!r} got {value!r}; expected one of {list(action.choices)}")
            tokens += [action.option_strings[0], *values]
        return tokens

    @staticmethod
    def _expected(action: Any) -> str:
        kind = getattr(action.type, "__name__", "a value")
        if kind == "string_to_bool":
            kind = "bool"
        if action.nargs in ("+", "*"):
            return f"a list of {kind}"
        return {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}.get(kind, kind)

    # ------------------------------------------------------------------ parsing
    def error(self, message: str) -> Any:
        # argparse prints the offending value: never a token (gift_hf.redact)
        return super().error(mask_secrets(message, getattr(self, "_secrets", ())))

    def parse_args_and_config(self, args: Iterable[str] | None = None) -> tuple[Any, ...]:
        """Parse ``args`` (default ``sys.argv[1:]``): ``--config FILE`` first, then the
        command-line options on top. Returns one dataclass instance per type.

        No error shows a secret: values of token-like options (mistyped ones too) and Hub
        tokens are masked."""
        args = list(sys.argv[1:] if args is None else args)
        self._secrets = secret_values(args)
        try:
            return self._parse_args_and_config(args)
        except ValueError as err:  # unknown options, wrong-typed values, __post_init__ checks
            masked = mask_secrets(str(err), self._secrets)
            if masked != str(err):
                raise type(err)(masked) from None
            raise

    def _parse_args_and_config(self, args: list[str]) -> tuple[Any, ...]:
        config_path = None
        if "--config" in args:
            i = args.index("--config")
            if i + 1 >= len(args):
                self.error("argument --config: expected one argument (a YAML file)")
            config_path = args[i + 1]
            del args[i : i + 2]
        else:
            for i, arg in enumerate(args):
                if arg.startswith("--config="):
                    config_path = arg.split("=", 1)[1]
                    del args[i]
                    break
        tokens: list[str] = []
        if config_path is not None:
            config = self.read_config(config_path)
            self._secrets += secret_values([], config)
            tokens = self._check_values(config, config_path)
        # argparse keeps the last occurrence of an option: the command line wins over the file.
        *outputs, remaining = self.parse_args_into_dataclasses(args=tokens + args, return_remaining_strings=True)
        if remaining:
            # Name the options only: the value after a mistyped `--hub_tokn` may be a secret.
            names = [arg.split("=", 1)[0] for arg in remaining if arg.startswith("-")]
            self.error(f"unrecognized option(s) {names or ['(a value without an option)']}; see {self.prog} --help")
        return tuple(outputs[: len(self.dataclass_types)])  # without the namespace holding `config`
