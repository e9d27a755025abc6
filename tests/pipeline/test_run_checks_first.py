"""`minitron run` builds and checks every stage's config before the first stage runs: a bad value in
any section (or an output that cannot be written) is one line, no stage runs and nothing is left."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from typer.testing import CliRunner

from minitron.cli import app
from minitron.cli_options import parse_command, stage_options
from minitron.model.load import ASSETS_DIR
from minitron.pipeline import load_run_config, stages

ROOT = Path(__file__).resolve().parents[2]

RUN_FILE = """
teacher = "tiny"
seq-len = 32

[score]
samples = 4

[search]
budget = "20MiB"
context = "8k"
trials = 2

[compare]
top = 2
steps = 2

[prune]

[distill]
steps = 3
"""


@pytest.fixture
def ran(monkeypatch):
    """The stages that ran (none should)."""
    called: list[str] = []
    monkeypatch.setattr(stages, "run_stage", lambda stage, config: called.append(stage))
    return called


def edited(text: str, section: str, line: str) -> str:
    """The run file with `line` in [section] (top: at the top level), replacing the key if it is set."""
    key = line.split("=")[0].strip()
    text = "".join(old + "\n" for old in text.splitlines() if old.split("=")[0].strip() != key)
    if section == "top":
        return line + "\n" + text
    return text.replace(f"[{section}]\n", f"[{section}]\n{line}\n")


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        ("distill", "lr = nan", "[distill]: --lr must be a finite number, got nan"),
        ("distill", "steps = -3", "[distill]: --steps must be positive, got -3"),
        ("distill", "tau = 0", "[distill]: --tau must be a positive number, got 0"),
        ("search", 'budget = "abc"', "[search]: --budget"),
        ("search", 'trials = "four"', "[search]: Invalid value for '--trials'"),
        ("compare", "chunk-tokens = 0", "[compare]: --chunk-tokens must be positive, got 0"),
        ("compare", "lr = -1.0", "[compare]: --lr must be positive"),
        ("score", 'depth = "mean"', "[score]: --depth must be one of"),
        ("prune", 'dtype = "int3"', "[prune]: --dtype must be one of"),
        ("distill", 'data = "missing.jsonl"', "[distill]: --data missing.jsonl: no such file or directory"),
    ],
)
def test_a_bad_value_in_any_stage_is_one_line_before_any_stage(tmp_path, ran, section, line, message):
    run_file = tmp_path / "run.toml"
    run_file.write_text(edited(RUN_FILE, section, line))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(run_file), "--out", str(out)])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {run_file} ") and message in lines[0], (
        result.output
    )
    assert ran == [] and not out.exists()


def test_an_out_under_a_regular_file_is_one_line_before_any_stage(tmp_path, ran):
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    run_file = tmp_path / "run.toml"
    run_file.write_text(edited(RUN_FILE, "top", f'out = "{blocker}/run"'))
    result = CliRunner().invoke(app, ["run", str(run_file)])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"error: --out: cannot create run directory {blocker}/run ({blocker} is a file, not a directory)"
    ]
    assert ran == [] and set(tmp_path.iterdir()) == {blocker, run_file}


def test_a_valid_file_runs_every_stage_with_the_configs_it_checked(tmp_path, monkeypatch):
    """The stages get library configs built from the file (the same the commands build)."""
    from minitron.distill.compare import CompareConfig
    from minitron.distill.run import DistillConfig
    from minitron.importance.run import ScoreConfig
    from minitron.prune.run import PruneConfig
    from minitron.search.run import SearchConfig

    configs: dict[str, object] = {}

    run = tmp_path / "run"
    done = {"score": run / "score" / "scores.safetensors", "search": run / "search" / "candidates.json",
            "compare": run / "compare" / "compare.json", "prune": run / "prune" / "minitron.json",
            "distill": run / "distill" / "final" / "config.json"}  # fmt: skip

    def stand_in(stage, config):  # writes the file that says the stage is done
        configs[stage] = config
        done[stage].parent.mkdir(parents=True, exist_ok=True)
        done[stage].write_text('{"candidates": [{"rank_after": 1, "rank_before": 2}]}')

    monkeypatch.setattr(stages, "run_stage", stand_in)
    monkeypatch.setattr("minitron.pipeline.report.write_report", lambda *a, **k: None)
    run_file = tmp_path / "run.toml"
    run_file.write_text(RUN_FILE)
    result = CliRunner().invoke(app, ["run", str(run_file), "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert list(configs) == ["score", "search", "compare", "prune", "distill"]
    assert isinstance(configs["score"], ScoreConfig) and configs["score"].samples == 4
    assert isinstance(configs["search"], SearchConfig) and configs["search"].trials == 2
    assert isinstance(configs["compare"], CompareConfig) and configs["compare"].train.steps == 2
    assert isinstance(configs["prune"], PruneConfig) and configs["prune"].rank == 2  # compare's best
    assert configs["prune"].command.startswith("minitron prune tiny --scores ")
    distill = configs["distill"]
    assert (
        isinstance(distill, DistillConfig) and distill.train.steps == 3 and distill.train.data.seq_len == 32
    )


@pytest.mark.parametrize(
    "path", [ASSETS_DIR / "demo.toml", *sorted((ROOT / "examples").glob("*.toml"))], ids=lambda p: p.name
)
def test_every_stage_of_every_shipped_run_file_builds_its_config(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # their relative `out`
    options = stage_options(app)
    plan = stages.Plan(load_run_config(path, options), options, functools.partial(parse_command, app))
    plan.check()
    assert {stage for stage, *_ in plan.steps()} >= {"score", "search", "prune", "distill"}
    assert list(tmp_path.iterdir()) == []  # checking wrote nothing
