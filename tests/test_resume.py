"""Kill a training process (SIGKILL) after its first checkpoint, resume, get the same result.

The run uses online teacher relabelling, DSA augmentation and CutMix, so the resumed run
must restore the optimizer, scheduler, data order and RNG, and draw the same augmentations
(keyed by seed, rank and step), to reach the uninterrupted run's weights and metrics.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from recipe_helpers import RECIPE, load_recipe, one_thread, subprocess_env, train_teacher
from safetensors.torch import load_file

from gift_hf.engine.checkpoints import CHECKPOINT_MARKER, last_checkpoint

MAX_STEPS, SAVE_STEPS = 40, 8


def recipe_args(output_dir, teacher) -> list[str]:
    return [
        "--output_dir",
        str(output_dir),
        "--teacher_model_name_or_path",
        str(teacher),
        "--loss",
        "gift",
        "--max_steps",
        str(MAX_STEPS),
        "--save_strategy",
        "steps",
        "--save_steps",
        str(SAVE_STEPS),
        "--per_device_train_batch_size",
        "16",
        "--per_device_eval_batch_size",
        "64",
        "--learning_rate",
        "1e-3",
        "--augmentation",
        "color_crop_cutout_flip_scale_rotate",
        "--mix",
        "cutmix",
        "--seed",
        "0",
        "--use_cpu",
        "--disable_tqdm",
        "true",
        "--logging_steps",
        "1000",
    ]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return train_teacher(tmp_path_factory.mktemp("resume") / "teacher")


def kill_after_first_checkpoint(output_dir, teacher) -> str:
    """Start the recipe in a subprocess; SIGKILL it as soon as a complete checkpoint exists."""
    proc = subprocess.Popen(
        [sys.executable, *RECIPE, *recipe_args(output_dir, teacher)],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    try:
        while True:
            if os.path.isdir(output_dir) and last_checkpoint(str(output_dir)) is not None:
                proc.send_signal(signal.SIGKILL)
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no checkpoint before exit/timeout:\n{proc.stdout.read()[-4000:]}")
            time.sleep(0.01)
    finally:
        proc.kill()  # no-op once dead
        log = proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL, log[-4000:]
    return log


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, teacher):
    recipe = load_recipe()

    # The uninterrupted reference run (same seed, same checkpoints).
    reference = tmp_path / "reference"
    with one_thread():
        expected = recipe.main(recipe_args(reference, teacher))
    for step in range(SAVE_STEPS, MAX_STEPS + 1, SAVE_STEPS):
        checkpoint = reference / f"checkpoint-{step}"
        assert (checkpoint / "trainer_state.json").is_file()
        assert (checkpoint / CHECKPOINT_MARKER).is_file()  # marked complete once saved

    # The killed run: it never got to write its final model or results.
    run = tmp_path / "killed"
    kill_after_first_checkpoint(run, teacher)
    assert not (run / "all_results.json").exists() and not (run / "model.safetensors").exists()
    resumed_from = last_checkpoint(run)
    step = resumed_from.step
    assert SAVE_STEPS <= step < MAX_STEPS

    # A kill in the middle of the *next* save leaves a half-written folder without the
    # completeness marker: resuming must skip it and use the last complete checkpoint.
    partial = run / f"checkpoint-{step + SAVE_STEPS}"
    if partial.exists():
        shutil.rmtree(partial)
    shutil.copytree(resumed_from.path, partial)
    os.remove(partial / CHECKPOINT_MARKER)
    assert last_checkpoint(run) == resumed_from

    # Re-running into the same folder without asking to resume (or overwrite) is refused.
    with pytest.raises(FileExistsError, match="output_dir"):
        recipe.main(recipe_args(run, teacher))

    with one_thread():
        resumed = recipe.main([*recipe_args(run, teacher), "--resume_from_checkpoint", "last"])

    state = json.loads((run / "trainer_state.json").read_text())
    assert state["global_step"] == MAX_STEPS
    for key in ("eval_accuracy", "eval_top5_accuracy"):
        assert resumed[key] == pytest.approx(expected[key], abs=1e-9), key
    assert resumed["eval_loss"] == pytest.approx(expected["eval_loss"], rel=1e-5)
    want, got = load_file(reference / "model.safetensors"), load_file(run / "model.safetensors")
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6, msg=name)


def test_resuming_without_a_checkpoint_is_a_clear_error(tmp_path):
    recipe = load_recipe()
    with pytest.raises(FileNotFoundError, match="resume_from_checkpoint.*no complete checkpoint"):
        recipe.main(["--output_dir", str(tmp_path / "fresh"), "--resume_from_checkpoint", "last", "--use_cpu"])
    assert not (tmp_path / "fresh").exists()  # refused before anything was written
