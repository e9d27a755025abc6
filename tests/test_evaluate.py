"""`minitron evaluate`: lm-eval on a tiny local multiple-choice task the tests write, fully offline."""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from minitron.cli import app
from minitron.evaluate import INSTALL_HINT, EvalConfig, run

pytest.importorskip("lm_eval")

runner = CliRunner()
METRIC_KEYS = {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"}


def test_random_model_scores_the_same_twice(random_checkpoint, task_yaml, tmp_path):
    config = dict(models=[str(random_checkpoint)], tasks=str(task_yaml), limit=4, device="cpu")
    first = run(EvalConfig(**config, out=str(tmp_path / "out")))
    second = run(EvalConfig(**config))
    assert first == second
    metrics = first[str(random_checkpoint)]["minitron_doubling"]
    assert set(metrics) == METRIC_KEYS
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("acc", "acc_norm"))
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == first


def test_cli_puts_two_models_side_by_side(random_checkpoint, task_yaml, tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", str(random_checkpoint), "tiny", "--tasks", str(task_yaml), "--limit", "2"]
    result = runner.invoke(app, [*args, "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "task" in line and "metric" in line)
    assert "tiny" in header
    acc_row = next(
        line for line in result.output.splitlines() if "minitron_doubling" in line and "│ acc " in line
    )
    assert len([cell for cell in acc_row.split("│") if cell.strip().replace(".", "").isdigit()]) == 2
    saved = json.loads((out / "results.json").read_text())
    assert list(saved) == [str(random_checkpoint), "tiny"]
    for per_task in saved.values():
        assert set(per_task["minitron_doubling"]) == METRIC_KEYS
        assert 0.0 <= per_task["minitron_doubling"]["acc"] <= 1.0
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0] == f"task,metric,{random_checkpoint},tiny"
    assert len(csv_lines) == 1 + len(METRIC_KEYS)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--limit", "0"], "--limit"),
        (["--limit", "-3"], "--limit"),
        (["--limit", "1e400"], "--limit"),
        pytest.param(["--device", "cuda"], "no CUDA device", marks=pytest.mark.no_cuda),
    ],
)
def test_bad_options_are_one_line(task_yaml, tmp_path, extra, message):
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "tiny", "--tasks", str(task_yaml), "--out", str(out), *extra])
    assert result.exit_code == 1
    assert result.output.startswith("error:") and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("model", "tasks", "message"),
    [
        ("tiny", "no_such_task_xyz", "unknown task no_such_task_xyz"),
        ("tiny", "./missing/task.yaml", "no such task file"),
        ("./no/such/model", "TASK", "no such directory"),
        ("tiny", "NO_DATA", "cannot load a task's data"),
    ],
)
def test_bad_inputs_are_one_line(task_yaml, tmp_path, model, tasks, message):
    out = tmp_path / "eval"
    if tasks == "NO_DATA":
        (task_yaml.parent / "doubling.jsonl").unlink()
        tasks = "TASK"
    tasks = tasks.replace("TASK", str(task_yaml))
    result = runner.invoke(app, ["evaluate", model, "--tasks", tasks, "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 1, result.output
    # Loading progress bars may come first; the error is one line, last, with no traceback.
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error:") and message in last
    assert "Traceback" not in result.output and result.output.count("error:") == 1
    assert not out.exists()


def test_missing_lm_eval_says_how_to_install(task_yaml, tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else find_spec(name, *a)
    )
    result = runner.invoke(app, ["evaluate", "tiny", "--tasks", str(task_yaml), "--out", str(tmp_path / "e")])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {INSTALL_HINT}"
    assert "pip install 'minitron[eval]'" in result.output


def test_help_does_not_import_lm_eval():
    """`minitron evaluate --help` in a fresh process: neither lm_eval nor torch gets imported."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "from minitron.cli import app\n"
        "try:\n    app(['evaluate', '--help'], prog_name='minitron')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('lm_eval', 'torch') if m in sys.modules))\n"
    )
    root = str(Path(__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "--tasks" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"
