"""A study launched with `accelerate launch`/`torchrun` splits its cells; each process trains alone."""

import json
import os
import subprocess
import sys

SCRIPT = """
import json, os
from gift_hf.studies.sweep import detach_from_launcher
try:
    result = detach_from_launcher()
except RuntimeError as error:
    result = str(error)
print(json.dumps({"result": result, "left": sorted(k for k in os.environ if k in (
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_FSDP")),
    "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}))
"""


def run(**env):
    clean = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "PMI_SIZE")}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_launched_process_gets_its_rank_and_leaves_the_job():
    got = run(
        RANK="1",
        WORLD_SIZE="2",
        LOCAL_RANK="1",
        LOCAL_WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT="29500",
        ACCELERATE_USE_FSDP="true",
        CUDA_VISIBLE_DEVICES="4,5",
    )
    assert got == {"result": [1, 2], "left": [], "cuda": "5"}


def test_a_plain_process_is_rank_zero_of_one_and_untouched():
    assert run()["result"] == [0, 1]


def test_mpirun_is_refused_with_the_launchers_that_work():
    assert "accelerate launch" in run(PMI_SIZE="2")["result"]
