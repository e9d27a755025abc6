"""Start-up time of `minitron --help` against `python -c "import torch, transformers"`, same run.

The CLI imports torch and transformers only inside command bodies, so its help should cost a
fraction of what importing the heavy stack costs. Each command runs in a fresh interpreter;
the median of --repeats runs is reported (the first, cold-cache run is discarded as warm-up).

    python bench/cli_startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "minitron --help": [sys.executable, "-m", "minitron", "--help"],
    "minitron estimate --help": [sys.executable, "-m", "minitron", "estimate", "--help"],
    "import torch, transformers": [sys.executable, "-c", "import torch, transformers"],
}


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    for command in COMMANDS.values():
        seconds(command)  # warm-up: page cache, .pyc files
    # Interleave the commands so background load hits each of them alike.
    runs: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            runs[name].append(seconds(command))
    medians = {name: statistics.median(times) for name, times in runs.items()}
    baseline = medians["import torch, transformers"]
    print(
        f"{'command':<30} {'median s':>9} {'vs baseline':>12}   (python {sys.version.split()[0]}, {args.repeats} runs)"
    )
    for name, median in medians.items():
        print(f"{name:<30} {median:>9.3f} {median / baseline:>11.2f}x")


if __name__ == "__main__":
    main()
