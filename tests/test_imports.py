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


@pytest.mark.parametrize(
    "statement", ["import gift_hf", "import gift_hf.engine.losses", "from gift_hf import get_loss"]
)
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


REGISTERED = ["gift_convnet_d3", "gift_convnet_d4", "gift_convnet_d5", "gift_convnet_d6", "gift_resnet18_modified"]


def run_fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "imports",
    ["import gift_hf\nimport timm", "import timm\nimport gift_hf", "import gift_hf\nfrom timm import create_model"],
)
def test_import_gift_hf_registers_the_architectures_in_timm_whenever_timm_loads(imports):
    code = (
        f"{imports}\nimport json, timm\n"
        "net = timm.create_model('gift_convnet_d3', num_classes=10, in_chans=1, img_size=8)\n"
        "print(json.dumps([timm.list_models('gift_*'), net.head.out_features, type(timm.__loader__).__name__]))"
    )
    done = run_fresh(code)
    assert done.returncode == 0, done.stderr[-3000:]
    names, classes, loader = json.loads(done.stdout.strip().splitlines()[-1])
    assert names == REGISTERED and classes == 10
    assert loader == "SourceFileLoader"  # timm keeps its own loader (the hook steps aside after firing)


def test_without_gift_hf_timm_does_not_know_the_architectures():
    # the control: the registration above is gift_hf's doing
    done = run_fresh(
        "import timm\nprint(timm.list_models('gift_*'))\n"
        "timm.create_model('gift_convnet_d3', num_classes=10, in_chans=1, img_size=8)"
    )
    assert done.stdout.strip() == "[]" and "Unknown model (gift_convnet_d3)" in done.stderr


def test_a_saved_convnet_student_loads_with_auto_classes_after_import_gift_hf(tmp_path, tiny_model):
    import torch

    student = tiny_model()
    student.save_pretrained(tmp_path / "student")
    pixels = torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8)
    with torch.no_grad():
        expected = student(pixel_values=pixels).logits[0].tolist()
    code = (
        "import gift_hf, json, torch\nfrom transformers import AutoModelForImageClassification\n"
        f"model = AutoModelForImageClassification.from_pretrained({str(tmp_path / 'student')!r}).eval()\n"
        "with torch.no_grad():\n"
        "    logits = model(pixel_values=torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8)).logits[0]\n"
        "print(json.dumps(logits.tolist()))"
    )
    done = run_fresh(code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == pytest.approx(expected, abs=1e-5)
