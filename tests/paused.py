"""Run a `minitron` command in a subprocess that stops at a chosen point and says so, so that a test
kills or interrupts it exactly there, never after some time.

    python tests/paused.py TARGET N before|after FLAG -- ARGS...

runs `minitron ARGS...` with TARGET (`module:function` or `module:Class.method`, looked up when it
is called) wrapped: on its Nth call, before or after the call itself, the process writes FLAG and
blocks until it is killed or interrupted (Ctrl-C raises KeyboardInterrupt inside the wrapper, as it
would inside the wrapped call). Tests build the command with `paused_command` and wait with
`wait_for_flag`.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def paused_command(argv: list[str], target: str, calls: int, flag: Path, when: str = "after") -> list[str]:
    return [sys.executable, str(HERE), target, str(calls), when, str(flag), "--", *argv]


def subprocess_env() -> dict[str, str]:
    """The environment of a command subprocess: this checkout first on the path, one thread."""
    path = os.pathsep.join(filter(None, [str(HERE.parents[1]), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def wait_for_flag(flag: Path, proc, hang_s: float = 600) -> None:
    """Until the command has written `flag`; fails if it exits first (or hangs past `hang_s`)."""
    deadline = time.monotonic() + hang_s
    while not flag.exists():
        assert proc.poll() is None, f"the command exited ({proc.returncode}) before reaching the pause"
        assert time.monotonic() < deadline, "the command never reached the pause"
        time.sleep(0.05)


def _pause(flag: Path) -> None:
    flag.write_text(str(os.getpid()))
    while True:
        time.sleep(3600)  # until the test kills or interrupts this process


def _wrap(target: str, calls: int, when: str, flag: Path) -> None:
    module_name, _, attribute = target.partition(":")
    owner = importlib.import_module(module_name)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    seen = 0

    def wrapper(*args, **kwargs):
        nonlocal seen
        seen += 1
        if seen == calls and when == "before":
            _pause(flag)
        result = original(*args, **kwargs)
        if seen == calls and when == "after":
            _pause(flag)
        return result

    setattr(owner, name, wrapper)


if __name__ == "__main__":
    target, calls, when, flag = sys.argv[1], int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    _wrap(target, calls, when, flag)
    sys.argv = ["minitron", *sys.argv[sys.argv.index("--") + 1 :]]
    from minitron.cli import main

    main()
