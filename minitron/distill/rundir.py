"""A training run's directory: what run it holds, how it resumes, and how it finishes.

    train_config.json   the run header: resolved config, objective, data description, model provenance
    metrics.jsonl       one JSON record per logged step ("loss") and per evaluation ("eval_loss")
    checkpoints/        the latest resumable checkpoint (see checkpoint.py)
    final/              the trained model as a Hugging Face checkpoint (float32), with its tokenizer,
                        train_config.json, minitron.json (provenance and losses) and loss_curves.png
    result.json         the outcome (TrainResult)

Its identity is the run header (less what may change without changing the result: `RESUME_FREE`)
and, in each checkpoint, the objective, its settings and the teacher's fingerprint. `--resume`
refuses a checkpoint of another run, naming what differs; the same command again on its own --out
continues it. Rank 0 alone writes the header, metrics, checkpoints' metadata and the final model.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from minitron.atomic import json_text, make_temp_dir, replace_dir, write_json, write_png, write_text
from minitron.data import describe
from minitron.distill.card import write_run_card
from minitron.distill.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_sharded,
    save_checkpoint,
    set_rng_state,
)
from minitron.distill.kd import unwrap
from minitron.distill.tracking import Trackers, open_trackers
from minitron.errors import MinitronError
from minitron.parallel import barrier, rank_and_world
from minitron.runs import changes, differences

HEADER = "train_config.json"
METRICS = "metrics.jsonl"
# Config fields that may change between an interrupted run and its resumption without changing the
# result. `steps` may change too: with the WSD schedule, a run resumed inside its stable phase with a
# new length ends exactly as a run asked for that length from the start. `out` too: a run directory
# moved elsewhere is the same run.
RESUME_FREE = ("resume", "stop_at_step", "progress", "eval_every", "save_every", "log_every", "model",
               "steps", "tokens", "report_to", "command", "out",
               "gradient_checkpointing")  # fmt: skip
FRESH = {"step": 0, "tokens": 0, "elapsed_s": 0.0, "data": None}


def config_json(config) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config)))


class RunDir:
    """The run directory `out` of a training run of `config` on `objective`."""

    def __init__(
        self,
        out: Path,
        config,
        objective,
        model_info: dict[str, Any],
        provenance,
        world: int,
        group: str | None = None,
    ):
        self.out, self.config, self.group = out, config, group
        self.trackers = Trackers([])
        describe_objective = getattr(objective, "describe", None)
        settings = describe_objective() if describe_objective else None
        self.header = {
            "config": config_json(config),
            "world_size": world,
            "global_batch_sequences": config.data.batch_size * config.grad_accum * world,
            "objective": objective.name,
            **({"objective_settings": settings} if describe_objective else {}),
            "data": describe(config.data),
            "model": model_info,
            **({"provenance": provenance} if provenance else {}),
        }
        teacher = (provenance or {}).get("teacher") or {}
        # What else a resumed run must share with its checkpoint: the objective, its settings, the teacher.
        self.identity = json.loads(json.dumps(
            {"objective": objective.name, "objective_settings": settings, "teacher": teacher.get("fingerprint")}
        ))  # fmt: skip
        self.created = not out.exists()
        self.main = rank_and_world()[0] == 0

    # ---- identity and resumption -----------------------------------------------------------------

    def holds_this_run(self) -> bool:
        """True when `out` holds a checkpointed run started by this very command: same settings, model,
        data, objective and teacher (what its header records; the process count may differ)."""
        path = self.out / HEADER
        if not path.is_file() or latest_checkpoint(self.out) is None:
            return False
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        now = json.loads(json_text(self.header))
        student = (now.get("provenance") or {}).get("student_source") or {}
        if not (now["model"].get("fingerprint") or student.get("fingerprint")):
            return False  # an in-memory model: nothing says its weights are the ones the run started from
        for header in (saved, now):
            header["config"] = {
                k: v
                for k, v in header.get("config", {}).items()
                if k not in ("resume", "progress", "report_to", "command", "out")
            }
        return not differences(saved, now, ignore=("world_size", "global_batch_sequences"))

    def start(self, wrapped, optimizer, scheduler) -> dict[str, Any]:
        """Where training starts: step 0 of a fresh run, or the latest checkpoint's state (loaded into
        the model, optimizer, scheduler and RNGs) with `config.resume`."""
        checkpoint = latest_checkpoint(self.out) if self.out.exists() else None
        if not self.config.resume:
            if checkpoint is not None or (self.out / "final").exists():
                raise MinitronError(
                    f"--out {self.out} already holds a run; pass --resume or choose another --out"
                )
            return dict(FRESH)
        if checkpoint is None:
            raise MinitronError(f"--resume: no checkpoint in {self.out}")
        state = load_checkpoint(checkpoint)
        now = config_json(self.config)
        saved = {k: state["config"].get(k) for k in now}
        changed = differences(saved, now, ignore=RESUME_FREE, deep=True)
        if changed:
            raise MinitronError(
                f"--resume with different settings than the checkpoint ({changes(saved, now, changed)})"
            )
        saved_identity = state.get("identity", {})
        changed = differences(saved_identity, self.identity, deep=True)
        if changed:
            raise MinitronError(f"--resume with a different {' and '.join(changed)} than the checkpoint "
                                f"({changes(saved_identity, self.identity, changed)})")  # fmt: skip
        if "data" not in state:
            raise MinitronError(f"{checkpoint}: holds no data position (damaged, or written before checkpoints "
                                "kept the data stream's state); start the run again in another --out")  # fmt: skip
        if self.config.fsdp:
            load_sharded(checkpoint, wrapped, optimizer)
        else:
            unwrap(wrapped).load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        return {k: state[k] for k in FRESH}

    def discard_if_new(self) -> None:
        """A fresh run that failed before its first checkpoint leaves nothing behind."""
        if self.created and self.main and latest_checkpoint(self.out) is None:
            shutil.rmtree(self.out, ignore_errors=True)

    # ---- while training --------------------------------------------------------------------------

    def open(self, fresh: bool, keep_through_step: int) -> Metrics:
        """Write the header of a fresh run; the metrics file, cut back to `keep_through_step` on resume,
        also logged to the run's experiment trackers (`--report-to`)."""
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            if fresh:
                write_json(self.out / HEADER, self.header)
            resume_step = keep_through_step if keep_through_step >= 0 else None
            self.trackers = open_trackers(
                self.config.report_to, self.out, self.header, resume_step, self.group
            )
        barrier()
        return Metrics(self.out / METRICS, keep_through_step, enabled=self.main, trackers=self.trackers)

    def close(self, failed: bool) -> None:
        """End the tracker runs (marked failed when the run stopped on an error)."""
        self.trackers.finish(failed)

    def save(self, step: int, wrapped, optimizer, meta: dict[str, Any]) -> None:
        """Checkpoint `step`: rank 0 writes the state; under FSDP2 every rank writes its shards (DCP)."""
        meta = {**meta, "config": config_json(self.config), "identity": self.identity}
        if self.config.fsdp:
            save_checkpoint(self.out, step, meta, sharded=(wrapped, optimizer))
        elif self.main:
            state = {"model": unwrap(wrapped).state_dict(), "optimizer": optimizer.state_dict()}
            save_checkpoint(self.out, step, {**meta, **state})
        barrier()

    # ---- finishing -------------------------------------------------------------------------------

    def finish(self, wrapped, tokenizer) -> Path:
        """The model as a Hugging Face checkpoint in final/ with its tokenizer, header, provenance and
        loss curves. Under FSDP2 every rank takes part in gathering the full state dict; rank 0 writes."""
        state = None
        if self.config.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            state = get_model_state_dict(
                wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
            )
        final = self.out / "final"
        if self.main:
            tmp = make_temp_dir(prefix=".final-", dir=self.out)
            with replace_dir(tmp, final):
                unwrap(wrapped).save_pretrained(tmp, state_dict=state)
                tokenizer.save_pretrained(tmp)
                shutil.copyfile(self.out / HEADER, tmp / HEADER)
                self._write_provenance(tmp)
                write_run_card(tmp, title=self.out.resolve().name)
        barrier()
        return final

    def write_result(self, result) -> None:
        if self.main:
            fields = dataclasses.asdict(result)
            write_json(
                self.out / "result.json", {k: str(v) if isinstance(v, Path) else v for k, v in fields.items()}
            )

    def _write_provenance(self, final: Path) -> None:
        """minitron.json (where the model came from, how it was trained, its losses) and loss_curves.png."""
        from minitron import __version__

        header = json.loads((self.out / HEADER).read_text())
        records = [json.loads(line) for line in (self.out / METRICS).read_text().splitlines()]
        train_records = [r for r in records if "loss" in r]
        evals = [r for r in records if "eval_loss" in r]
        last = train_records[-1] if train_records else {}
        write_json(final / "minitron.json", {
            "minitron_version": __version__,
            "stage": header["objective"],
            "model": header["model"],
            **({"provenance": header["provenance"]} if "provenance" in header else {}),
            "data": header["data"],
            "steps": last.get("step"),
            "tokens": last.get("tokens"),
            "train": {k: v for k, v in last.items() if k not in ("step", "tokens")},
            "heldout_before": evals[0] if evals and evals[0]["step"] == 0 else None,
            "heldout_after": evals[-1] if evals else None,
        })  # fmt: skip
        plot_loss_curves(records, final / "loss_curves.png", header["objective"])


class Metrics:
    """Append-only JSONL; on resume, records after the checkpoint (from the lost tail) are dropped.
    Every record also goes to the run's experiment trackers."""

    def __init__(
        self, path: Path, keep_through_step: int, enabled: bool = True, trackers: Trackers | None = None
    ):
        self.path, self.enabled, self.trackers = path, enabled, trackers
        if enabled and path.exists():
            kept = [
                line
                for line in path.read_text().splitlines()
                if json.loads(line)["step"] <= keep_through_step
            ]
            write_text(path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
            if self.trackers is not None:
                self.trackers.log(record)


def plot_loss_curves(records: list[dict[str, Any]], path: Path, objective_name: str) -> Path:
    """Training loss and every held-out curve against tokens, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    train_records = [r for r in records if "loss" in r]
    ax.plot(
        [r["tokens"] for r in train_records],
        [r["loss"] for r in train_records],
        label=f"train {objective_name}",
    )
    evals = [r for r in records if "eval_loss" in r]
    for key in sorted({k for r in evals for k in r if k.startswith("eval_")}):
        points = [(r["tokens"], r[key]) for r in evals if key in r]
        ax.plot(*zip(*points, strict=True), marker="o", label=key.replace("eval_", "held-out "))
    ax.set_xlabel("tokens")
    ax.set_ylabel("nats / token")
    ax.grid(alpha=0.3)
    ax.legend()
    return write_png(path, fig)
