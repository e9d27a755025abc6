"""`minitron run` end to end on the shipped tiny teacher: every stage, the report, and a run killed
during distillation that finishes on the second try without redoing scoring or search."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from paused import paused_command, subprocess_env, wait_for_flag
from typer.testing import CliRunner

from minitron.cli import app
from minitron.cli_options import stage_options
from minitron.model.load import ASSETS_DIR
from minitron.pipeline.config import load_run_config

ROOT = Path(__file__).resolve().parents[2]
HAS_TINY = any((ASSETS_DIR / "tiny").glob("*.safetensors"))


@pytest.mark.parametrize(
    "path", [ASSETS_DIR / "demo.toml", *sorted((ROOT / "examples").glob("*.toml"))], ids=lambda p: p.name
)
def test_every_shipped_run_file_parses_and_resolves(path):
    config = load_run_config(path, stage_options(app))
    assert config.teacher and all(stage in config.stages for stage in ("score", "search", "distill"))
    assert config.stages["search"].get("budget") or config.stages["search"].get("gpu")


RUN_FILE = """
teacher = "tiny"
seq-len = 32

[score]
samples = 4
batch-size = 4
depth-mode = "one-shot"

[search]
budget = "20MiB"
headroom = "5%"
reserve = "0.25MiB"
context = "8k"
layers = 58
granularity = 16
trials = 2
eval-samples = 4

[compare]
top = 0

[distill]
steps = 60
batch-size = 2
eval-every = 0
eval-batches = 2
save-every = 1
"""


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TINY, reason="the tiny teacher is not in this checkout")
def test_run_killed_during_distillation_resumes_without_redoing_score_or_search(tmp_path):
    run_file = tmp_path / "run.toml"
    run_file.write_text(RUN_FILE)
    out = tmp_path / "run"
    # Stopped right after distillation's third checkpoint (saved every step).
    flag = tmp_path / "paused"
    argv = ["run", str(run_file), "--out", str(out)]
    proc = subprocess.Popen(
        paused_command(argv, "minitron.distill.rundir:RunDir.save", 3, flag),
        env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    checkpoint = out / "distill" / "checkpoints" / "step-00000003"
    wait_for_flag(flag, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists(), "the run never reached distillation"
    marker = json.loads((out / ".stages" / "distill.json").read_text())
    assert marker["done"] is False  # killed mid-distillation, not after
    scores_mtime = (out / "score" / "scores.safetensors").stat().st_mtime_ns
    candidates_mtime = (out / "search" / "candidates.json").stat().st_mtime_ns

    result = CliRunner().invoke(app, ["run", str(run_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "score: done before with the same inputs, skipped" in result.output
    assert "search: done before with the same inputs, skipped" in result.output
    assert "--resume" in result.output  # distillation continued from its checkpoint
    assert (out / "score" / "scores.safetensors").stat().st_mtime_ns == scores_mtime
    assert (out / "search" / "candidates.json").stat().st_mtime_ns == candidates_mtime
    steps = [
        json.loads(line)["step"] for line in (out / "distill" / "metrics.jsonl").read_text().splitlines()
    ]
    assert max(steps) == 60
    report = (out / "report.md").read_text()
    for heading in ("## Held-out loss", "## Search", "## Generations", "## Next"):
        assert heading in report
    evaluation = json.loads((out / "report.json").read_text())
    losses = {name: row["loss"] for name, row in evaluation["models"].items()}
    assert set(losses) == {"teacher", "pruned", "distilled"} and all(0 < v < 20 for v in losses.values())
    assert json.loads((out / "run_config.json").read_text())["teacher"] == "tiny"

    again = CliRunner().invoke(app, ["run", str(run_file), "--out", str(out)])  # everything done
    assert again.exit_code == 0, again.output
    assert again.output.count("done before with the same inputs, skipped") == 4  # compare is off


def test_bad_run_files_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('teacher = "tiny"\n[search]\ntrails = 3\n')
    result = CliRunner().invoke(app, ["run", str(bad)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: {bad}: [search] has no option 'trails' (did you mean 'trials'?) (see `minitron search --help`)"
    ]
    result = CliRunner().invoke(app, ["run", str(tmp_path / "missing.toml")])
    assert result.exit_code == 1 and "no such run file" in result.output


def test_unusable_run_directory_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(app, ["demo", "--out", str(blocker / "run")])
    assert result.exit_code == 1
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith(f"error: --out: cannot create run directory {blocker}")
    )
