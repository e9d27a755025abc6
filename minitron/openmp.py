"""How torch's OpenMP threads wait between ops, chosen before torch is imported.

A narrow model's step is thousands of small ops, each a fork/join of torch's OpenMP threads, so how
a waiting thread waits decides much of the step time on a CPU:

- on an idle machine, a short spin (GOMP_SPINCOUNT=20000) before sleeping is fastest: a distillation
  step of the demo's student took 1.15 s against 1.8-1.9 s with libgomp's default spin or with
  OMP_WAIT_POLICY=PASSIVE (2 threads, 2-core AMD EPYC, torch 2.13);
- when another process holds a core, every spin steals from it: the same step took 2.0 s with
  PASSIVE, 2.8 s with 1,000 spins, 4.8 s with 5,000 and 10 s with 20,000.

So the choice follows the machine at start-up: with another task runnable right now (the running
count of /proc/loadavg), PASSIVE; otherwise the short spin. Whatever the user set of either
variable wins. The CLI imports torch lazily, after `minitron` itself, so this runs first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

SPIN = "20000"
USER_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
# Set beside our own choice, so a child process (a subprocess CLI, a search worker) chooses again
# for the machine as it finds it instead of taking the parent's choice for the user's.
MARK = "MINITRON_OPENMP_CHOSEN"


def wait_settings(env: Mapping[str, str], loadavg: str | None) -> dict[str, str | None]:
    """The variables to set (None: to remove) in `env`, given the text of /proc/loadavg (None where
    there is none)."""
    if env.get(MARK) != "1" and any(name in env for name in USER_VARIABLES):
        return {}
    try:
        others = int(loadavg.split()[3].split("/")[0]) - 1  # runnable tasks now, this one excluded
    except (AttributeError, IndexError, ValueError):
        others = 1  # unknown machine state: the choice that never hurts much
    choice = {"OMP_WAIT_POLICY": "PASSIVE"} if others > 0 else {"GOMP_SPINCOUNT": SPIN}
    return {**dict.fromkeys(USER_VARIABLES), **choice, MARK: "1"}


def configure() -> None:
    try:
        with open("/proc/loadavg") as f:
            loadavg: str | None = f.read()
    except OSError:
        loadavg = None
    for name, value in wait_settings(os.environ, loadavg).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
