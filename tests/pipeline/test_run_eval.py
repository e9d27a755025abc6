"""`minitron run --eval-tasks`: lm-eval scores of teacher, pruned and distilled side by side in the
report, a stage skipped when done, and a missing lm-eval refused before any stage runs.

The stages before evaluate are stood in for by copies of one tiny random checkpoint (the real ones
are tested end to end in test_run_pipeline.py); evaluate itself is the real `minitron evaluate`, on
the small local task that tests/conftest.py writes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from minitron.cli import app
from minitron.evaluate import INSTALL_HINT
from minitron.pipeline import stages

RUN_FILE = """
teacher = "{teacher}"
seq-len = 16

[search]
budget = "1GiB"  # every stage's options are checked before the first runs, stood-in ones too

[compare]
top = 0

[evaluate]
limit = 2
device = "cpu"
"""


@pytest.fixture
def run_file(tmp_path, random_checkpoint):
    path = tmp_path / "run.toml"
    path.write_text(RUN_FILE.format(teacher=random_checkpoint))
    return path


@pytest.fixture
def stand_in_stages(monkeypatch, random_checkpoint):
    """score, search, prune and distill write their outputs at once; evaluate really runs. Returns
    the stages run, in order."""
    real_run_stage = stages.run_stage
    called: list[str] = []

    def run_stage(stage: str, config) -> None:
        called.append(stage)
        out = Path(config.train.out if stage == "distill" else config.out)
        if stage == "evaluate":
            return real_run_stage(stage, config)
        if stage == "score":
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(b"scores")
        elif stage == "search":
            out.mkdir(parents=True, exist_ok=True)
            (out / "candidates.json").write_text(json.dumps({"candidates": [{"rank": 1, "params": 1}]}))
        else:
            model = out if stage == "prune" else out / "final"
            shutil.copytree(random_checkpoint, model, dirs_exist_ok=True)
            (model / "minitron.json").write_text(json.dumps({"stage": stage}))

    monkeypatch.setattr(stages, "run_stage", run_stage)
    return called


def test_eval_tasks_scores_three_models_side_by_side_and_skips_when_done(
    run_file, task_yaml, stand_in_stages, tmp_path
):
    pytest.importorskip("lm_eval")
    out = tmp_path / "run"
    args = ["run", str(run_file), "--out", str(out), "--eval-tasks", str(task_yaml)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert stand_in_stages == ["score", "search", "prune", "distill", "evaluate"]
    results = json.loads((out / "evaluate" / "results.json").read_text())
    assert list(results) == [
        str(run_file.parent / "random"),
        str(out / "prune"),
        str(out / "distill" / "final"),
    ]
    summary = result.output.split("─ report ─")[-1]  # the terminal summary, after the stages' output
    header = next(line for line in summary.splitlines() if "task" in line and "metric" in line)
    assert [w for w in header.replace("│", " ").split() if w in ("teacher", "pruned", "distilled")] == [
        "teacher", "pruned", "distilled"
    ]  # fmt: skip
    report = (out / "report.md").read_text()
    section = report.split("## Benchmarks (lm-eval)")[1].split("\n## ")[0]
    assert "| task | metric | teacher | pruned | distilled |" in section
    acc = next(line for line in section.splitlines() if line.startswith("| minitron_doubling | acc |"))
    assert len(acc.strip("|").split("|")) == 5  # task, metric and one score per model
    assert json.loads((out / "run_config.json").read_text())["eval_tasks"] == str(task_yaml)

    stand_in_stages.clear()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert stand_in_stages == [] and "evaluate: done before with the same inputs, skipped" in again.output
    assert "## Benchmarks (lm-eval)" in (out / "report.md").read_text()

    task_yaml.write_text(
        task_yaml.read_text().replace("metric: acc_norm", "metric: acc_norm\n  - metric: acc")
    )
    edited = CliRunner().invoke(app, args)  # an edited task file is a new input: evaluate runs again
    assert edited.exit_code == 0, edited.output
    assert stand_in_stages == ["evaluate"]


def test_without_eval_tasks_the_stage_is_off(run_file, stand_in_stages, tmp_path):
    out = tmp_path / "runs" / "run"
    umask = os.umask(0o027)
    try:
        result = CliRunner().invoke(app, ["run", str(run_file), "--out", str(out)])
    finally:
        os.umask(umask)
    assert result.exit_code == 0, result.output
    assert stand_in_stages == ["score", "search", "prune", "distill"]
    assert "evaluate: off (no eval-tasks)" in result.output
    assert "## Benchmarks" not in (out / "report.md").read_text()
    # The run's own directories have plain mkdir modes (0777 less the umask).
    assert {p.name: p.stat().st_mode & 0o777 for p in (out.parent, out, out / ".stages")} == {
        "runs": 0o750, "run": 0o750, ".stages": 0o750
    }  # fmt: skip


def test_eval_tasks_from_the_run_file(run_file, task_yaml, stand_in_stages, tmp_path):
    from minitron.cli_options import stage_options
    from minitron.pipeline import load_run_config

    run_file.write_text(f'eval-tasks = ["{task_yaml}", "hellaswag"]\n' + run_file.read_text())
    config = load_run_config(run_file, stage_options(app))
    assert config.eval_tasks == f"{task_yaml},hellaswag" and config.enabled("evaluate")
    assert config.stages["evaluate"] == {"limit": 2, "device": "cpu"}
    overridden = load_run_config(run_file, stage_options(app), eval_tasks=str(task_yaml))
    assert overridden.eval_tasks == str(task_yaml)  # the command line wins over the file


def test_missing_lm_eval_is_one_line_before_any_stage(
    run_file, task_yaml, stand_in_stages, tmp_path, monkeypatch
):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else find_spec(name, *a)
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["run", str(run_file), "--out", str(out), "--eval-tasks", str(task_yaml)]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: eval-tasks: {INSTALL_HINT}, or run without eval-tasks"
    ]
    assert stand_in_stages == [] and not out.exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ('eval-tasks = "./missing/task.yaml"\n', "eval-tasks: ./missing/task.yaml: no such task file"),
        ("[evaluate]\ntasks = 'x'\n", "[evaluate] tasks: set eval-tasks at the top level"),
        ("eval-tasks = 3\n", "eval-tasks takes task names or YAML paths"),
    ],
)
def test_eval_task_mistakes_are_one_line_before_any_stage(run_file, stand_in_stages, tmp_path, edit, message):
    pytest.importorskip("lm_eval")
    text = run_file.read_text()
    run_file.write_text(edit + text if edit.startswith("eval") else text.replace("[evaluate]\n", edit))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(run_file), "--out", str(out)])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert stand_in_stages == [] and not out.exists()


def test_run_refuses_torchrun_before_any_stage(run_file, stand_in_stages, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(run_file), "--out", str(out)])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and "run it without torchrun" in result.output
    assert stand_in_stages == [] and not out.exists()
