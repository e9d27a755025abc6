"""`minitron compare`: each top candidate pruned and distilled the same way; table, files, and resuming."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys

import pytest
from paused import paused_command, subprocess_env, wait_for_flag
from typer.testing import CliRunner

from minitron.cli import app
from minitron.memory import ServingSpec
from minitron.model.load import resolve_model


@pytest.fixture
def setup(tmp_path, tokenizer, make_model):
    teacher = tmp_path / "teacher"
    make_model(0).save_pretrained(teacher)
    tokenizer.save_pretrained(teacher)
    # TINY's pattern M-*M-*-M: drop one MLP block, another MLP block, the first Mamba block.
    candidates = tmp_path / "candidates.json"
    candidates.write_text(json.dumps({"serving": {"context_tokens": 8192}, "candidates": [
        {"rank": 2, "drop_blocks": [6], "objective": 0.6},
        {"rank": 1, "drop_blocks": [1], "objective": 0.5, "memory": {"total_bytes": 123456}},
        {"rank": 3, "drop_blocks": [0], "objective": 0.9},
    ]}))  # fmt: skip
    return teacher, candidates


def args(setup, corpus, out, *extra):
    teacher, candidates = setup
    return ["compare", str(teacher), str(candidates), "--top", "2", "--data", str(corpus), "--seq-len", "16",
            "--batch-size", "2", "--eval-batches", "1", "--warmup-steps", "1", "--lr", "1e-2", "--device", "cpu",
            "--out", str(out), *extra]  # fmt: skip


def test_compare_distils_the_top_candidates_and_writes_the_table(tmp_path, setup, corpus):
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, args(setup, corpus, out, "--steps", "6"))
    assert result.exit_code == 0, result.output
    data = json.loads((out / "compare.json").read_text())
    rows = {r["rank_before"]: r for r in data["candidates"]}
    assert set(rows) == {1, 2}  # the top 2 by rank, whatever the file order
    # the file's figure, else sized at the file's serving spec (8k), never at a default context
    rank2 = resolve_model(str(setup[0])).architecture.drop_blocks([6])
    assert rows[1]["memory_bytes"] == 123456
    assert rows[2]["memory_bytes"] == ServingSpec(context_tokens=8192).memory(rank2).total_bytes
    assert rows[1]["objective_before"] == 0.5 and "drop 1" in rows[1]["candidate"]
    assert sorted(r["rank_after"] for r in rows.values()) == [1, 2]
    best = min(rows.values(), key=lambda r: r["lm_loss_after"])
    assert best["rank_after"] == 1
    for r in rows.values():
        assert r["kd_after"] != r["kd_before"]  # measured before and after distillation
        run = json.loads((out / f"rank-{r['rank_before']}" / "final" / "minitron.json").read_text())
        assert run["provenance"]["candidate"]["rank"] == r["rank_before"] and run["steps"] == 6
    with open(out / "compare.csv") as f:
        assert [int(r["rank_after"]) for r in csv.DictReader(f)] == [1, 2]
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert "teacher held-out LM loss" in " ".join(result.output.split())  # the rich table
    # Same --out with other settings: refused; nothing overwritten.
    again = CliRunner().invoke(app, args(setup, corpus, out, "--steps", "7"))
    assert again.exit_code == 1 and "other settings" in again.output


def test_compare_errors_are_one_line(tmp_path, setup, corpus):
    out = tmp_path / "cmp"
    for extra, message in [
        (["--top", "0"], "--top"),
        (["--steps", "0"], "--steps"),
        (["--device", "cuda"], "CUDA"),
    ]:
        result = CliRunner().invoke(app, args(setup, corpus, out, *extra))
        assert result.exit_code == 1 and message in result.output and not out.exists(), result.output
    teacher, _ = setup
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"candidates": [{"rank": 1, "ffn": 32}]}))
    result = CliRunner().invoke(app, args((teacher, bad), corpus, out))
    assert result.exit_code == 1 and "--scores" in result.output and not out.exists()
    result = CliRunner().invoke(app, args((teacher, tmp_path / "none.json"), corpus, out))
    assert result.exit_code == 1 and "no such candidates file" in result.output


def test_compare_refuses_torchrun(tmp_path, setup, corpus, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(app, args(setup, corpus, tmp_path / "cmp"))
    assert result.exit_code == 1 and "without torchrun" in result.output and not (tmp_path / "cmp").exists()


@pytest.mark.slow
def test_killed_compare_picks_up_where_it_stopped(tmp_path, setup, corpus):
    out = tmp_path / "cmp"
    argv = args(setup, corpus, out, "--steps", "12", "--save-every", "2")
    command, env = [sys.executable, "-m", "minitron", *argv], subprocess_env()
    # Stopped after the 8th checkpoint: candidate 1's six (steps 2 .. 12), then candidate 2's steps 2 and 4.
    flag = tmp_path / "paused"
    paused = paused_command(argv, "minitron.distill.rundir:RunDir.save", 8, flag)
    proc = subprocess.Popen(paused, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_flag(flag, proc)
    assert (out / "rank-2" / "checkpoints" / "latest").read_text().strip() == "step-00000004"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first_final = (out / "rank-1" / "final" / "model.safetensors").stat().st_mtime_ns
    assert not (out / "rank-2" / "final").exists() and not (out / "compare.json").exists()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "rank-1" / "final" / "model.safetensors").stat().st_mtime_ns == first_final  # not redone
    metrics = [json.loads(line) for line in (out / "rank-2" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in metrics if "eval_kd" in r] == [0, 12]  # resumed, not restarted
    assert len(json.loads((out / "compare.json").read_text())["candidates"]) == 2


def test_compare_and_report_show_the_memory_the_candidate_was_searched_at(tmp_path, setup, corpus):
    """The memory column of compare and of the run report is the candidates file's figure at the searched
    context (8k here), never a re-estimate at a default context."""
    from types import SimpleNamespace

    from minitron.pipeline.report import _markdown
    from minitron.units import format_bytes

    teacher, _ = setup
    searched_dir = tmp_path / "search"
    result = CliRunner().invoke(app, [
        "search", str(teacher), "--no-eval", "--budget", "1GiB", "--context", "8k", "--out", str(searched_dir),
        "--drop-blocks", "1", "--hidden", "source", "--ffn", "source", "--mamba-heads", "source",
        "--mamba-head-dim", "source",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    candidates = json.loads((searched_dir / "candidates.json").read_text())
    assert candidates["serving"]["context_tokens"] == 8192
    searched = candidates["candidates"][0]["memory"]["total_bytes"]
    arch = resolve_model(str(teacher)).architecture.drop_blocks([1])
    assert searched == ServingSpec(context_tokens=8192).memory(arch).total_bytes
    assert searched != ServingSpec().memory(arch).total_bytes  # the 128k default would differ

    out = tmp_path / "cmp"
    result = CliRunner().invoke(
        app,
        args((teacher, searched_dir / "candidates.json"), corpus, out, "--steps", "2"),
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    compared = json.loads((out / "compare.json").read_text())
    assert [r["memory_bytes"] for r in compared["candidates"]] == [searched]
    assert format_bytes(searched) in result.output  # the rich table's memory column

    config = SimpleNamespace(out=tmp_path, teacher=str(teacher), source=None, eval_tasks=None)
    evaluation = {"heldout": {"sequences": 1, "seq_len": 8},
                  "models": {"teacher": {"params": 1, "loss": 1.0, "path": "t", "generations": []}}}  # fmt: skip
    report = _markdown(config, None, evaluation, candidates, compared, [], {})
    assert "memory at 8,192 tokens (bytes)" in report
    assert report.count(f"| {searched:,} |") == 2  # the search table and the compare table


def test_compare_reports_one_tracker_run_per_candidate_grouped_together(tmp_path, setup, corpus, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "compare-test")
    MlflowClient().create_experiment("compare-test", artifact_location=(tmp_path / "artifacts").as_uri())
    out = tmp_path / "cmp"
    result = CliRunner().invoke(
        app, args(setup, corpus, out, "--steps", "2", "--report-to", "mlflow,tensorboard")
    )
    assert result.exit_code == 0, result.output
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("compare-test").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["rank-1", "rank-2"]
    assert {r.data.tags["minitron.group"] for r in runs} == {"cmp"}
    for run in runs:
        metrics = [
            json.loads(line) for line in (out / run.info.run_name / "metrics.jsonl").read_text().splitlines()
        ]
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval_kd"))
        assert history == [(r["step"], r["eval_kd"]) for r in metrics if "eval_kd" in r]  # float64, exactly
        assert any((out / run.info.run_name / "tensorboard").glob("events.out.tfevents.*"))
    # The trackers are not part of the comparison's settings: the same compare continues without them.
    again = CliRunner().invoke(app, args(setup, corpus, out, "--steps", "2"))
    assert again.exit_code == 0, again.output
