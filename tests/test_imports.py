"""Imports are lazy: the loss zoo and the package itself load none of the heavy libraries."""

import json
import subprocess
import sys

import pytest

HEAVY = ("timm", "kornia", "datasets", "transformers")


def loaded_after(statement: str) -> list[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("statement", ["import gift_hf", "import gift_hf.engine.losses", "from gift_hf import get_loss"])
def test_the_loss_zoo_loads_no_heavy_library(statement):
    assert loaded_after(statement) == []


def test_a_trainer_name_loads_what_it_needs():
    assert "transformers" in loaded_after("from gift_hf import GIFTTrainer")  # the control: imports are seen


def test_every_exported_name_resolves_and_relabel_stays_the_function():
    import gift_hf
    import gift_hf.data.relabel  # noqa: F401  (the submodule lives in gift_hf.data, not on the package)

    assert sorted(gift_hf.__all__) == sorted(gift_hf._EXPORTS)
    for name in gift_hf.__all__:
        assert getattr(gift_hf, name) is not None
    assert callable(gift_hf.relabel) and gift_hf.relabel.__module__ == "gift_hf.data.relabel"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        gift_hf.nope
