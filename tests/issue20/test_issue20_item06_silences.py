"""Issue 20 item 6: no silences: a spinner while torch loads, the step-0 held-out loss on screen, the
report's header before its slow part, and evaluate's output without lm-eval's noise."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest
from issue20_helpers import invoke, task_yaml
from rich.console import Console


def test_torch_loading_is_said_on_a_terminal():
    from minitron.cli_app import import_torch

    terminal = Console(file=io.StringIO(), force_terminal=True)
    import_torch("distill", terminal)
    assert "minitron distill: loading torch and transformers" in terminal.file.getvalue()
    piped = Console(file=io.StringIO(), force_terminal=False)
    import_torch("distill", piped)
    assert piped.file.getvalue() == ""  # logs get no spinner frames


def test_step_zero_heldout_loss_is_shown(tmp_path):
    result = invoke("train", "tiny", "--steps", 1, "--seq-len", 32, "--batch-size", 2, "--eval-batches", 1,
                    "--device", "cpu", "--out", tmp_path / "run")  # fmt: skip
    assert result.exit_code == 0, result.output
    first = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["step"] == 0
    assert f"step 0: held-out next_token_ce: loss {first['eval_loss']:.4f}" in result.output


def test_report_header_comes_before_the_evaluation(tmp_path, monkeypatch):
    import minitron.pipeline.report as report
    from minitron.pipeline.stages import Paths

    console = Console(file=io.StringIO(), width=100)

    class Seen(Exception):
        pass

    def evaluate_models(models, options):
        raise Seen(console.file.getvalue())

    monkeypatch.setattr(report, "evaluate_models", evaluate_models)
    config = SimpleNamespace(teacher="tiny", out=tmp_path, stages={"distill": {}})
    with pytest.raises(Seen) as seen:
        report.write_report(config, Paths(tmp_path), console)
    assert "report" in str(seen.value)


def test_evaluate_without_git_noise(tmp_path, capfd, monkeypatch):
    pytest.importorskip("lm_eval")
    task = task_yaml(tmp_path, "nc_quiet", "{{q}}")
    monkeypatch.chdir(tmp_path)  # not a git repository
    result = invoke("evaluate", "tiny", "--tasks", task, "--limit", 2, "--out", tmp_path / "e")
    assert result.exit_code == 0, result.output
    captured = capfd.readouterr()
    assert "not a git repository" not in captured.err + captured.out
    assert json.loads((tmp_path / "e" / "results.json").read_text())["tiny"]["nc_quiet"]["acc"] >= 0
