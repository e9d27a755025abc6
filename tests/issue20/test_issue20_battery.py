"""Issue 20's battery of bad inputs (bench/bad_inputs.py), the ones that need no built fixtures: every
input exits non-zero with one `error:` line (or click's usage `Error:`), never a traceback. How fast
each is refused is the benchmark's to measure (`python bench/bad_inputs.py --only fast` reports an
input still working after --timeout seconds as `slow`); here no alarm runs, so no verdict depends on
the machine's load."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "bad_inputs", Path(__file__).parents[2] / "bench" / "bad_inputs.py"
)
bad_inputs = importlib.util.module_from_spec(_spec)
sys.modules["bad_inputs"] = bad_inputs  # dataclasses look their module up while the file runs
_spec.loader.exec_module(bad_inputs)

FAST = [case for case in bad_inputs.cases() if case.kind == bad_inputs.FAST]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-inputs")
    bad_inputs.make_scratch(root, slow=False)
    return root


def test_the_battery_is_large():
    assert len(bad_inputs.cases()) >= 250 and len(FAST) >= 250
    assert {c.command for c in FAST} >= {"estimate", "score", "search", "prune", "distill", "compare", "train",
                                         "run", "evaluate", "demo"}  # fmt: skip


@pytest.mark.parametrize("case", FAST, ids=[" ".join(c.argv)[:90] for c in FAST])
def test_bad_input(case, scratch):
    import torch

    torch.set_num_threads(1)
    with contextlib.chdir(scratch):
        (verdict, detail), _ = bad_inputs.run_case(case, timeout_s=None)
    assert verdict == "ok", f"minitron {' '.join(case.argv)}: {verdict}: {detail}"
