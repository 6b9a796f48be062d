"""The ``gift-hf`` commands as scripts: ``gift_hf/scripts/<name>.py``.

Each has ``make_parser()`` (a :class:`gift_hf.parser.GIFTParser`: ``--help`` lists every
option, ``--config FILE.yaml`` reads a recipe, command-line options override it) and
``main(argv=None)``. They run as ``gift-hf <name>``, as ``python -m gift_hf.scripts.<name>``
and under ``accelerate launch -m gift_hf.scripts.<name>``.
"""
