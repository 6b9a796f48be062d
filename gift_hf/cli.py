"""The ``gift-hf`` command: ``gift-hf <command> [--help] [options]``.

Each command is a script, ``gift_hf/scripts/<name>.py`` with ``make_parser()`` and
``main(argv)``; it is imported only when it runs, so ``gift-hf --help`` imports neither
torch nor transformers. Every command takes ``--config FILE.yaml`` (a recipe) and
command-line options that override it.

An error the user can fix (a bad option or value, a path that is not found, an output
folder that is not empty, a training run that diverged), a Hub or network error (offline,
repository not found, no permission) and a full disk are printed as one line,
``gift-hf <command>: error: <message>``, with exit status 2; ``GIFT_HF_DEBUG=1`` shows the
traceback instead. Every message and traceback printed here has its secrets masked (values
of token-like options, anything that looks like a Hub token). A closed stdout (``gift-hf
train --help | head -1``) ends the command quietly, as the Python docs recommend.
"""

from __future__ import annotations

import contextvars
import importlib
import logging
import os
import sys
import traceback

#: Set to 1 to see the traceback of every error, user errors included.
DEBUG_VARIABLE = "GIFT_HF_DEBUG"

#: What gift_hf raises for input the user can fix (a bad option, a missing path, a
#: non-empty output_dir, a run that diverged): printed as one line, exit status 2.
USER_ERRORS = (
    ValueError,
    KeyError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    FloatingPointError,
)

#: command → (module under gift_hf.scripts, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": (
        "quickstart",
        "the main job: teacher, random IPC subset of digits, CE vs KL vs GIFT students, table + plot",
    ),
    "train": ("train", "train a student with GIFT or any soft-label loss (one process or accelerate launch)"),
    "train-teacher": ("train_teacher", "train a teacher (expert) with hard labels, one checkpoint per epoch"),
    "distill": (
        "distill",
        "make a distilled set from real images (random class-balanced, by teacher difficulty, or "
        "RDED's teacher-scored crops)",
    ),
    "relabel": (
        "relabel",
        "add teacher soft labels (logits or softmax(logits/T), ensembles, expert epoch, top-k) to a dataset",
    ),
    "convert": ("convert", "convert a tensor file {data, label} or a class-folder tree to the Hub layout"),
    "push": ("push", "publish a distilled dataset directory to the Hub (create repo; data, then card)"),
    "evaluate": (
        "evaluate",
        "evaluate a distilled set (folder or Hub id) under a protocol: N students, mean ± std on the real test split",
    ),
    "loss-benchmark": (
        "loss_benchmark",
        "losses × optimizers on one distilled set, with the spread across optimizers per loss",
    ),
    "cross-architecture": ("cross_architecture", "teacher × student architectures on one distilled set (heatmap)"),
    "expert-epochs": (
        "expert_epochs",
        "soft labels from each saved teacher epoch at several IPC: where the best expert epoch moves",
    ),
    "temperature-grid": ("temperature_grid", "label temperature × expert epoch grid (heatmap)"),
    "label-swap": ("label_swap", "label swap test: swap the k-th largest soft-label entry with the smallest, over k"),
    "data-knowledge-scaling": (
        "data_knowledge_scaling",
        "IPC × top-k soft-label entries grid incl. hard labels (heatmap)",
    ),
    "improvement-over-random": (
        "improvement_over_random",
        "a distilled set vs random real subsets of the same size: the gap with its uncertainty",
    ),
    "results": (
        "results",
        "regenerate the tables and plots of the results pages (make results; --size ci: a smoke run)",
    ),
    "ddranking": (
        "ddranking",
        "DD-Ranking's scores of a distilled set (hard-label recovery, improvement over "
        "random, label- and augmentation-robust scores)",
    ),
}


def _usage() -> str:
    lines = ["usage: gift-hf <command> [options]   (gift-hf <command> --help for its options)", "", "commands:"]
    width = max(map(len, COMMANDS))
    lines += [f"  {name:<{width}}  {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines += ["", "Every command takes --config FILE.yaml (a recipe); options on the command line override it."]
    return "\n".join(lines)


def _hub_error(err: BaseException) -> BaseException | None:
    """The Hub or network error in ``err``'s chain (huggingface_hub, requests, httpx, urllib3,
    a refused connection), if any: the user fixes those (go online, log in, fix the id)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        module = type(err).__module__.split(".")[0]
        if module in ("huggingface_hub", "requests", "httpx", "httpcore", "urllib3") or isinstance(
            err, (ConnectionError, TimeoutError)
        ):
            return err
        err = err.__cause__ or err.__context__
    return None


def _one_line(err: BaseException, first: bool = False) -> str:
    """``err``'s message as one line; ``first``: its first line only (Hub errors carry request
    ids and URLs on further lines)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    return lines[0] if first else " ".join(lines)


def _quiet_broken_pipe() -> int:
    # The reader went away (`| head -1`): point stdout at devnull so that the interpreter's
    # final flush does not raise again, and exit as the Python docs recommend.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout replaced (a test's capture): nothing to redirect
        pass
    return 1


class _Once(logging.Filter):
    """Lets each distinct message through once (a study's hundred runs state a reason once)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def _setup_logging() -> None:
    """gift_hf's reason lines (engine, device residency, conversions) visible, once each, on the main
    process; libraries stay at warnings. A command that configures logging itself keeps its own."""
    from gift_hf.engine.progress import LineHandler

    root = logging.getLogger()
    if not root.handlers:  # a command (or a test runner) that configured logging keeps its own handlers
        handler = LineHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(_Once())
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    main_process = int(os.environ.get("RANK") or 0) == 0
    logging.getLogger("gift_hf").setLevel(logging.INFO if main_process else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        return _quiet_broken_pipe()


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from gift_hf import __version__

        print(f"gift_hf {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"gift-hf: unknown command {name!r}; expected one of {sorted(COMMANDS)}\n\n{_usage()}", file=sys.stderr)
        return 2
    _setup_logging()
    module = importlib.import_module(f"gift_hf.scripts.{COMMANDS[name][0]}")
    from gift_hf.files import DiskFullError
    from gift_hf.redact import mask_secrets, secret_values

    secrets = secret_values(rest)
    debug = os.environ.get(DEBUG_VARIABLE, "").lower() in ("1", "true", "yes")
    try:
        # its own context: the command's --overwrite_output_dir (set by its parser) ends with it
        status = contextvars.copy_context().run(module.main, rest)
    except (SystemExit, KeyboardInterrupt, BrokenPipeError):
        raise
    except BaseException as err:
        hub = _hub_error(err)
        if debug or not (isinstance(err, USER_ERRORS + (DiskFullError,)) or hub is not None):
            # a bug: its traceback, but never a token in it (a wrong option's value, a URL)
            text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
            masked = mask_secrets(text, secrets)
            if masked == text:
                raise
            print(masked, file=sys.stderr, end="")
            return 1
        # Something the user can fix: the message names it; a traceback would hide it.
        if hub is not None and not isinstance(err, USER_ERRORS):
            message = f"the Hub could not be used ({type(hub).__name__}: {_one_line(hub, first=True)})"
        else:
            message = _one_line(err) if not isinstance(err, KeyError) or not err.args else str(err.args[0])
        print(
            f"gift-hf {name}: error: {mask_secrets(message, secrets)}\n(set {DEBUG_VARIABLE}=1 for the traceback)",
            file=sys.stderr,
        )
        return 2
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
