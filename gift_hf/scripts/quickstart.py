"""``gift-hf quickstart``: CE vs KL vs GIFT students on a random IPC subset of digits.

A ConvNet teacher trained on the embedded digits relabels every augmented student batch;
the table, ``results.json`` and a bar chart go to ``output_dir``. Options: the quickstart's
own (``--ipc``, ``--losses``, ``--teacher_epochs`` …) and every :class:`gift_hf.GIFTConfig`
field of the students (``--num_train_epochs``, ``--learning_rate``, ``--num_students`` …);
``recipes/quickstart.yaml`` holds the defaults.
"""

from __future__ import annotations

from gift_hf.parser import GIFTParser


def make_parser() -> GIFTParser:
    from gift_hf.engine.config import GIFTConfig
    from gift_hf.studies.quickstart import QUICKSTART_DEFAULTS, QuickstartArguments

    parser = GIFTParser((QuickstartArguments, GIFTConfig), prog="gift-hf quickstart", description=__doc__)
    parser.set_defaults(**QUICKSTART_DEFAULTS)
    return parser


def main(argv: list[str] | None = None) -> int:
    from gift_hf.studies.quickstart import run_quickstart

    args, config = make_parser().parse_args_and_config(argv)
    run_quickstart(args, config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
