"""Security defaults: no remote code unless asked, tokens never logged or pickled."""

import inspect
import json
import logging
import pickle

import pytest
from recipe_helpers import load_recipe, one_thread

from gift_hf import GIFTConfig, load_teacher

TOKEN = "hf_NeverPrintThisToken0123456789"


@pytest.fixture
def remote_code_teacher(tmp_path):
    """A teacher folder whose config asks for its own code; importing that code leaves a marker."""
    folder = tmp_path / "remote_teacher"
    folder.mkdir()
    marker = tmp_path / "remote_code_ran"
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "remote_net",
                "num_labels": 10,
                "auto_map": {
                    "AutoConfig": "remote.RemoteConfig",
                    "AutoModelForImageClassification": "remote.RemoteModel",
                },
            }
        )
    )
    (folder / "remote.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import PretrainedConfig, PreTrainedModel\n"
        "class RemoteConfig(PretrainedConfig):\n    model_type = 'remote_net'\n"
        "class RemoteModel(PreTrainedModel):\n    config_class = RemoteConfig\n"
    )
    return folder, marker


def test_trust_remote_code_is_off_by_default():
    assert GIFTConfig(output_dir="unused").trust_remote_code is False
    assert inspect.signature(load_teacher).parameters["trust_remote_code"].default is False


def test_teacher_with_remote_code_is_refused(remote_code_teacher):
    folder, marker = remote_code_teacher
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        load_teacher(folder)
    assert not marker.exists()  # its code was never imported


def test_token_is_masked_in_str_repr_dict_and_pickle():
    args = GIFTConfig(output_dir="unused", hub_token=TOKEN)
    for text in (str(args), repr(args), f"{args}", args.to_json_string(), json.dumps(args.to_dict())):
        assert TOKEN not in text
    assert TOKEN.encode() not in pickle.dumps(args)  # training_args.bin is a pickle
    assert args.hub_token == TOKEN  # the live object still has it for push_to_hub


def test_recipe_never_logs_or_saves_the_token(tmp_path, caplog, capsys):
    out = tmp_path / "out"
    caplog.set_level(logging.INFO)
    with one_thread():
        load_recipe().main(
            [
                "--output_dir",
                str(out),
                "--hub_token",
                TOKEN,
                "--loss",
                "ce",
                "--soft_label_source",
                "none",
                "--max_steps",
                "2",
                "--save_steps",
                "2",
                "--eval_split",
                "",
                "--use_cpu",
                "--disable_tqdm",
                "true",
            ]
        )
    captured = capsys.readouterr()
    assert "training arguments (not GIFTConfig's defaults):" in caplog.text  # the arguments were logged...
    assert TOKEN not in caplog.text + captured.out + captured.err  # ...without the token
    written = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in written)
    for path in written:
        assert TOKEN.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    "argv",
    [
        ["--hub_tokn", TOKEN],  # a mistyped option: "arguments are not used" lists what was given
        [f"--hub-tokn={TOKEN}"],
        ["--hub_token", TOKEN, "stray_value"],
        ["--push_to_hub", TOKEN],  # the token given to the wrong option: argparse prints the bad value
        ["--max_steps", TOKEN],
    ],
)
def test_a_mistyped_flag_never_prints_the_token(argv, capsys):
    from gift_hf.parser import GIFTParser

    with pytest.raises((ValueError, SystemExit)) as raised:
        GIFTParser((GIFTConfig,), prog="gift-hf train").parse_args_and_config(["--output_dir", "unused", *argv])
    captured = capsys.readouterr()
    shown = str(raised.value) + captured.out + captured.err
    assert shown.strip() and TOKEN not in shown


@pytest.mark.parametrize("line", [f"hub_tokn: {TOKEN}", f"max_steps: {TOKEN}", f"push_to_hub: [{TOKEN}]"])
def test_a_config_file_with_a_mistyped_token_never_prints_it(tmp_path, capsys, line):
    from gift_hf.parser import ConfigError, GIFTParser

    options = tmp_path / "train.yaml"
    options.write_text(f"output_dir: unused\n{line}\n")
    with pytest.raises(ConfigError, match=line.split(":")[0]) as raised:
        GIFTParser((GIFTConfig,), prog="gift-hf train").parse_args_and_config(["--config", str(options)])
    captured = capsys.readouterr()
    assert TOKEN not in str(raised.value) + captured.out + captured.err


def test_mask_secrets_hides_token_option_values_and_hub_tokens():
    from gift_hf.redact import mask_secrets, secret_values

    secrets = secret_values(["--hub_tokn", "abcd1234", "--api-key=k3y!", "--hub_token", "--x"], {"password": "pw12"})
    assert sorted(secrets) == ["abcd1234", "k3y!", "pw12"]
    assert mask_secrets(f"got abcd1234, k3y!, pw12 and {TOKEN}", secrets) == "got ***, ***, *** and hf_***"
