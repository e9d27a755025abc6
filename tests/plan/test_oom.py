"""Out of memory in score and search ends the command with one line: the stage, its planned peak, the options."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from minitron.cli import app

CPU_FAILURE = ("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
               "allocate 17179869184 bytes. Error code 12 (Cannot allocate memory)")  # fmt: skip


def _raise(*args, **kwargs):
    raise RuntimeError(CPU_FAILURE)


def test_score_out_of_memory_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr("minitron.importance.width.score_width", _raise)
    out = tmp_path / "scores.safetensors"
    result = CliRunner().invoke(app, ["score", "tiny", "--samples", "2", "--seq-len", "16", "--depth", "none",
                                      "--device", "cpu", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(
        "error: out of memory in score ([enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator"
    )
    assert "planned peak" in line and "per device on CPU (process RSS)" in line
    assert "lower it with --dtype bfloat16 (" in line
    assert "Traceback" not in result.output and not out.exists()


def test_search_out_of_memory_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr("minitron.search.objective.evaluate", _raise)
    scores = tmp_path / "scores.safetensors"
    assert CliRunner().invoke(app, ["score", "tiny", "--samples", "2", "--seq-len", "16", "--depth-mode", "one-shot",
                                    "--device", "cpu", "--out", str(scores)]).exit_code == 0  # fmt: skip
    result = CliRunner().invoke(app, ["search", "tiny", "--scores", str(scores), "--budget", "1GiB", "--max-params",
                                      "80%", "--trials", "2", "--eval-samples", "2", "--seq-len", "16", "--device",
                                      "cpu", "--out", str(tmp_path / "search")])  # fmt: skip
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: out of memory in search (") and "planned peak" in line, line


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("CUDA error: an illegal memory access")])
def test_only_allocation_failures_count(error):
    from minitron.plan.oom import is_out_of_memory

    assert is_out_of_memory(error) == isinstance(error, MemoryError)
