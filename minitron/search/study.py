"""The Optuna study: storage, sampler, settings check, and the worker loop (ask / evaluate / tell).

Storage: Optuna's journal file (`OUT/study.journal`, safe for several processes on one machine) by
default, or any RDB URL (`sqlite:///s.db`, `postgresql://...`) for several machines. The study
remembers the settings it was created with and refuses to continue under others.

Every trial proposes a point of the space. A point over the budget is told back at once as
infeasible (never evaluated; its `Trial.set_constraint` value ranks it below every feasible one),
so the hard budget holds even though Optuna constraints are soft. Trials left RUNNING by a dead
worker go back into the queue behind points already enqueued. A feasible point is claimed by
its architecture key with an exclusive file (`OUT/claims/`): the first claimant evaluates, any later
trial with the same architecture waits for it and copies its values, so no architecture is
evaluated twice, whichever worker proposes it. Trials left RUNNING by a dead worker on this machine
(its process is gone) are failed and their points enqueued again on the next start.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minitron.errors import MinitronError
from minitron.model.axes import depth_axis, width_names
from minitron.runs import differences, short_json
from minitron.search.frontier import Constraint, Point
from minitron.search.space import DepthOption, SearchSpace

STUDY_NAME = "minitron-search"
JOURNAL_FILE = "study.journal"
INFEASIBLE_VALUE = 1e9  # objective told for a point over the budget (never evaluated)
MAX_IDLE_ASKS = 200  # proposals in a row that were infeasible or already known before giving up


def open_storage(storage: str | None, out: Path):
    """Optuna storage for `--storage` (None: the journal file in `out`); one error line if it cannot open."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    try:
        if storage is None or "://" not in storage:
            path = Path(storage) if storage else out / JOURNAL_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        return RDBStorage(storage)
    except (OSError, ImportError, ValueError, optuna.exceptions.OptunaError, Exception) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MinitronError(f"--storage: cannot open {storage or out / JOURNAL_FILE} ({first})") from None


def make_sampler(seed: int, two_objectives: bool, worker: int):
    import optuna

    # Each worker draws from its own stream, or parallel workers would propose the same points.
    seed = seed + 1000 * worker
    if two_objectives:
        return optuna.samplers.NSGAIISampler(seed=seed)
    # Budget violations reach the samplers through Trial.set_constraint (feasible trials rank first).
    return optuna.samplers.TPESampler(multivariate=True, constant_liar=True, seed=seed, n_startup_trials=10)


def open_study(storage, settings: dict[str, Any], two_objectives: bool, sampler, where: str):
    """Create or load the study; refuse one created with other settings (naming what differs)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["minimize", "maximize"] if two_objectives else ["minimize"]
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=STUDY_NAME,
            directions=directions,
            sampler=sampler,
            load_if_exists=True,
        )
    except ValueError as e:  # e.g. a study of the same name with other directions
        raise MinitronError(f"study in {where} cannot be used: {e}") from None
    before = study.user_attrs.get("settings")
    changed = [] if before is None else differences(before, settings)
    if before is None:
        study.set_user_attr("settings", settings)
    elif changed:
        parts = [f"{k} (was {short_json(before.get(k))}, now {short_json(settings.get(k))})" for k in changed]
        raise MinitronError(
            f"the study in {where} was created with other settings: {'; '.join(parts)}; "
            "use another --out/--storage or the same settings"
        )
    return study


# ---- points <-> trial parameters ----------------------------------------------------------------
@dataclass(frozen=True)
class TrialSpace:
    """How a point of the space is spelled as Optuna parameters (only axes with a choice)."""

    space: SearchSpace

    def depth_by_layers(self) -> dict[int, DepthOption]:
        n = self.space.source.n_blocks
        return {n - sum(d.counts): d for d in self.space.depth}

    def suggest(self, trial) -> Point:
        params: dict[str, int] = {}
        depth = self.depth_by_layers()
        layers = sorted(depth, reverse=True)
        chosen = _suggest(trial, depth_axis().name, tuple(layers)) if len(layers) > 1 else layers[0]
        for axis, values in self.space.width.items():
            params[axis] = _suggest(trial, axis, values) if len(values) > 1 else values[0]
        return Point(depth[chosen], **params)

    def params(self, point: Point) -> dict[str, int]:
        """The Optuna parameters of `point` (for enqueue_trial)."""
        out = {}
        if len(self.space.depth) > 1:
            out[depth_axis().name] = self.space.source.n_blocks - sum(point.depth.counts)
        for axis, values in self.space.width.items():
            if len(values) > 1:
                out[axis] = getattr(point, axis)
        return out


def _suggest(trial, name: str, values: tuple[int, ...]) -> int:
    """An int parameter over `values` (largest first): a stepped range when they are evenly spaced."""
    steps = {values[i] - values[i + 1] for i in range(len(values) - 1)}
    if len(steps) == 1:
        return trial.suggest_int(name, values[-1], values[0], step=steps.pop())
    return trial.suggest_categorical(name, list(values))


# ---- claims: one evaluation per architecture ----------------------------------------------------
class Claims:
    """Exclusive claim files, one per architecture key; the file holds the claiming trial's number."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.directory / hashlib.sha256(key.encode()).hexdigest()[:24]

    def claim(self, key: str, number: int) -> int:
        """The number of the trial that owns `key`: `number` if this call claimed it."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            for _ in range(100):  # the claimant writes its number right after creating the file
                text = path.read_text().strip()
                if text:
                    return int(text)
                time.sleep(0.01)
            return -1
        with os.fdopen(fd, "w") as f:
            f.write(str(number))
        return number

    def take_over(self, key: str, number: int) -> None:
        """Replace the claim of a failed owner (atomic rename)."""
        from minitron.atomic import write_text

        write_text(self._path(key), str(number))


# ---- the worker loop ----------------------------------------------------------------------------
def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dead_trials(study, trial_space: TrialSpace) -> int:
    """Fail trials left RUNNING by a worker process of this machine that no longer exists; enqueue
    their points again. Returns how many were recovered."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    recovered = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker")
        if not owner:
            continue
        owner_host, _, pid = owner.rpartition(":")
        if owner_host != host or _alive(int(pid)):
            continue
        try:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except Exception:  # another process recovered it first
            continue
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        recovered += 1
    return recovered


def evaluated_trials(study) -> list:
    from optuna.trial import TrialState

    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("evaluated")
    ]


def _in_progress(study) -> int:
    from optuna.trial import TrialState

    return sum(
        1
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.user_attrs.get("claimed")
    )


@dataclass
class WorkerResult:
    evaluated: int = 0
    infeasible: int = 0
    duplicates: int = 0
    stopped: str = ""


def run_worker(
    study,
    trial_space: TrialSpace,
    constraint: Constraint,
    claims: Claims,
    evaluate: Callable[[Point], list[float]],
    trials: int,
    feasible: int,
    timeout_s: float | None,
    on_trial: Callable[[int], None] | None = None,
) -> WorkerResult:
    """Ask, check the budget, claim, evaluate, tell; until `trials` architectures are evaluated."""
    from optuna.trial import TrialState

    result = WorkerResult()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    space = trial_space.space
    n_values = len(study.directions)
    idle = 0
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            result.stopped = "timeout"
            break
        done = len(evaluated_trials(study))
        if done + _in_progress(study) >= min(trials, feasible):
            result.stopped = "trials" if done < feasible else "space exhausted"
            break
        if idle >= MAX_IDLE_ASKS:
            result.stopped = f"{MAX_IDLE_ASKS} proposals in a row were over the budget or already evaluated"
            break
        trial = study.ask()
        trial.set_user_attr("worker", worker_id())
        point = trial_space.suggest(trial)
        arch = space.arch(point.depth, **point.sizes())
        violation = constraint.violation(arch)
        if violation is not None:
            excess = constraint.memory(arch).total_bytes - constraint.usable_bytes
            trial.set_constraint("excess_gib", max(excess / 2**30, 1e-6))
            trial.set_user_attr("infeasible", violation)
            study.tell(trial, [INFEASIBLE_VALUE] + [0.0] * (n_values - 1))
            result.infeasible += 1
            idle += 1
            continue
        key = point.key()
        trial.set_user_attr("arch", key)
        owner = claims.claim(key, trial.number)
        if owner != trial.number:
            values = _wait_for(study, owner)
            if values is not None:
                trial.set_user_attr("duplicate_of", owner)
                study.tell(trial, values)
                result.duplicates += 1
                idle += 1
                continue
            claims.take_over(key, trial.number)  # the owner failed: evaluate here
        trial.set_user_attr("claimed", True)
        trial.set_constraint("excess_gib", 0.0)
        idle = 0
        try:
            values = evaluate(point)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        trial.set_user_attr("evaluated", True)
        trial.set_user_attr("point", point_record(point))
        study.tell(trial, values)
        result.evaluated += 1
        if on_trial is not None:
            on_trial(len(evaluated_trials(study)))
    return result


def _wait_for(study, number: int, poll_s: float = 0.2) -> list[float] | None:
    """Values of trial `number` once it finishes; None when it failed (or never existed)."""
    from optuna.trial import TrialState

    while True:
        trials = study.get_trials(deepcopy=False)
        if not 0 <= number < len(trials):
            return None
        trial = trials[number]
        if trial.state == TrialState.COMPLETE:
            return list(trial.values)
        if trial.state != TrialState.RUNNING:
            return None
        owner = trial.user_attrs.get("worker", "")
        host, _, pid = owner.rpartition(":")
        if host == socket.gethostname() and pid and not _alive(int(pid)):
            return None
        time.sleep(poll_s)


def point_record(point: Point) -> dict[str, Any]:
    return {
        "drop_blocks": list(point.depth.dropped) if point.depth.dropped is not None else None,
        "drop_counts": list(point.depth.counts),
        **point.sizes(),
    }


def point_from_record(record: dict[str, Any]) -> Point:
    dropped = record.get("drop_blocks")
    depth = DepthOption(tuple(dropped) if dropped is not None else None, tuple(record["drop_counts"]))
    return Point(depth, **{name: record[name] for name in width_names()})
