"""How long a user waits before gift_hf does anything: `gift-hf --help` and `import gift_hf.engine.losses`.

Each command runs in a fresh interpreter (`-X importtime` off, plain wall time), a few times;
the medians are printed next to a bare interpreter start and `import torch`, measured in the
same run, so the ratios say how much gift_hf adds.

    python benchmarks/import_time.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPEATS = 3
CLI = Path(sys.executable).with_name("gift-hf")
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import torch": [sys.executable, "-c", "import torch"],
    "import gift_hf.engine.losses": [sys.executable, "-c", "import gift_hf.engine.losses"],
    "gift-hf --help": [str(CLI), "--help"] if CLI.exists() else [sys.executable, "-m", "gift_hf.cli", "--help"],
}


def seconds(command: list[str]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    measured = {name: seconds(command) for name, command in COMMANDS.items()}
    torch_time = measured["import torch"]
    print(f"{'command':<24} {'median s':>9} {'/ import torch':>15}")
    for name, value in measured.items():
        print(f"{name:<24} {value:>9.2f} {value / torch_time:>15.2f}")


if __name__ == "__main__":
    main()
