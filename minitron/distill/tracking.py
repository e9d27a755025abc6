"""Experiment trackers (`--report-to`): the scalars of metrics.jsonl, mirrored where a team already looks.

`--report-to` is `none` or a comma-separated list of TRACKERS. Each tracker is a small class with
`log(values, step)` and `finish(failed)` over that tracker's own library (optional extras:
`pip install 'minitron[track]'`):

    tensorboard   event files in <out>/tensorboard (torch.utils.tensorboard)
    wandb         Weights & Biases; WANDB_MODE=offline, WANDB_PROJECT, WANDB_DIR as usual (default project: minitron)
    mlflow        MLflow; MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME as usual (default experiment: minitron)
    trackio       Trackio's local store (TRACKIO_DIR) or Space; project minitron

Every record the trainer writes to metrics.jsonl is logged at its step, and the run's resolved
config once. The run's identity (a random id chosen when the run starts) is kept in
<out>/tracking.json, so a resumed run continues the same tracker run: the same wandb id
(resume="allow"), the same MLflow run_id, the same TensorBoard directory with the steps after the
checkpoint purged, the same Trackio run name (resume="allow"). Runs given a `group` (compare's
candidates) are grouped: wandb `group`, Trackio `group`, the MLflow tag `minitron.group`, and for
TensorBoard one directory per candidate under the compare directory.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import secrets
from pathlib import Path
from typing import Any, Protocol

from minitron.atomic import write_json
from minitron.errors import MinitronError

PROJECT = "minitron"
STATE_FILE = "tracking.json"
GROUP_TAG = "minitron.group"


def parse_report_to(value: str) -> tuple[str, ...]:
    """The trackers `--report-to` names (`none` -> none); unknown or not installed is one error line."""
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    if names in ([], ["none"]):
        return ()
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise MinitronError(
            f"--report-to {value}: unknown tracker {', '.join(unknown)} (choose none or {', '.join(TRACKERS)})"
        )
    missing = [n for n in names if importlib.util.find_spec(TRACKERS[n].package) is None]
    if missing:
        packages = " ".join(TRACKERS[n].package for n in missing)
        raise MinitronError(
            f"--report-to {','.join(missing)}: not installed; pip install {packages} (or 'minitron[track]')"
        )
    return tuple(dict.fromkeys(names))


class Tracker(Protocol):
    package: str  # the library it needs (what pip installs)

    def __init__(self, run: _Run) -> None: ...

    def log(self, values: dict[str, float], step: int) -> None: ...

    def finish(self, failed: bool) -> None: ...


class Trackers:
    """The trackers of one run; `log(record)` takes a metrics.jsonl record (with its `step`)."""

    def __init__(self, trackers: list[Tracker]):
        self.trackers = trackers

    def log(self, record: dict[str, Any]) -> None:
        values = {k: float(v) for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
        for tracker in self.trackers:
            tracker.log(values, int(record["step"]))

    def finish(self, failed: bool = False) -> None:
        for tracker in self.trackers:
            tracker.finish(failed)
        self.trackers = []


def open_trackers(
    report_to: str, out: Path, config: dict[str, Any], resume_step: int | None, group: str | None = None
) -> Trackers:
    """Start (or, with `resume_step`, continue after that step) the tracker runs of the run in `out`."""
    names = parse_report_to(report_to)
    if not names:
        return Trackers([])
    state_path = out / STATE_FILE
    state = json.loads(state_path.read_text()) if resume_step is not None and state_path.is_file() else {}
    if not state:
        state = {"id": secrets.token_hex(4), "name": out.resolve().name, "group": group}
        out.mkdir(parents=True, exist_ok=True)
        write_json(state_path, state)
    run = _Run(out, state["id"], state["name"], state.get("group"), config, resume_step)
    opened: list[Tracker] = []
    try:
        for name in names:
            try:
                opened.append(TRACKERS[name](run))
            except Exception as e:  # each library raises its own types (no server, bad URI, no login)
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise MinitronError(f"--report-to {name}: cannot start a run ({first})") from None
    except BaseException:
        Trackers(opened).finish(failed=True)
        raise
    return Trackers(opened)


class _Run:
    """What every tracker needs to know of the run."""

    def __init__(self, out, run_id, name, group, config, resume_step):
        self.out, self.id, self.name, self.group = out, run_id, name, group
        self.config, self.resume_step = config, resume_step

    @property
    def resumed(self) -> bool:
        return self.resume_step is not None


class TensorBoardTracker:
    package = "tensorboard"

    def __init__(self, run: _Run):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step hides what a killed run logged after its checkpoint: the resumed run logs it again.
        purge = run.resume_step + 1 if run.resumed else None
        self.writer = SummaryWriter(log_dir=str(run.out / "tensorboard"), purge_step=purge)
        if not run.resumed:
            self.writer.add_text("config", "```\n" + json.dumps(run.config, indent=2) + "\n```", 0)

    def log(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def finish(self, failed: bool) -> None:
        self.writer.close()


class WandbTracker:
    package = "wandb"

    def __init__(self, run: _Run):
        import wandb

        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", PROJECT), id=run.id, name=run.name, group=run.group,
            resume="allow", dir=str(run.out), config=run.config,
        )  # fmt: skip
        # Our step is a metric of its own, so a resumed run may log a step again (wandb's _step only rises).
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log({**values, "step": step})

    def finish(self, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class MlflowTracker:
    package = "mlflow"

    def __init__(self, run: _Run):
        from mlflow import MlflowClient

        self.client = MlflowClient()
        experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT)
        experiment = self.client.get_experiment_by_name(experiment_name)
        experiment_id = (
            experiment.experiment_id if experiment else self.client.create_experiment(experiment_name)
        )
        found = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`minitron.id` = '{run.id}'", max_results=1
        )
        if found:
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            tags = {"minitron.id": run.id, **({GROUP_TAG: run.group} if run.group else {})}
            self.run_id = self.client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id
            self._log_config(run.config)

    def _log_config(self, config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_dict(self.run_id, config, "train_config.json")
        params = [Param(k, str(v)[:6000]) for k, v in _flatten(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def log(self, values: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in values.items() if math.isfinite(v)]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, failed: bool) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


class TrackioTracker:
    package = "trackio"

    def __init__(self, run: _Run):
        import trackio

        # Trackio finds a run again by its name: the id keeps two runs called `distill` apart.
        self.run = trackio.init(
            project=PROJECT, name=f"{run.name}-{run.id}", group=run.group, config=run.config,
            resume="allow" if run.resumed else "never", embed=False,
        )  # fmt: skip

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def finish(self, failed: bool) -> None:
        self.run.finish()


# `--report-to` name -> tracker: the one list of trackers.
TRACKERS: dict[str, type[Tracker]] = {
    "tensorboard": TensorBoardTracker,
    "wandb": WandbTracker,
    "mlflow": MlflowTracker,
    "trackio": TrackioTracker,
}


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
