"""How torch's OpenMP threads wait: a short spin on an idle machine, PASSIVE when another task runs,
the user's own settings untouched, and a child process choosing again for itself."""

from __future__ import annotations

import os
import subprocess
import sys

from minitron.openmp import MARK, SPIN, wait_settings

IDLE = "0.10 0.20 0.30 1/81 26625\n"  # only the reading process is runnable
BUSY = "1.97 2.21 1.92 2/82 26709\n"  # one other task is running


def _applied(env: dict, loadavg: str | None) -> dict:
    env = dict(env)
    for name, value in wait_settings(env, loadavg).items():
        env.pop(name, None) if value is None else env.__setitem__(name, value)
    return env


def test_idle_machine_spins_briefly_busy_machine_sleeps():
    assert _applied({}, IDLE) == {"GOMP_SPINCOUNT": SPIN, MARK: "1"}
    assert _applied({}, BUSY) == {"OMP_WAIT_POLICY": "PASSIVE", MARK: "1"}


def test_unknown_machine_state_sleeps():
    for text in (None, "", "garbage"):
        assert _applied({}, text)["OMP_WAIT_POLICY"] == "PASSIVE"


def test_the_users_settings_win():
    for user in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "0"}):
        assert _applied(user, IDLE) == user
        assert _applied(user, BUSY) == user


def test_a_child_chooses_again_instead_of_inheriting_our_choice():
    parent = _applied({}, IDLE)
    assert _applied(parent, BUSY) == {"OMP_WAIT_POLICY": "PASSIVE", MARK: "1"}
    assert _applied(_applied({}, BUSY), IDLE) == {"GOMP_SPINCOUNT": SPIN, MARK: "1"}


def test_importing_minitron_sets_it_before_torch():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", MARK)}
    code = "import os, sys, minitron; print('torch' in sys.modules, os.environ.get('" + MARK + "'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "1"]
