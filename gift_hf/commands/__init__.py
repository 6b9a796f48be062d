"""Sub-commands of the ``gift-hf`` CLI (see :mod:`gift_hf.cli`)."""
