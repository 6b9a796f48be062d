"""A real 2-process (gloo, CPU) ``accelerate launch -m gift_hf.scripts.train``.

Checks: the run has world size 2; the two ranks trained on disjoint shards; checkpoints are
marked complete after both ranks saved, with the whole run's loss over both ranks; the teacher
relabelled online on each rank; the evaluation gathered over both ranks equals a
single-process evaluation of the saved student on the same split, with no duplicate
rows from the padding the distributed sampler adds (540 test rows, not divisible by
2 ranks × batch 16).
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from recipe_helpers import ACCELERATE, CPU_2PROC_CONFIG, RECIPE, free_port, subprocess_env, train_teacher
from transformers import AutoModelForImageClassification

from gift_hf.data.images import DataArguments, build_image_transform, load_image_dataset
from gift_hf.engine.checkpoints import list_checkpoints

STEPS, BATCH = 12, 16


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    teacher = train_teacher(root / "teacher")
    out = root / "student"
    cmd = [
        str(ACCELERATE),
        "launch",
        "--config_file",
        str(CPU_2PROC_CONFIG),
        "--main_process_port",
        str(free_port()),
        *RECIPE,
        "--output_dir",
        str(out),
        "--teacher_model_name_or_path",
        str(teacher),
        "--loss",
        "gift",
        "--max_steps",
        str(STEPS),
        "--per_device_train_batch_size",
        str(BATCH),
        "--per_device_eval_batch_size",
        str(BATCH),
        "--learning_rate",
        "1e-3",
        "--seed",
        "0",
        "--record_shard_indices",
        "--use_cpu",
        "--disable_tqdm",
        "true",
        "--logging_steps",
        "1000",
        "--save_strategy",
        "steps",
        "--save_steps",
        str(STEPS // 2),
    ]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=400)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    return out, log


def test_two_processes_and_disjoint_shards(ddp_run):
    out, log = ddp_run
    results = json.loads((out / "all_results.json").read_text())
    assert results["world_size"] == 2 and results["eval_world_size"] == 2
    assert "process 0/2" in log and "process 1/2" in log
    shards = [json.loads((out / "shard_indices" / f"rank{r}.json").read_text()) for r in range(2)]
    for shard in shards:
        # every optimizer step consumed one batch on each rank (the loader may prefetch one more)
        assert len(shard) >= STEPS * BATCH
        assert len(set(shard)) == len(shard)  # less than one epoch: no row seen twice
    assert not set(shards[0]) & set(shards[1])
    # The teacher was not wrapped in DistributedDataParallel (it is frozen: nothing to sync).
    assert "teacher: TimmWrapperForImageClassification, frozen" in log and "teacher: DistributedDataParallel" not in log
    # Checkpoints are marked complete only after both ranks saved (a barrier, then the marker).
    assert [c.step for c in list_checkpoints(out)] == [STEPS // 2, STEPS]
    marker = list_checkpoints(out)[-1].info
    assert marker["run"]["world_size"] == 2 and marker["train_loss_count"] == STEPS * BATCH * 2
    assert results["train_loss"] == pytest.approx(marker["train_loss_sum"] / marker["train_loss_count"])
    # Only the main process reports and writes results.
    assert log.count("***** train metrics *****") == 1
    assert log.count("***** eval metrics *****") == 1


def test_gathered_eval_equals_single_process_eval(ddp_run):
    out, _ = ddp_run
    results = json.loads((out / "eval_results.json").read_text())
    data_args = DataArguments()
    test_split = load_image_dataset(data_args)["eval"]
    n = len(test_split)
    assert n % (2 * BATCH) != 0  # so the sampler pads, and the padding must be dropped
    assert results["eval_samples"] == results["eval_num_predictions"] == n

    model = AutoModelForImageClassification.from_pretrained(out).eval()
    labels = np.asarray(test_split["label"])  # before the transform (older datasets run it on column reads too)
    test_split.set_transform(build_image_transform(data_args, channels=1))
    pixels = torch.stack([row["pixel_values"] for row in test_split])
    with torch.no_grad():
        predictions = model(pixel_values=pixels).logits.argmax(-1).numpy()
    correct = int((predictions == labels).sum())
    assert round(results["eval_accuracy"] * n) == correct
    assert results["eval_accuracy"] == pytest.approx(correct / n, abs=1e-12)


def test_two_processes_train_on_the_device_resident_set(tmp_path):
    """Without shard recording the scripts train on the device-resident set (the default): each
    process draws its own batches of every epoch, and evaluation is gathered over both."""
    out = tmp_path / "student"
    steps, batch = 6, 16
    cmd = [
        str(ACCELERATE),
        "launch",
        "--config_file",
        str(CPU_2PROC_CONFIG),
        "--main_process_port",
        str(free_port()),
        *RECIPE,
        "--output_dir",
        str(out),
        "--loss",
        "ce",
        "--soft_label_source",
        "none",
        "--max_steps",
        str(steps),
        "--per_device_train_batch_size",
        str(batch),
        "--per_device_eval_batch_size",
        str(batch),
        "--seed",
        "0",
        "--use_cpu",
        "--disable_tqdm",
        "true",
        "--logging_steps",
        "1000",
        "--save_strategy",
        "steps",
        "--save_steps",
        str(steps),
        "--log_level",
        "info",
        "--log_level_replica",
        "info",
    ]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=400)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    train_rows = len(load_image_dataset(DataArguments())["train"])
    assert log.count(f"device-resident: {train_rows:,} images") == 2  # one line per process
    marker = list_checkpoints(out)[-1].info
    assert marker["run"]["world_size"] == 2 and marker["train_loss_count"] == steps * batch * 2
    results = json.loads((out / "all_results.json").read_text())
    n = len(load_image_dataset(DataArguments())["eval"])
    assert results["world_size"] == 2 and results["eval_samples"] == results["eval_num_predictions"] == n


def test_students_trained_together_in_two_processes(tmp_path):
    """A population of 3 students in a real 2-process DDP run (the rded protocol): every rank holds the same
    students after training (their gradients were averaged over both ranks' shards), evaluated over both ranks."""
    cmd = [
        str(ACCELERATE),
        "launch",
        "--config_file",
        str(CPU_2PROC_CONFIG),
        "--main_process_port",
        str(free_port()),
        str(Path(__file__).with_name("population_ddp.py")),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["world_size"] == 2 for r in ranks)
    # 40 rows over 2 ranks at batch 10: 2 steps an epoch, 3 epochs
    assert ranks[0]["steps"] == ranks[1]["steps"] == 6
    assert ranks[0]["checksums"] == pytest.approx(ranks[1]["checksums"], rel=1e-6)
    assert len(set(round(c, 4) for c in ranks[0]["checksums"])) == 3  # three different students
    assert ranks[0]["accuracies"] == ranks[1]["accuracies"] and all(len(a) == 2 for a in ranks[0]["accuracies"])
