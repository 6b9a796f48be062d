"""The ``gift-hf`` command: ``gift-hf <command> [--help] [options]``.

Each command is a script, ``gift_hf/scripts/<name>.py`` with ``make_parser()`` and
``main(argv)``; it is imported only when it runs, so ``gift-hf --help`` imports neither
torch nor transformers. Every command takes ``--config FILE.yaml`` (a recipe) and
command-line options that override it.

An error the user can fix (a bad option or value, a path that is not found, an output
folder that is not empty, a training run that diverged) is printed as one line,
``gift-hf <command>: error: <message>``, with exit status 2; ``GIFT_HF_DEBUG=1`` shows the
traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys

#: Set to 1 to see the traceback of every error, user errors included.
DEBUG_VARIABLE = "GIFT_HF_DEBUG"

#: What gift_hf raises for input the user can fix (a bad option, a missing path, a
#: non-empty output_dir, a run that diverged): printed as one line, exit status 2.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError, FloatingPointError)

#: command → (module under gift_hf.scripts, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("quickstart", "the main job: teacher, random IPC subset of digits, CE vs KL vs GIFT students, "
                   "table + plot"),
    "train": ("train", "train a student with GIFT or any soft-label loss (one process or accelerate launch)"),
    "train-teacher": ("train_teacher", "train a teacher (expert) with hard labels, one checkpoint per epoch"),
    "distill": ("distill", "select a distilled set of real images (random class-balanced, or by teacher difficulty)"),
    "relabel": ("relabel", "add teacher soft labels (logits or softmax(logits/T), ensembles, expert epoch, top-k) "
                "to a dataset"),
    "convert": ("convert", "convert a tensor file {data, label} or a class-folder tree to the Hub layout"),
    "push": ("push", "publish a distilled dataset directory to the Hub (create repo, upload in one commit)"),
    "evaluate": ("evaluate", "evaluate a distilled set (folder or Hub id) under a protocol: N students, mean ± std "
                 "on the real test split"),
    "loss-benchmark": ("loss_benchmark", "losses × optimizers on one distilled set, with the spread across "
                       "optimizers per loss"),
    "cross-architecture": ("cross_architecture", "teacher × student architectures on one distilled set (heatmap)"),
    "expert-epochs": ("expert_epochs", "soft labels from each saved teacher epoch at several IPC: where the best "
                      "expert epoch moves"),
    "temperature-grid": ("temperature_grid", "label temperature × expert epoch grid (heatmap)"),
    "label-swap": ("label_swap", "label swap test: swap the k-th largest soft-label entry with the smallest, over k"),
    "data-knowledge-scaling": ("data_knowledge_scaling", "IPC × top-k soft-label entries grid incl. hard labels "
                               "(heatmap)"),
    "improvement-over-random": ("improvement_over_random", "a distilled set vs random real subsets of the same "
                                "size: the gap with its uncertainty"),
    "ddranking": ("ddranking", "DD-Ranking's scores of a distilled set (hard-label recovery, improvement over "
                  "random, label- and augmentation-robust scores)"),
}


def _usage() -> str:
    lines = ["usage: gift-hf <command> [options]   (gift-hf <command> --help for its options)", "", "commands:"]
    width = max(map(len, COMMANDS))
    lines += [f"  {name:<{width}}  {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines += ["", "Every command takes --config FILE.yaml (a recipe); options on the command line override it."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
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
    module = importlib.import_module(f"gift_hf.scripts.{COMMANDS[name][0]}")
    if os.environ.get(DEBUG_VARIABLE, "").lower() in ("1", "true", "yes"):
        status = module.main(rest)  # every error with its traceback
    else:
        try:
            status = module.main(rest)
        except USER_ERRORS as err:
            # Something the user can fix: the message names it; a traceback would hide it.
            from gift_hf.redact import mask_secrets, secret_values

            message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
            print(f"gift-hf {name}: error: {mask_secrets(str(message), secret_values(rest))}\n"
                  f"(set {DEBUG_VARIABLE}=1 for the traceback)", file=sys.stderr)
            return 2
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
