"""--report-to: every tracker, offline, holds the scalars of metrics.jsonl at their steps; resume continues it."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from minitron.cli import app
from minitron.data import DataSpec
from minitron.distill import TrainConfig, train
from minitron.distill.tracking import STATE_FILE, parse_report_to
from minitron.errors import MinitronError

ALL = "tensorboard,wandb,mlflow,trackio"


def config(corpus, out, **kw) -> TrainConfig:
    base = dict(
        data=DataSpec(source=str(corpus), seq_len=16, batch_size=4, heldout_fraction=0.1),
        out=str(out), steps=6, lr=3e-3, warmup_steps=2, eval_every=3, eval_batches=1, save_every=2,
        log_every=1, progress=False, report_to=ALL,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def offline_trackers(tmp_path, monkeypatch):
    """Every tracker writing to a local store under tmp_path, nothing over the network."""
    import trackio.sqlite_storage
    import trackio.utils

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")  # MLflow's local store
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "minitron-test")
    from mlflow import MlflowClient

    # An experiment with its artifacts under tmp_path too (the default root is ./mlruns in the cwd).
    MlflowClient().create_experiment("minitron-test", artifact_location=(tmp_path / "artifacts").as_uri())
    # Trackio reads TRACKIO_DIR once, at import.
    monkeypatch.setattr(trackio.sqlite_storage, "TRACKIO_DIR", tmp_path / "trackio")
    monkeypatch.setattr(trackio.utils, "TRACKIO_DIR", tmp_path / "trackio")
    return tmp_path


def metrics(out: Path, key: str) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r[key]) for r in records if key in r]


def tensorboard_series(out: Path, key: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(key)]


def wandb_segments(out: Path) -> list[tuple[str, list[dict]]]:
    """(run id, history rows) of each offline run directory, read from its .wandb log (LevelDB log format:
    7-byte file header, 32 KiB blocks, records with a 7-byte header: crc32, length, type)."""
    from wandb.proto import wandb_internal_pb2 as pb

    segments = []
    for path in sorted(out.glob("wandb/offline-run-*/run-*.wandb")):
        data, pos, pending, rows, run_id = path.read_bytes(), 7, b"", [], None
        while pos + 7 <= len(data):
            left = 32768 - pos % 32768
            _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
            if left < 7 or (length == 0 and kind == 0):
                pos += left
                continue
            pending, pos = pending + data[pos + 7 : pos + 7 + length], pos + 7 + length
            if kind in (1, 4):  # a full record, or the last piece of one
                record = pb.Record()
                record.ParseFromString(pending)
                pending = b""
                which = record.WhichOneof("record_type")
                if which == "history":
                    rows.append(
                        {
                            i.key or "/".join(i.nested_key): json.loads(i.value_json)
                            for i in record.history.item
                        }
                    )
                elif which == "run":
                    run_id = record.run.run_id
        segments.append((run_id, rows))
    return segments


def test_every_tracker_holds_the_metrics_and_resume_continues_the_same_run(
    offline_trackers, tmp_path, corpus, tokenizer, make_model
):
    from mlflow import MlflowClient
    from trackio.sqlite_storage import SQLiteStorage

    out = tmp_path / "run"
    stopped = train(config(corpus, out, stop_at_step=3), model=make_model(0), tokenizer=tokenizer)
    assert stopped.step == 3
    run_id = json.loads((out / STATE_FILE).read_text())["id"]
    train(config(corpus, out, resume=True), model=make_model(1), tokenizer=tokenizer)
    assert json.loads((out / STATE_FILE).read_text())["id"] == run_id

    loss, eval_loss, lr = metrics(out, "loss"), metrics(out, "eval_loss"), metrics(out, "lr")
    assert [s for s, _ in loss] == list(range(1, 7)) and [s for s, _ in eval_loss] == [0, 3, 6]

    for key, expected in (("loss", loss), ("eval_loss", eval_loss), ("lr", lr)):
        got = tensorboard_series(out, key)
        assert [s for s, _ in got] == [s for s, _ in expected]
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6)

    segments = wandb_segments(out)
    assert [rid for rid, _ in segments] == [run_id, run_id]  # the resumed run is the same wandb run
    rows = [r for _, seg in segments for r in seg]
    assert [(r["step"], r["loss"]) for r in rows if "loss" in r] == loss
    assert [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r] == eval_loss

    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("minitron-test").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["config.steps"] == "6"
    for key, expected in (("loss", loss), ("eval_loss", eval_loss)):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert history == expected  # float64, exactly

    (name,) = SQLiteStorage.get_runs("minitron")
    assert name.endswith(run_id)
    logs = SQLiteStorage.get_logs("minitron", name)
    assert [(r["step"], r["loss"]) for r in logs if "loss" in r] == loss
    assert SQLiteStorage.get_run_config("minitron", name)["config"]["steps"] == 6


def test_unknown_or_missing_tracker_is_one_line_before_any_work(tmp_path, monkeypatch):
    with pytest.raises(MinitronError, match="unknown tracker comet"):
        parse_report_to("tensorboard,comet")
    assert parse_report_to("none") == () and parse_report_to("wandb, wandb") == ("wandb",)

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    out = tmp_path / "never"
    result = CliRunner().invoke(
        app, ["train", "tiny", "--report-to", "wandb", "--out", str(out), "--steps", "1"]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: --report-to wandb: not installed; pip install wandb (or 'minitron[track]')"
    ]
    assert not out.exists()


def test_report_to_is_a_run_file_key_of_every_training_stage():
    from minitron.cli_options import stage_options
    from minitron.pipeline.config import resolve

    config = resolve({"teacher": "tiny", "report-to": "tensorboard,wandb"}, stage_options(app))
    assert (
        config.stages["distill"]["report_to"] == config.stages["compare"]["report_to"] == "tensorboard,wandb"
    )
    assert "report_to" not in config.stages["prune"]


def test_tensorboard_resume_drops_what_a_killed_run_logged_after_its_checkpoint(tmp_path):
    from minitron.distill.tracking import open_trackers

    out = tmp_path / "run"
    killed = open_trackers("tensorboard", out, {"steps": 6}, resume_step=None)
    for step in range(1, 6):  # logged through step 5, checkpointed at step 3, then killed
        killed.log({"step": step, "loss": float(step)})
    killed.finish(failed=True)
    resumed = open_trackers("tensorboard", out, {"steps": 6}, resume_step=3)
    for step in range(4, 7):
        resumed.log({"step": step, "loss": 10.0 * step})
    resumed.finish()
    assert tensorboard_series(out, "loss") == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0), (6, 60.0)]
