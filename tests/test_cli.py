"""The gift-hf console script: help, dispatch and clear errors."""

import subprocess
import sys

import pytest

from gift_hf.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_unknown_command(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def run_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_help_explains_its_options(name, capsys):
    out = run_help(name, capsys)
    assert f"gift-hf {name}" in out and "--" in out


def test_quickstart_options_have_help(capsys):
    out = run_help("quickstart", capsys)
    for option in ("--ipc", "--num_students", "--losses", "--num_train_epochs", "--augmentation", "--config"):
        assert option in out
    assert "Images per class" in out


def test_every_command_is_a_script_with_make_parser_and_main():
    import importlib

    for module, _ in COMMANDS.values():
        script = importlib.import_module(f"gift_hf.scripts.{module}")
        assert callable(script.make_parser) and callable(script.main)
        assert script.make_parser().prog.startswith("gift-hf ")


def test_help_imports_neither_torch_nor_transformers():
    code = (
        "import sys; from gift_hf.cli import main; main(['--help']); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_scripts_run_as_modules(tmp_path):
    """`python -m gift_hf.scripts.<name>` (what `accelerate launch -m` runs) parses and exits."""
    proc = subprocess.run([sys.executable, "-m", "gift_hf.scripts.train", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "gift-hf train" in proc.stdout and "--config" in proc.stdout


def test_console_script_entry_point():
    proc = subprocess.run([sys.executable, "-m", "gift_hf.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("gift_hf ")


def test_a_user_error_is_one_line_naming_the_command_and_no_secret(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a local dataset path that does not exist is "not found", never a Hub error
    assert main(["distill", "random", "--ipc", "1", "--dataset_name", "./my_sets/cifar", "--output_dir", "out"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gift-hf distill: error: dataset_name './my_sets/cifar' not found: no such local file")
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    # a secret in the message is masked
    assert main(["push", "--dataset_dir", "./hf_abcdefghijklmnop", "--repo_id", "me/x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gift-hf push: error: ") and "hf_abcdefghijklmnop" not in err


def test_help_shows_gift_hf_options_first_and_help_all_every_option(capsys):
    from gift_hf.scripts.train import make_parser

    parser = make_parser()
    short, every = parser.format_help(), parser.format_help(all_options=True)
    # gift_hf's own options come before the TrainingArguments ones; the rare ones only in --help-all
    assert short.index("\n  --loss ") < short.index("\n  --soft_label_source") < short.index("\n  --learning_rate")
    assert "--adam_beta1" not in short and "--adam_beta1" in every
    assert short.rstrip().endswith("gift-hf train --help-all")
    assert len(short.splitlines()) < 0.6 * len(every.splitlines())
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--help-all"])
    assert exit_info.value.code == 0 and "--adam_beta1" in capsys.readouterr().out


def test_reason_lines_are_shown_once_each(capsys):
    import logging

    from gift_hf import cli

    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()  # as in a fresh `gift-hf` process
    try:
        cli._setup_logging()
        log = logging.getLogger("gift_hf.engine.trainer")
        for _ in range(3):
            log.info("training set: device-resident: 100 images")
        logging.getLogger("transformers.trainer").info("not shown: libraries stay at warnings")
    finally:
        root.handlers[:] = saved
        logging.getLogger("gift_hf").setLevel(logging.NOTSET)
    assert capsys.readouterr().err.splitlines() == ["training set: device-resident: 100 images"]
