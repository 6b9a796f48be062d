"""What users share: a loaded set keeps its license when pushed, `gift-hf push --help` says what it does,
the papers' recipes are named after their protocol in model cards."""

import yaml
from hub_double import RecordingHub

from gift_hf import build_random_distilled, load_digits_dataset, load_distilled, push_distilled, save_distilled


def test_load_then_push_keeps_the_license(tmp_path, monkeypatch):
    hub = RecordingHub().install(monkeypatch)
    subset, info = build_random_distilled(load_digits_dataset(), ipc=1, source_dataset="digits")
    saved = save_distilled(subset, tmp_path / "set", info)
    loaded, loaded_info = load_distilled(saved, cache_dir=str(tmp_path / "cache"))
    assert loaded["train"].info.license == "bsd-3-clause"  # the card's, carried into DatasetInfo
    push_distilled(loaded, "me/digits-ipc1", loaded_info)
    card = hub.files("me/digits-ipc1")["README.md"].decode()
    assert yaml.safe_load(card.split("---\n")[1])["license"] == "bsd-3-clause"


def test_push_help_says_two_commits(capsys):
    from gift_hf.cli import COMMANDS
    from gift_hf.scripts.push import make_parser

    text = make_parser().format_help()
    assert "one commit" not in text and "two commits" in text
    assert "one commit" not in COMMANDS["push"][1]  # `gift-hf --help`'s line too


def test_the_papers_evaluation_recipes_are_named_after_their_protocol():
    """A recipe that sets only per-dataset values differently (ImageNet-1K's factor crop, Tiny-ImageNet's fixed
    batch) is still its paper's protocol in the model card."""
    from gift_hf.engine.config import GIFTConfig
    from gift_hf.hub.model_card import _protocol_record
    from gift_hf.scripts.evaluate import make_parser

    expected = {
        "recipes/gift/evaluate.yaml": "gift",
        "recipes/gift/imagenet1k_resnet18.yaml": "gift",
        "recipes/label_paper/evaluate.yaml": "label_paper",
        "recipes/rded/imagenet1k.yaml": "rded",
        "recipes/rded/tiny_imagenet.yaml": "rded",
    }
    for recipe, name in expected.items():
        parsed = make_parser().parse_args_and_config(["--config", recipe, "--distilled", "x", "--output_dir", "out"])
        config = next(p for p in parsed if isinstance(p, GIFTConfig))
        assert _protocol_record(config)["name"] == name, recipe
        if name == "label_paper":  # its fixed batch of 256, not the GIFT batch-size rule evaluate starts from
            assert (config.batch_sizes, config.per_device_train_batch_size) == (None, 256)


def test_readme_creates_the_set_it_evaluates_and_states_the_quickstart_time():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = readme.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("gift-hf evaluate") and "outputs/my-set" in line)
    assert lines[at - 1].startswith("gift-hf distill random") and "--output_dir outputs/my-set" in lines[at - 1]
    assert "about 90 s on an idle 2-core CPU" in readme and "several times longer beside other jobs" in readme
    assert "about 1 min" not in readme


def test_the_conventions_are_stated():
    from pathlib import Path

    from gift_hf import GIFTConfig

    index = (Path(__file__).resolve().parents[1] / "docs" / "index.md").read_text()
    conventions = index.split("## Conventions", 1)[1]
    assert "fractions in [0, 1]" in conventions and "percent" in conventions and "(%)" in conventions
    assert "3 epochs, batch 8 per device, no augmentation" in conventions
    # and the docstring says where the Python defaults differ from the recipes, and why
    doc = GIFTConfig.__doc__
    assert "num_train_epochs=3" in doc and "per_device_train_batch_size=8" in doc and 'augmentation="none"' in doc
    defaults = GIFTConfig(output_dir="x")
    assert (defaults.num_train_epochs, defaults.per_device_train_batch_size, defaults.augmentation) == (3, 8, "none")
