"""Checkpoints and resumes that can be trusted: completeness, rotation, run identity, divergence, train_loss.

Each test runs the real GIFTTrainer on the embedded digits for a few steps of a tiny ConvNet.
A kill is simulated by a callback that raises at the point the process would die.
"""

import json
import math
import os
import shutil

import pytest
import torch
from host_reads import forbid_host_reads
from transformers import TrainerCallback

from gift_hf import GIFTConfig, GIFTTrainer, create_model
from gift_hf.engine.checkpoints import CHECKPOINT_MARKER, RUN_FILE, last_checkpoint, list_checkpoints
from gift_hf.engine.trainer import TrainingDivergedError


class Killed(Exception):
    """Stands for SIGKILL: the process stops where the callback raises."""


class KillAt(TrainerCallback):
    """Raise `Killed` in `event` at `step`; passed to the Trainer so it runs before gift_hf's callbacks."""

    def __init__(self, event: str, step: int) -> None:
        self.event, self.step = event, step

    def _maybe(self, state):
        if state.global_step == self.step:
            raise Killed(f"{self.event} at step {self.step}")

    def on_save(self, args, state, control, **kwargs):
        if self.event == "on_save":
            self._maybe(state)

    def on_step_end(self, args, state, control, **kwargs):
        if self.event == "on_step_end":
            self._maybe(state)


def config(output_dir, **kwargs):
    base = dict(
        output_dir=str(output_dir),
        use_cpu=True,
        per_device_train_batch_size=8,
        max_steps=4,
        learning_rate=1e-2,
        save_strategy="steps",
        save_steps=1,
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
        loss="ce",
        soft_label_source="none",
        report_to="none",
    )
    base.update(kwargs)
    return GIFTConfig(**base)


@pytest.fixture
def train(digits, digits_transform):
    return digits["train"].select(range(32)).with_transform(digits_transform)


def make_trainer(tiny_model, train, output_dir, callbacks=(), **kwargs):
    torch.manual_seed(0)
    return GIFTTrainer(
        model=tiny_model(), args=config(output_dir, **kwargs), train_dataset=train, callbacks=list(callbacks)
    )


def steps(output_dir, **kwargs):
    return [c.step for c in list_checkpoints(output_dir, **kwargs)]


# ------------------------------------------------------------------------- completeness
def test_a_checkpoint_is_complete_only_once_every_process_has_saved(tmp_path, tiny_model, train):
    run = tmp_path / "run"
    with pytest.raises(Killed):
        make_trainer(tiny_model, train, run, callbacks=[KillAt("on_save", 3)]).train()
    # checkpoint-3 was written by Trainer but the process died before it was marked complete
    assert (run / "checkpoint-3" / "trainer_state.json").is_file()
    assert not (run / "checkpoint-3" / CHECKPOINT_MARKER).exists()
    assert steps(run) == [1, 2] and last_checkpoint(run).step == 2
    marker = json.loads((run / "checkpoint-2" / CHECKPOINT_MARKER).read_text())
    assert marker["step"] == 2 and marker["run"]["loss"] == "ce" and marker["run_id"]
    # resuming from the incomplete folder by name is refused, and allowed only when forced
    with pytest.raises(ValueError, match=r"not a complete gift_hf checkpoint.*resume_force"):
        make_trainer(tiny_model, train, run).train(resume_from_checkpoint=str(run / "checkpoint-3"))
    assert (
        make_trainer(tiny_model, train, run, resume_force=True)
        .train(resume_from_checkpoint=str(run / "checkpoint-3"))
        .global_step
        == 4
    )


def test_rotation_never_deletes_the_only_complete_checkpoint(tmp_path, tiny_model, train):
    """save_total_limit=1 and a kill between writing checkpoint-3 and marking it complete.

    Trainer's own rotation runs before on_save: it would already have deleted checkpoint-2,
    leaving no complete checkpoint. gift_hf rotates after marking, so checkpoint-2 survives.
    """
    run = tmp_path / "run"
    trainer = make_trainer(tiny_model, train, run, callbacks=[KillAt("on_save", 3)], save_total_limit=1)
    assert trainer.args.save_total_limit is None and trainer.save_total_limit == 1
    with pytest.raises(Killed):
        trainer.train()
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert last_checkpoint(run).step == 2
    resumed = make_trainer(tiny_model, train, run, save_total_limit=1)
    assert resumed.train(resume_from_checkpoint=True).global_step == 4
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-4"]  # the limit still applies


# ---------------------------------------------------------------------------- identity
@pytest.mark.parametrize(
    "change, field",
    [
        (dict(loss="kl", soft_label_source="dataset"), "loss"),
        (dict(seed=1), "seed"),
        (dict(learning_rate=5e-2), "learning_rate"),
        (dict(lr_scheduler_type="cosine"), "lr_scheduler_type"),
        (dict(max_steps=6), "max_steps"),
    ],
)
def test_resuming_another_runs_checkpoint_is_refused_unless_forced(tmp_path, tiny_model, train, change, field):
    run = tmp_path / "run"
    make_trainer(tiny_model, train, run, max_steps=2).train()
    checkpoint = str(run / "checkpoint-2")
    other = dict(max_steps=2, **change) if field != "max_steps" else change
    with pytest.raises(ValueError, match=rf"different run \(.*{field}: checkpoint .*this run"):
        make_trainer(tiny_model, train, run, **other).train(resume_from_checkpoint=checkpoint)
    if field == "max_steps":  # forced: it goes on from the checkpoint
        assert (
            make_trainer(tiny_model, train, run, resume_force=True, **other)
            .train(resume_from_checkpoint=checkpoint)
            .global_step
            == 6
        )


def test_resuming_on_another_dataset_is_refused(tmp_path, tiny_model, train, digits, digits_transform):
    run = tmp_path / "run"
    make_trainer(tiny_model, train, run, max_steps=2).train()
    other = digits["train"].select(range(32, 64)).with_transform(digits_transform)
    with pytest.raises(ValueError, match=r"train_dataset: checkpoint '[0-9a-f]+', this run '[0-9a-f]+'"):
        make_trainer(tiny_model, other, run, max_steps=4).train(resume_from_checkpoint=str(run / "checkpoint-2"))


def test_after_a_restart_from_scratch_last_never_picks_the_previous_runs_checkpoint(tmp_path, tiny_model, train):
    run = tmp_path / "run"
    make_trainer(tiny_model, train, run).train()  # the old run: checkpoints 1..4, all complete
    old_id = json.loads((run / RUN_FILE).read_text())["run_id"]
    # the same command again, from scratch (overwrite_output_dir), killed before its first save
    with pytest.raises(Killed):
        make_trainer(tiny_model, train, run, callbacks=[KillAt("on_step_end", 1)]).train()
    assert json.loads((run / RUN_FILE).read_text())["run_id"] != old_id
    assert steps(run) == [1, 2, 3, 4] and last_checkpoint(run) is None  # the old ones are not this run's
    with pytest.raises(ValueError, match="no complete checkpoint of its current run"):
        make_trainer(tiny_model, train, run).train(resume_from_checkpoint=True)


# --------------------------------------------------------------------------- divergence
def test_a_diverging_run_stops_naming_the_step_and_saves_nothing_after_it(tmp_path, tiny_model, train):
    run = tmp_path / "run"
    trainer = make_trainer(tiny_model, train, run, learning_rate=1e20, optim="sgd", max_steps=6)
    with pytest.raises(TrainingDivergedError, match=r"training diverged at step (\d+): .*non-finite") as error:
        trainer.train()
    step = int(error.value.args[0].split("step ")[1].split(":")[0])
    assert 2 <= step <= 6
    assert all(s < step for s in steps(run))  # no checkpoint of a diverged model is complete
    assert not (run / "model.safetensors").exists()


def test_the_training_step_reads_nothing_back_from_the_device(tmp_path, tiny_model, train):
    """compute_loss (teacher, loss, divergence flag, loss sums) under a guard that fails on any host read."""
    teacher = tiny_model()
    trainer = GIFTTrainer(
        model=tiny_model(),
        args=config(tmp_path / "run", loss="gift", soft_label_source="teacher"),
        teacher_model=teacher,
        train_dataset=train,
    )
    batch = trainer.data_collator([train[i] for i in range(8)])
    trainer.model.train()
    with forbid_host_reads():
        loss = trainer.compute_loss(trainer.model, batch, num_items_in_batch=torch.tensor(8))
        loss.backward()
    batch["pixel_values"][0, 0, 0, 0] = float("nan")
    with forbid_host_reads():
        trainer.compute_loss(trainer.model, batch, num_items_in_batch=torch.tensor(8))
    with pytest.raises(TrainingDivergedError, match="step 1: .*the student's logits and the loss"):
        trainer.monitor.check()


def test_the_divergence_guard_names_the_first_bad_step_across_folds(tmp_path, tiny_model, train):
    """The guard's sums, folded every 3 micro-batches, against hand computation."""
    trainer = GIFTTrainer(
        model=tiny_model(),
        args=config(tmp_path / "run", loss="kl", soft_label_source="teacher"),
        teacher_model=tiny_model(),
        train_dataset=train,
    )
    monitor = trainer.monitor
    monitor.FOLD_EVERY = 3
    logits, targets = torch.ones(2, 10), torch.full((2, 10), 0.5)
    for step in range(1, 8):  # per-sample losses (step, step): 7 micro-batches, 2 folds and 1 pending
        monitor.record(torch.tensor([step, step], dtype=torch.float32), logits, targets, step)
    assert len(monitor.pending) == 1
    assert monitor.totals() == (2 * sum(range(1, 8)), 14.0)
    monitor.check()  # all finite: nothing raised
    for step in range(8, 13):  # the logits go bad at step 9, the soft labels too from step 11
        bad_logits = logits.clone()
        bad_logits[0, 0] = math.inf if step >= 9 else 1.0
        bad_targets = targets if step < 11 else torch.full((2, 10), math.nan)
        monitor.record(torch.tensor([1.0, 1.0]), bad_logits, bad_targets, step)
    with pytest.raises(
        TrainingDivergedError,
        match=r"^training diverged at step 9: the student's logits became "
        r"non-finite \(NaN or inf\)\. Nothing from step 9 on",
    ):
        monitor.check()


# ------------------------------------------------------------------------------ results
def test_train_loss_after_a_resume_covers_the_whole_run(tmp_path, tiny_model, train):
    whole = make_trainer(tiny_model, train, tmp_path / "whole").train()
    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        make_trainer(tiny_model, train, killed, callbacks=[KillAt("on_step_end", 3)]).train()
    shutil.rmtree(killed / "checkpoint-2", ignore_errors=False)  # resume from step 1: three steps remain
    resumed = make_trainer(tiny_model, train, killed).train(resume_from_checkpoint=True)
    assert resumed.metrics["train_loss"] == pytest.approx(whole.metrics["train_loss"], rel=1e-5)
    assert resumed.training_loss == resumed.metrics["train_loss"]
    state = json.loads((killed / "checkpoint-4" / "trainer_state.json").read_text())
    assert os.path.isfile(killed / "checkpoint-4" / CHECKPOINT_MARKER) and state["global_step"] == 4


def test_a_checkpoint_of_another_model_or_a_corrupt_file_is_named_before_resuming(tmp_path, tiny_model, train):
    """Resuming from a checkpoint of another width (classes, channels) or with a damaged file is one clear error
    naming the checkpoint (or the file), never a raw shape or deserialiser error."""
    from gift_hf.engine.training import check_resume_checkpoint

    make_trainer(tiny_model, train, tmp_path, max_steps=2, save_steps=2).train()
    (checkpoint,) = [c.path for c in list_checkpoints(tmp_path)]
    check_resume_checkpoint(checkpoint, tiny_model())  # the same model: accepted
    with pytest.raises(
        ValueError,
        match=r"resume_from_checkpoint: .* holds a model of 10 classes but this run's model "
        r"has 5",
    ):
        check_resume_checkpoint(checkpoint, tiny_model(num_classes=5))
    with pytest.raises(ValueError, match=r"holds a model of 1 input channels but this run's model takes 3"):
        check_resume_checkpoint(checkpoint, create_model("gift_convnet_d3", 10, in_chans=3, img_size=8))
    weights = os.path.join(checkpoint, "model.safetensors")
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)
    with pytest.raises(ValueError, match="model.safetensors"):
        check_resume_checkpoint(checkpoint, tiny_model())


def test_resuming_with_another_preprocessing_is_refused(tmp_path, tiny_model, digits):
    """The run identity covers what the images are made into: a resume with another --image_mean is refused."""
    from gift_hf.data.images import DIGITS_STD, ImageTransform

    first = digits["train"].select(range(32)).with_transform(ImageTransform(channels=1, mean=(0.3,), std=DIGITS_STD))
    make_trainer(tiny_model, first, tmp_path, max_steps=2, save_steps=2).train()
    (checkpoint,) = [c.path for c in list_checkpoints(tmp_path)]
    again = digits["train"].select(range(32)).with_transform(ImageTransform(channels=1, mean=(0.6,), std=DIGITS_STD))
    with pytest.raises(ValueError, match=r"was written by a different run \(.*preprocessing: checkpoint"):
        make_trainer(tiny_model, again, tmp_path, max_steps=4, save_steps=2).train(resume_from_checkpoint=checkpoint)
