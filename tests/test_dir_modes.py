"""Every directory a command leaves behind has the mode a plain mkdir gives (0777 less the umask),
never mkdtemp's private 0700 nor a fixed 0755: under umask 027 every one is 0750.

The run directory's own folders are checked in tests/pipeline/test_run_eval.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from minitron.cli import app

UMASK = 0o027  # neither 022 (what a hard-coded 0755 would match) nor 077 (what 0700 would)


@pytest.fixture(autouse=True)
def umask():
    before = os.umask(UMASK)
    yield
    os.umask(before)


def modes(root: Path) -> dict[str, int]:
    """Mode of `root` and of every directory under it."""
    dirs = [root, *(p for p in root.rglob("*") if p.is_dir())]
    return {str(p.relative_to(root.parent)): p.stat().st_mode & 0o777 for p in dirs}


def assert_mkdir_modes(root: Path) -> None:
    expected = 0o777 & ~UMASK
    wrong = {p: oct(m) for p, m in modes(root).items() if m != expected}
    assert not wrong, f"expected {oct(expected)}: {wrong}"


def invoke(*args: str) -> None:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output


def test_score_output_directories(tmp_path):
    out = tmp_path / "a" / "b" / "scores.safetensors"
    invoke("score", "tiny", "--out", str(out), "--depth", "none", "--samples", "2", "--seq-len", "16",
           "--batch-size", "2", "--json")  # fmt: skip
    assert out.exists()
    assert_mkdir_modes(tmp_path / "a")


def test_search_output_directory(tmp_path):
    out = tmp_path / "c" / "d"
    invoke("search", "tiny", "--no-eval", "--budget", "20MiB", "--context", "8k", "--out", str(out))
    assert (out / "candidates.json").exists()
    assert_mkdir_modes(tmp_path / "c")


def test_pruned_checkpoint_directory(tmp_path, tiny_checkpoint):
    out = tmp_path / "p" / "pruned"
    invoke("prune", str(tiny_checkpoint), "--out", str(out), "--drop-blocks", "1")
    invoke("prune", str(tiny_checkpoint), "--out", str(out), "--drop-blocks", "2", "--overwrite")  # replaced
    assert (out / "config.json").exists()
    assert_mkdir_modes(tmp_path / "p")


def test_training_checkpoint_and_final_model_directories(tmp_path):
    out = tmp_path / "t" / "run"
    invoke("train", "tiny", "--seq-len", "16", "--batch-size", "2", "--steps", "2", "--save-every", "1",
           "--eval-batches", "1", "--warmup-steps", "1", "--device", "cpu", "--out", str(out))  # fmt: skip
    assert (out / "final" / "config.json").exists() and any((out / "checkpoints").glob("step-*"))
    assert_mkdir_modes(tmp_path / "t")
