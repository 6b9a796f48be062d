"""`GIFTParser`: ``--config FILE.yaml`` plus command-line overrides, and the errors a recipe gets."""

from __future__ import annotations

import pytest

from gift_hf import GIFTConfig
from gift_hf.data.images import DataArguments
from gift_hf.parser import ConfigError, GIFTParser, parse_dict_option
from gift_hf.scripts.train import ModelArguments


def parser() -> GIFTParser:
    return GIFTParser((ModelArguments, DataArguments, GIFTConfig), prog="gift-hf train")


def write(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


def test_command_line_overrides_the_recipe(tmp_path):
    recipe = write(
        tmp_path,
        "loss: kl\ntemperature: 4\nlearning_rate: 0.01\nlr_milestones: [0.5]\n"
        "student_model_kwargs: {width: 16, norm: batchnorm}\nimage_mean: [0.5]\n"
        "output_dir: from_file\nzca: true\n",
    )
    model, data, config = parser().parse_args_and_config(
        ["--config", recipe, "--learning_rate", "0.05", "--output_dir", "from_cli"]
    )
    assert (config.loss, config.temperature, config.lr_milestones, config.zca) == ("kl", 4.0, [0.5], True)
    assert (config.learning_rate, config.output_dir) == (0.05, "from_cli")  # the command line wins
    assert model.student_model_kwargs == {"width": 16, "norm": "batchnorm"}  # a YAML mapping
    assert data.image_mean == [0.5]
    # an empty list (no command-line form) and null are taken as they are
    _, _, steps_off = parser().parse_args_and_config(
        ["--config", write(tmp_path, "lr_milestones: []\nbatch_sizes: null\n"), "--output_dir", "x"]
    )
    assert (steps_off.lr_milestones, steps_off.batch_sizes) == ([], None)
    # the same options with no recipe: the defaults
    _, _, plain = parser().parse_args_and_config(["--output_dir", "x"])
    assert (plain.loss, plain.learning_rate, plain.lr_milestones) == ("gift", 1e-3, [2 / 3, 5 / 6])


def test_dict_options_from_json_on_the_command_line():
    model, _, config = parser().parse_args_and_config(
        [
            "--student_model_kwargs",
            '{"width": 8}',
            "--teacher_model_init_kwargs",
            '{"num_classes": 10}',
            "--output_dir",
            "x",
        ]
    )
    assert model.student_model_kwargs == {"width": 8}
    assert config.teacher_model_init_kwargs == {"num_classes": 10}
    with pytest.raises(ValueError, match=r"student_model_kwargs: got '\{width: 8\}'; expected a JSON object"):
        parser().parse_args_and_config(["--student_model_kwargs", "{width: 8}", "--output_dir", "x"])
    with pytest.raises(ValueError, match=r"teacher_model_init_kwargs: got '\[1, 2\]'; expected a JSON object"):
        parse_dict_option("teacher_model_init_kwargs", "[1, 2]")


@pytest.mark.parametrize(
    "text, message",
    [
        ("learning_rat: 0.1\n", r"recipe.yaml: unknown key\(s\) \['learning_rat'\]"),
        ("learning_rate: fast\n", r"recipe.yaml: key 'learning_rate' got 'fast'; expected a number"),
        ("num_students: [1, 2]\n", r"recipe.yaml: key 'num_students' got a list \[1, 2\]; expected an integer"),
        ("per_device_train_batch_size: 2.5\n", r"key 'per_device_train_batch_size' got 2.5; expected an integer"),
        ("lr_milestones: [half]\n", r"key 'lr_milestones' got \['half'\]; expected a list of float"),
        ("zca: {a: 1}\n", r"key 'zca' got a mapping \{'a': 1\}; expected true or false"),
        ("zca: maybe\n", r"key 'zca' got 'maybe'; expected true or false"),
        ("seed: true\n", r"key 'seed' got True; expected an integer"),
        ("loss: [gift]\n", r"key 'loss' got a list \['gift'\]; expected a string"),
        ("- loss\n", r"holds a list; expected a mapping of options"),
        ("loss: [\n", r"is not valid YAML"),
    ],
)
def test_bad_recipes_name_the_key_and_the_file(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        parser().parse_args_and_config(["--config", write(tmp_path, text)])


def test_missing_recipe_file(tmp_path):
    with pytest.raises(ConfigError, match=r"--config: file '.*nope.yaml' not found"):
        parser().parse_args_and_config(["--config", str(tmp_path / "nope.yaml")])


def test_every_recipe_parses_with_its_command():
    """Each YAML recipe names its command on its first line and parses without an error."""
    import importlib

    from recipe_helpers import REPO

    from gift_hf.cli import COMMANDS

    recipes = sorted(p for p in (REPO / "recipes").rglob("*.yaml") if "accelerate" not in p.parts)
    assert len(recipes) >= 10
    for path in recipes:
        command = path.read_text().splitlines()[0].split()[2]  # "# gift-hf <command> --config …"
        script = importlib.import_module(f"gift_hf.scripts.{COMMANDS[command][0]}")
        needs = ["--distilled", "some/set"] if command in ("evaluate", "improvement-over-random") else []
        parsed = script.make_parser().parse_args_and_config(["--config", str(path), *needs])
        assert any(getattr(p, "output_dir", None) for p in parsed), path
        if "keep_distilled_labels" in path.read_text():
            assert parsed[0].keep_distilled_labels is True


def test_a_mistyped_option_is_named_without_its_value(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args_and_config(["--hub_tokn", "hf_SECRETVALUE", "--learning_rate", "0.1", "--output_dir", "x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized option(s) ['--hub_tokn']" in err and "SECRETVALUE" not in err
