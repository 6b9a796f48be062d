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

import argparse
import dataclasses
import json
import sys
from typing import Any, Iterable, Optional, Sequence

from transformers import HfArgumentParser

from gift_hf.redact import mask_secrets, secret_values

__all__ = ["ConfigError", "GIFTParser", "parse_dict_option"]


class ConfigError(ValueError):
    """A recipe file that cannot be used: unknown key, wrong type, not a mapping."""


#: The most YAML nodes a recipe may expand to, aliases counted at every use: a recipe has a
#: few hundred; an "exploding anchor" (billion laughs) has billions and would exhaust memory.
MAX_CONFIG_NODES = 100_000


def _expanded_size(root: Any, limit: int) -> int:
    """The number of nodes ``root`` (a composed YAML node) expands to, aliases counted at every
    use; stops counting past ``limit``. Memoised per node, so a shared anchor costs one visit."""
    import yaml

    def children(node: Any) -> list[Any]:
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if isinstance(node, yaml.MappingNode):
            return [n for pair in node.value for n in pair]
        return []

    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:  # iterative: a deeply nested recipe must not hit the recursion limit here
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if children_done:
            visiting.discard(id(node))
            sizes[id(node)] = min(limit + 1, 1 + sum(sizes[id(c)] for c in children(node)))
            continue
        if id(node) in visiting:  # an alias inside its own anchor: it expands forever
            return limit + 1
        visiting.add(id(node))
        stack.append((node, True))
        stack += [(c, False) for c in children(node) if id(c) not in sizes]
    return sizes[id(root)]


_YAML_BOOLS = ("true", "false")


def _refuse_ambiguous_yaml(root: Any, path: str) -> None:
    """Refuse what two YAML readers would read differently: a key given twice in one mapping
    (``yaml.safe_load`` silently keeps the last) and the YAML 1.1 booleans ``yes``/``no``/``on``/
    ``off``/``y``/``n`` (strings in YAML 1.2); one ``ConfigError`` naming the key and the line."""
    import yaml

    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            lines: dict[Any, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    if key.value in lines:
                        raise ConfigError(
                            f"{path}: key {key.value!r} is given twice (lines {lines[key.value]} and "
                            f"{line}); expected each key once (YAML readers disagree on which wins)"
                        )
                    lines[key.value] = line
                stack += [key, value]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value
        elif (
            isinstance(node, yaml.ScalarNode)
            and node.tag == "tag:yaml.org,2002:bool"
            and node.value.lower() not in _YAML_BOOLS
        ):
            raise ConfigError(
                f"{path}: line {node.start_mark.line + 1}: {node.value!r} is a boolean in YAML 1.1 but "
                "a string in YAML 1.2; expected true or false (or quote it for a string)"
            )


def _load_yaml(path: str) -> Any:
    """``yaml.safe_load`` of the file ``path``, refusing one whose aliases expand past
    :data:`MAX_CONFIG_NODES` nodes (before anything is built from it)."""
    import yaml

    with open(path, "rb") as f:  # bytes: YAML detects the encoding and names a bad byte itself
        loader = yaml.SafeLoader(f)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            if _expanded_size(node, MAX_CONFIG_NODES) > MAX_CONFIG_NODES:
                raise ConfigError(
                    f"--config: {path!r} expands to more than {MAX_CONFIG_NODES} values through its "
                    "anchors and aliases (an exploding YAML anchor?); expected a recipe of options"
                )
            _refuse_ambiguous_yaml(node, path)
            return loader.construct_document(node)
        finally:
            loader.dispose()


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


#: The ``TrainingArguments`` options ``--help`` shows after gift_hf's own; ``--help-all`` shows every one.
COMMON_TRAINING_OPTIONS = (
    "output_dir",
    "overwrite_output_dir",
    "resume_from_checkpoint",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "weight_decay",
    "optim",
    "optim_args",
    "lr_scheduler_type",
    "lr_scheduler_kwargs",
    "warmup_steps",
    "max_grad_norm",
    "seed",
    "data_seed",
    "bf16",
    "fp16",
    "use_cpu",
    "eval_strategy",
    "save_strategy",
    "save_steps",
    "save_total_limit",
    "logging_steps",
    "log_level",
    "report_to",
    "disable_tqdm",
    "dataloader_num_workers",
    "push_to_hub",
    "hub_model_id",
    "hub_token",
)


class _HelpAll(argparse.Action):
    """``--help-all``: every option, ``TrainingArguments``' included."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        parser.print_help(all_options=True)
        parser.exit()


class GIFTParser(HfArgumentParser):
    """``HfArgumentParser`` plus ``--config FILE.yaml`` (see the module docstring).

    :meth:`parse_args_and_config` returns one instance per dataclass, in order. ``--help``
    lists the script's own options and gift_hf's training options first, then the common
    ``TrainingArguments`` ones; ``--help-all`` lists every option.
    """

    def __init__(self, dataclass_types: Sequence[type], **kwargs: Any) -> None:
        kwargs.setdefault("usage", f"{kwargs.get('prog') or '%(prog)s'} [--config FILE.yaml] [options]")
        super().__init__(tuple(dataclass_types), **kwargs)
        self.add_argument(
            "--config",
            default=None,
            metavar="FILE.yaml",
            help="A YAML recipe of options (keys are the option names below); options given on the command line "
            "override it.",
        )
        self.add_argument("--help-all", action=_HelpAll, help="Show every option, TrainingArguments' included.")

    def format_help(self, all_options: bool = False) -> str:
        """The help text: gift_hf's options first, then the common ``TrainingArguments`` ones (every
        option with ``all_options``)."""
        from transformers import TrainingArguments

        training = set(TrainingArguments.__dataclass_fields__)
        actions = self._optionals._group_actions
        order = list(actions)

        def rank(action: Any) -> int:
            if action.dest in ("help", "config") or isinstance(action, _HelpAll):
                return 0
            if action.dest not in training:
                return 1  # the script's and gift_hf's own options
            return 2 if action.dest in COMMON_TRAINING_OPTIONS else 3

        hidden = [a for a in actions if rank(a) == 3]
        saved = {id(a): a.help for a in hidden}
        actions.sort(key=rank)
        if not all_options:
            for action in hidden:
                action.help = argparse.SUPPRESS
        try:
            text = super().format_help()
        finally:
            actions[:] = order
            for action in hidden:
                action.help = saved[id(action)]
        if hidden and not all_options:
            text += (
                f"\n{len(hidden)} more options of transformers.TrainingArguments are not shown: "
                f"{self.prog} --help-all\n"
            )
        return text

    def print_help(self, file: Any = None, all_options: bool = False) -> None:
        self._print_message(self.format_help(all_options), file if file is not None else sys.stdout)

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
            config = _load_yaml(path)
        except FileNotFoundError as err:
            raise ConfigError(f"--config: file {path!r} not found") from err
        except OSError as err:  # a directory, no permission …
            raise ConfigError(f"--config: cannot read {path!r} ({err.strerror or err}); expected a YAML file") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"--config: {path!r} is not valid YAML: {err}") from err
        except RecursionError as err:
            raise ConfigError(f"--config: {path!r} is nested too deeply; expected a recipe of options") from err
        if config is None:
            return {}
        if not isinstance(config, dict):
            raise ConfigError(f"--config: {path!r} holds a {type(config).__name__}; expected a mapping of options")
        known = self._field_names()
        for key in config:
            spelled = str(key).replace("-", "_")
            if spelled != key and spelled in known:
                both = f"both {key!r} and {spelled!r} name" if spelled in config else f"key {key!r} names"
                raise ConfigError(
                    f"{path}: {both} the option {spelled!r}; expected each option once, spelled {spelled!r}"
                )
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
            if value is None and not self._nullable(key):
                raise ConfigError(
                    f"{path}: key {key!r} got null; expected {self._expected(action)} (the option has no "
                    "'unset' value: leave the key out for its default)"
                )
            if value is None or (isinstance(value, (list, tuple)) and not value and action.nargs in ("+", "*")):
                # no command-line form ("--lr_milestones" needs a value): the file's value becomes the default
                self.set_defaults(**{key: None if value is None else []})
                continue
            if isinstance(value, dict) and action.type not in (None, str):
                raise ConfigError(f"{path}: key {key!r} got a mapping {value!r}; expected {self._expected(action)}")
            if isinstance(value, (list, tuple)) and action.nargs not in ("+", "*"):
                raise ConfigError(f"{path}: key {key!r} got a list {value!r}; expected {self._expected(action)}")
            if isinstance(value, (list, tuple)) and any(isinstance(v, (list, tuple, dict)) for v in value):
                raise ConfigError(f"{path}: key {key!r} got a nested list {value!r}; expected {self._expected(action)}")
            if isinstance(value, str) and getattr(action.type, "__name__", "") == "string_to_bool":
                # a quoted "no"/"off" reads as a string in every YAML version: say which boolean is meant
                raise ConfigError(
                    f"{path}: key {key!r} got {value!r}; expected true or false (a YAML boolean, "
                    "unquoted: a string such as 'no' is read differently by YAML 1.1 and 1.2)"
                )
            if isinstance(value, bool) and action.type in (int, float):
                raise ConfigError(f"{path}: key {key!r} got {value!r}; expected {self._expected(action)}")
            try:
                values = _as_token(value)
            except (TypeError, ValueError) as err:  # a mapping JSON cannot hold (dates as keys …)
                raise ConfigError(
                    f"{path}: key {key!r} got {value!r}; expected {self._expected(action)} ({err})"
                ) from err
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

    def _nullable(self, key: str) -> bool:
        """Whether the option ``key`` may be None: its type admits None, or its default is None."""
        import typing

        for dtype in self.dataclass_types:
            for f in dataclasses.fields(dtype):
                if f.name == key:
                    try:
                        hint = typing.get_type_hints(dtype).get(key, f.type)
                    except Exception:  # an unresolvable annotation: do not guess, accept
                        return True
                    return f.default is None or hint is Any or hint is type(None) or type(None) in typing.get_args(hint)
        return True

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
            outputs = self._parse_args_and_config(args)
        except ValueError as err:  # unknown options, wrong-typed values, __post_init__ checks
            masked = mask_secrets(str(err), self._secrets)
            if masked != str(err):
                raise type(err)(masked) from None
            raise
        # The command's --overwrite_output_dir is what lets gift_hf.files.write_output replace
        # files it did not write (`gift-hf` runs each command in its own context).
        from gift_hf.files import allow_overwrite

        allow_overwrite(any(bool(getattr(o, "overwrite_output_dir", False)) for o in outputs))
        return outputs

    def _refuse_repeated_options(self, args: list[str]) -> None:
        """One option given twice on the command line, in any spelling (``--learning_rate``,
        ``--learning-rate``, ``--no_x`` for ``--x``), is an error: argparse would keep the last."""
        given: dict[str, str] = {}
        for arg in args:
            if not arg.startswith("--"):
                continue
            name = arg.split("=", 1)[0]
            action = self._option_string_actions.get(name)
            if action is None or action.dest in ("help", "config"):
                continue
            if action.dest in given:
                self.error(
                    f"option {action.dest!r} is given twice ({given[action.dest]} and {name}); expected it "
                    "once (the command line overrides --config, but not itself)"
                )
            given[action.dest] = name

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
        self._refuse_repeated_options(args)
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
