"""Start-up time of `minitron --help` against `python -c "import torch, transformers"`, same run.

The CLI imports torch and transformers only inside command bodies, so its help should cost a
fraction of what importing the heavy stack costs. Each command runs in a fresh interpreter;
the median of --repeats runs is reported (the first, cold-cache run is discarded as warm-up).

    python bench/cli_startup.py [--repeats 7]
"""

from __future__ import annotations

import functools
import subprocess
import sys

from _common import interleaved, parse_args, print_medians

COMMANDS = {  # the baseline first
    "import torch, transformers": [sys.executable, "-c", "import torch, transformers"],
    "minitron --help": [sys.executable, "-m", "minitron", "--help"],
    "minitron estimate --help": [sys.executable, "-m", "minitron", "estimate", "--help"],
}


def main() -> None:
    args = parse_args(__doc__, repeats=7)
    # Warm-up (page cache, .pyc files), then the commands interleaved so background load hits each alike.
    runs = {name: functools.partial(subprocess.run, command, check=True, capture_output=True)
            for name, command in COMMANDS.items()}  # fmt: skip
    times = interleaved(runs, args.repeats)
    print(f"python {sys.version.split()[0]}, {args.repeats} runs")
    print_medians(times, "command", digits=2)


if __name__ == "__main__":
    main()
