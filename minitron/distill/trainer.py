"""The training loop: AdamW, warm-up + cosine/WSD, clipping, accumulation, evaluation, checkpoints.

`train(config, objective=...)` minimises any `Objective` (next-token cross-entropy by default) and
writes into `config.out`:

    train_config.json   resolved config, data description, model provenance
    metrics.jsonl       one JSON record per logged step ("loss") and per evaluation ("eval_loss")
    checkpoints/        the latest resumable checkpoint (see checkpoint.py)
    final/              the trained model as a Hugging Face checkpoint (float32), with its tokenizer

One optimizer step consumes the global batch: batch_size x grad_accum x world size sequences (world
size 1 without torchrun). Under torchrun every rank reads the same shuffled stream and keeps its own
share of each step's micro-batches, data parallel (DDP) or sharded (FSDP2 `fully_shard`, `fsdp=True`);
gradients are synchronised once per optimizer step and the loss of every micro-batch is divided by
the real tokens of the whole global batch, so any split of the global batch gives the gradient of one
big batch. Rank 0 alone writes metrics, checkpoints' metadata and the final model.

Epochs over the data repeat with the shuffle seed advanced by one each time, so a run may be longer
than one pass over its corpus. `resume=True` continues from the latest checkpoint with the same
weights, optimizer, schedule, RNG and data position (restored in O(1) from the data stream's state),
so an interrupted-and-resumed run ends with the weights an uninterrupted run would have.

Faults: a non-finite loss or gradient stops the run before the step is applied, keeping the last
good checkpoint; Ctrl-C writes a checkpoint of the last finished step and re-raises; a fresh run that
fails before its first checkpoint removes the run directory it created.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from minitron.atomic import atomic_path, json_text, make_temp_dir, write_json, write_text
from minitron.data import BatchStream, DataSpec, describe, token_batches
from minitron.device import autocast as precision_autocast
from minitron.device import check_precision, resolve_device
from minitron.distill.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_sharded,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from minitron.distill.kd import unwrap
from minitron.distill.objectives import NextTokenCE, Objective, loss_sums
from minitron.distill.schedule import SCHEDULES, lr_multiplier
from minitron.errors import MinitronError

# Too little text for one sequence: what train, distill and compare can change.
SHORT_DATA_HINT = "use more text, a shorter --seq-len or another --heldout-fraction"
# Fields that may change between an interrupted run and its resumption without changing the result.
# `steps` may change too: with the WSD schedule, a run resumed inside its stable phase with a new length
# ends exactly as a run asked for that length from the start.
_RESUME_FREE = {
    "resume",
    "stop_at_step",
    "progress",
    "eval_every",
    "save_every",
    "log_every",
    "model",
    "steps",
    "tokens",
    "gradient_checkpointing",
}


@dataclass(frozen=True)
class TrainConfig:
    """One training run. `steps` counts optimizer steps; each sees the global batch of
    batch_size x grad_accum x world size sequences. `tokens`, when set, replaces `steps`: the run
    takes as many steps as it needs to see that many tokens."""

    model: str = "tiny"
    data: DataSpec = field(default_factory=DataSpec)
    out: str = "runs/train"
    steps: int = 1000
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    schedule: str = "cosine"
    decay_fraction: float = 0.2
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    grad_accum: int = 1
    precision: str = "auto"
    seed: int = 0
    eval_every: int = 100
    eval_batches: int = 8
    save_every: int = 100
    log_every: int = 10
    device: str = "cpu"
    resume: bool = False
    stop_at_step: int | None = None
    progress: bool = True
    tokens: int | None = None
    fsdp: bool = False
    gradient_checkpointing: bool = False  # recompute each block in the backward: same result, less memory

    def __post_init__(self) -> None:
        for name in ("steps", "grad_accum", "eval_batches", "log_every"):
            if getattr(self, name) < 1:
                raise MinitronError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.tokens is not None and self.tokens < 1:
            raise MinitronError(f"--tokens must be positive, got {self.tokens}")
        for name in ("lr", "min_lr_ratio", "decay_fraction", "weight_decay", "grad_clip"):
            if not math.isfinite(getattr(self, name)):
                raise MinitronError(
                    f"--{name.replace('_', '-')} must be a finite number, got {getattr(self, name)}"
                )
        for name in ("eval_every", "save_every", "warmup_steps"):
            if getattr(self, name) < 0:
                raise MinitronError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise MinitronError(f"--lr must be positive, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise MinitronError(f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.schedule not in SCHEDULES:
            raise MinitronError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not 0 < self.decay_fraction <= 1:
            raise MinitronError(f"--decay-fraction must be in (0, 1], got {self.decay_fraction}")
        check_precision(self.precision)
        if self.grad_clip < 0:
            raise MinitronError(f"--grad-clip must be >= 0 (0 = off), got {self.grad_clip}")
        if self.stop_at_step is not None and not 0 < self.stop_at_step <= self.steps:
            raise MinitronError(f"--stop-at-step must be in 1..{self.steps}, got {self.stop_at_step}")

    @property
    def tokens_per_step(self) -> int:
        """Tokens per optimizer step in one process (multiply by the world size under torchrun)."""
        return self.grad_accum * self.data.batch_size * self.data.seq_len

    def total_steps(self, world: int = 1) -> int:
        if self.tokens is None:
            return self.steps
        return max(1, math.ceil(self.tokens / (self.tokens_per_step * world)))


@dataclass(frozen=True)
class TrainResult:
    out: Path
    step: int
    tokens: int
    train_loss: float
    eval_loss: float | None
    elapsed_s: float
    final: Path | None  # the saved model; None when stopped early by stop_at_step
    # Every held-out figure of the last evaluation, and what the loss was.
    eval_metrics: dict[str, float] = field(default_factory=dict)
    objective_name: str = NextTokenCE.name


def train(
    config: TrainConfig,
    objective: Objective | None = None,
    model: torch.nn.Module | None = None,
    tokenizer: Any = None,
    provenance: dict[str, Any] | None = None,
) -> TrainResult:
    """Train `model` (or the model `config.model` names) on `config.data`, minimising `objective`.

    `objective` defaults to next-token cross-entropy; distillation passes one that holds a teacher
    (objectives with a `setup(device, fsdp)` method get it called once the device is known).
    `provenance` is extra JSON stored in train_config.json (e.g. the teacher, the pruning source).
    """
    from minitron.importance.distributed import init_from_env, launched_distributed, rank_and_world

    objective = objective or NextTokenCE()
    out = Path(config.out).expanduser()
    device = resolve_device(config.device)
    if launched_distributed():
        init_from_env(str(device))
    rank, world = rank_and_world()
    if config.fsdp and world == 1:
        raise MinitronError("--fsdp shards over several processes: launch with torchrun --nproc-per-node N")
    total_steps = config.total_steps(world)
    if config.stop_at_step is not None and config.stop_at_step > total_steps:
        raise MinitronError(f"--stop-at-step must be in 1..{total_steps}, got {config.stop_at_step}")
    torch.manual_seed(config.seed)
    if model is None or tokenizer is None:
        model, tokenizer, model_info = _load(config)
    else:
        model_info = {"model": "in-memory", "params": sum(p.numel() for p in model.parameters())}
    model.to(device=device, dtype=torch.float32)
    if config.gradient_checkpointing:  # transformers 5.x renamed it; early 5.x releases have the old name only
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable({"use_reentrant": False})
    autocast = precision_autocast(config.precision, device)
    setup = getattr(objective, "setup", None)
    if setup is not None:
        setup(device, fsdp=config.fsdp)
    heldout = _heldout_batches(config, tokenizer)  # before anything is written: bad data fails cleanly
    wrapped = _wrap(model, config.fsdp, world, device)

    optimizer = torch.optim.AdamW(
        _param_groups(wrapped, config.weight_decay), lr=config.lr, betas=config.betas, fused=False
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_multiplier(
            step,
            total_steps=total_steps,
            warmup_steps=config.warmup_steps,
            schedule=config.schedule,
            min_ratio=config.min_lr_ratio,
            decay_fraction=config.decay_fraction,
        ),
    )
    created = not out.exists()
    identity = _identity(objective, provenance)
    if not config.resume and _same_run_again(out, config, objective, model_info, provenance):
        # The same command on its own --out (a rerun of a finished or killed command) continues it.
        if rank == 0:
            print(f"note: --out {out} holds this same run; continuing it (as --resume)", file=sys.stderr)
        config = dataclasses.replace(config, resume=True)
    start = _start_state(config, out, wrapped, optimizer, scheduler, identity)
    from minitron.plan.oom import explain_out_of_memory, training_plan

    stage, hint = ("distill" if getattr(objective, "teacher", None) is not None else "train"), "--resume continues"
    if "candidate" in (provenance or {}):
        stage, hint = f"compare (candidate {provenance['candidate']['rank']})", "the same compare command continues"
    try:
        with explain_out_of_memory(stage, lambda: training_plan(config, model, objective, world, device),
                                   lambda: latest_checkpoint(out) if out.exists() else None, hint):  # fmt: skip
            return _run(config, objective, wrapped, model, tokenizer, optimizer, scheduler, start, heldout,
                        autocast, device, out, total_steps, model_info, provenance, identity)  # fmt: skip
    except MinitronError:
        if created and rank == 0 and latest_checkpoint(out) is None:
            shutil.rmtree(out, ignore_errors=True)  # a fresh run that never checkpointed leaves nothing
        raise


def _run(config, objective, wrapped, model, tokenizer, optimizer, scheduler, start, heldout, autocast, device,
         out, total_steps, model_info, provenance, identity) -> TrainResult:  # fmt: skip
    from minitron.importance.distributed import rank_and_world

    rank, world = rank_and_world()
    main = rank == 0
    if main:
        _write_run_header(
            out, config, objective, model_info, provenance, fresh=start["step"] == 0, world=world
        )
    _barrier()
    metrics = _Metrics(
        out / "metrics.jsonl", keep_through_step=start["step"] if config.resume else -1, enabled=main
    )
    step, tokens, elapsed = start["step"], start["tokens"], start["elapsed_s"]
    if start["data"] is not None and "legacy" in start["data"]:
        stream = BatchStream.replayed(config.data, tokenizer, *start["data"]["legacy"])
    else:
        stream = BatchStream(config.data, tokenizer, start["data"], hint=SHORT_DATA_HINT)
    stop = config.stop_at_step or total_steps
    eval_metrics: dict[str, float] = {}
    loss_value = float("nan")
    t0 = time.perf_counter()
    run_tokens = 0

    def checkpoint_state(at_step: int, data_snapshot, rng) -> None:
        _save(out, at_step, wrapped, optimizer, config.fsdp, {
            "step": at_step, "tokens": tokens, "elapsed_s": elapsed + (time.perf_counter() - t0),
            "data": BatchStream.pack(data_snapshot), "scheduler": scheduler.state_dict(), "rng": rng, "config": _config_json(config), "identity": identity,
        })  # fmt: skip

    with _progress(config.progress and main, objective.name) as progress:
        task = progress.add_task("train", total=total_steps, completed=step, loss=float("nan"), tok_s=0.0)
        if step == 0 and config.eval_every:
            eval_metrics = _evaluate(wrapped, objective, heldout, autocast, device)
            metrics.write({"step": 0, "tokens": 0, **eval_metrics})
        while step < stop:
            # Where a checkpoint written now would restart: the start of the unfinished step.
            resume_point = (stream.snapshot(), rng_state())
            try:
                wrapped.train()
                optimizer.zero_grad(set_to_none=True)
                # The whole global batch: every rank reads it and keeps micro-batches rank, rank + world, ...
                micro = [next(stream) for _ in range(config.grad_accum * world)]
                global_count = sum(b.shape[0] * (b.shape[1] - 1) for b in micro)
                mine = micro[rank::world]
                totals: dict[str, torch.Tensor] = {}
                for i, batch in enumerate(mine):
                    batch = batch.to(device)
                    with _grad_sync(wrapped, config.fsdp, world, last=i == len(mine) - 1), autocast:
                        sums = loss_sums(objective, wrapped, batch)
                        # DDP and FSDP2 average gradients over ranks; x world makes it the global sum.
                        (sums["loss"] * (world / global_count)).backward()
                    for key, value in sums.items():
                        totals[key] = totals.get(key, 0) + value.detach().float().reshape(())
                reduced = _all_reduce(totals)
                loss_value = reduced["loss"] / reduced["count"]
                grad_norm = (
                    torch.nn.utils.clip_grad_norm_(wrapped.parameters(), config.grad_clip).item()
                    if config.grad_clip
                    else float("nan")
                )
                if not math.isfinite(loss_value) or (config.grad_clip and not math.isfinite(grad_norm)):
                    what = (
                        f"loss {loss_value}"
                        if not math.isfinite(loss_value)
                        else f"gradient norm {grad_norm}"
                    )
                    kept = latest_checkpoint(out)
                    raise MinitronError(
                        f"{what} at step {step + 1}; stopped before applying it. "
                        + (f"The last good checkpoint ({kept.name}) is kept; --resume continues from it "
                           "(a lower --lr may help)" if kept else "No checkpoint had been written yet")
                    )  # fmt: skip
                lr = scheduler.get_last_lr()[0]
                with _interrupt_deferred():  # weights, optimizer, schedule and step count move together
                    optimizer.step()
                    scheduler.step()
                    step += 1
                    resume_point = (stream.snapshot(), rng_state())
                step_tokens = sum(b.numel() for b in micro)
                tokens += step_tokens
                run_tokens += step_tokens
                run_elapsed = time.perf_counter() - t0
                tok_s = run_tokens / max(run_elapsed, 1e-9)
                progress.update(task, completed=step, loss=loss_value, tok_s=tok_s)
                if step % config.log_every == 0 or step == stop:
                    extra = {k: reduced[k] / reduced["count"] for k in reduced if k not in ("loss", "count")}
                    metrics.write({"step": step, "tokens": tokens, "loss": loss_value, **extra, "lr": lr,
                                   "grad_norm": grad_norm, "tokens_per_s": tok_s,
                                   "elapsed_s": elapsed + run_elapsed})  # fmt: skip
                if (config.eval_every and step % config.eval_every == 0) or step == total_steps:
                    eval_metrics = _evaluate(wrapped, objective, heldout, autocast, device)
                    metrics.write({"step": step, "tokens": tokens, **eval_metrics})
                    shown = ", ".join(f"{k.removeprefix('eval_')} {v:.4f}" for k, v in eval_metrics.items())
                    if main:
                        progress.console.print(f"step {step}: held-out {objective.name}: {shown}")
                if (config.save_every and step % config.save_every == 0) or step == stop:
                    checkpoint_state(step, *resume_point)
            except KeyboardInterrupt:
                # Nothing of an unfinished step was applied: checkpoint the last finished one.
                checkpoint_state(step, *resume_point)
                if main:
                    progress.console.print(
                        f"interrupted: checkpoint of step {step} saved; --resume continues"
                    )
                raise

    elapsed += time.perf_counter() - t0
    final = _save_final(out, wrapped, model, tokenizer, config.fsdp) if step == total_steps else None
    result = TrainResult(
        out,
        step,
        tokens,
        loss_value,
        eval_metrics.get("eval_loss"),
        elapsed,
        final,
        eval_metrics,
        objective.name,
    )
    if main:
        write_json(
            out / "result.json", {k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()}
        )
    return result


def result_table(result: TrainResult, objective_name: str = NextTokenCE.name):
    """The outcome of a run as a rich table."""
    from rich.table import Table

    table = Table(title=f"training: {result.out}", show_header=False)
    table.add_row("steps", f"{result.step:,}")
    table.add_row("tokens", f"{result.tokens:,}")
    table.add_row(f"last train {objective_name}", f"{result.train_loss:.4f}")
    table.add_row(
        f"held-out {objective_name}", "-" if result.eval_loss is None else f"{result.eval_loss:.4f}"
    )
    for key, value in result.eval_metrics.items():
        if key != "eval_loss":
            table.add_row(key.replace("eval_", "held-out "), f"{value:.4f}")
    table.add_row("time", f"{result.elapsed_s / 60:.1f} min")
    table.add_row(
        "model", str(result.final) if result.final else "not saved (stopped early; --resume continues)"
    )
    return table


# ---- setup ---------------------------------------------------------------------------------------


def _load(config: TrainConfig):
    from minitron.model.load import load_model, load_tokenizer, resolve_model

    source = resolve_model(config.model)
    model = load_model(source, dtype="float32", device="cpu", command="minitron train")
    tokenizer = load_tokenizer(source, command="minitron train")
    info = {"model": source.name, "fingerprint": source.fingerprint(), **source.architecture.summary()}
    return model, tokenizer, info


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # Decay matrices only: norms, biases and the Mamba per-head scalars (A_log, D, dt_bias) keep their scale.
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _identity(objective, provenance: dict[str, Any] | None) -> dict[str, Any]:
    """What else a resumed run must share with its checkpoint: the objective, its settings, the teacher."""
    describe_objective = getattr(objective, "describe", None)
    teacher = (provenance or {}).get("teacher") or {}
    return json.loads(json.dumps({
        "objective": objective.name,
        "objective_settings": describe_objective() if describe_objective else None,
        "teacher": teacher.get("fingerprint"),
    }))  # fmt: skip


def _start_state(
    config: TrainConfig, out: Path, wrapped, optimizer, scheduler, identity: dict[str, Any]
) -> dict[str, Any]:
    fresh = {"step": 0, "tokens": 0, "elapsed_s": 0.0, "data": None}
    checkpoint = latest_checkpoint(out) if out.exists() else None
    if not config.resume:
        if checkpoint is not None or (out / "final").exists():
            raise MinitronError(f"--out {out} already holds a run; pass --resume or choose another --out")
        return fresh
    if checkpoint is None:
        raise MinitronError(f"--resume: no checkpoint in {out}")
    state = load_checkpoint(checkpoint)
    _check_same_run(config, state["config"])
    changed = [k for k in identity if identity[k] != state.get("identity", {}).get(k)]
    if changed:
        detail = ", ".join(f"{k}: {state.get('identity', {}).get(k)!r} -> {identity[k]!r}" for k in changed)
        raise MinitronError(
            f"--resume with a different {' and '.join(changed)} than the checkpoint ({detail})"
        )
    if "data" not in state:
        if "batch_in_epoch" not in state:
            raise MinitronError(f"{checkpoint}: holds no data position; the run directory is damaged")
        # Checkpoints from before BatchStream saved (epoch, batches read in it): replay to there once.
        state["data"] = {"legacy": [state["epoch"], state["batch_in_epoch"]]}
    if config.fsdp:
        load_sharded(checkpoint, wrapped, optimizer)
    else:
        unwrap(wrapped).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return {k: state[k] for k in fresh}


def _save(out: Path, step: int, wrapped, optimizer, fsdp: bool, meta: dict[str, Any]) -> None:
    """Checkpoint `step`: rank 0 writes the state; under FSDP2 every rank writes its shards (DCP)."""
    from minitron.importance.distributed import rank_and_world

    if fsdp:
        save_checkpoint(out, step, meta, sharded=(wrapped, optimizer))
    elif rank_and_world()[0] == 0:
        save_checkpoint(
            out, step, {**meta, "model": unwrap(wrapped).state_dict(), "optimizer": optimizer.state_dict()}
        )
    _barrier()


def _wrap(model: torch.nn.Module, fsdp: bool, world: int, device: torch.device) -> torch.nn.Module:
    """The model as trained: itself, in DDP, or sharded in place with FSDP2 (each block, then the root)."""
    if world == 1:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        from minitron.model.adapters import adapter_for

        for block in adapter_for(model).blocks(model):
            fully_shard(block)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _grad_sync(wrapped, fsdp: bool, world: int, last: bool):
    """Synchronise gradients on the last micro-batch of the step only."""
    if world == 1:
        return nullcontext()
    if fsdp:
        wrapped.set_requires_gradient_sync(last)
        return nullcontext()
    return nullcontext() if last else wrapped.no_sync()


def _all_reduce(totals: dict[str, torch.Tensor]) -> dict[str, float]:
    """Sum each value over ranks (one collective)."""
    from minitron.importance.distributed import all_reduce_sum_

    keys = sorted(totals)
    values = torch.stack([torch.as_tensor(totals[k]).float().cpu() for k in keys])
    all_reduce_sum_([values])
    return dict(zip(keys, values.tolist(), strict=True))


@contextmanager
def _interrupt_deferred():
    """Hold Ctrl-C (SIGINT) until the block is done, then raise it: the block is never half-applied."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _check_same_run(config: TrainConfig, saved: dict[str, Any]) -> None:
    now = _config_json(config)
    changed = sorted(k for k in now if k not in _RESUME_FREE and now[k] != saved.get(k))
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
        raise MinitronError(f"--resume with different settings than the checkpoint ({detail})")


def _config_json(config: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(config)))


def _run_header(config, objective, model_info, provenance, world: int = 1) -> dict[str, Any]:
    describe_objective = getattr(objective, "describe", None)
    return {
        "config": _config_json(config),
        "world_size": world,
        "global_batch_sequences": config.data.batch_size * config.grad_accum * world,
        "objective": objective.name,
        **({"objective_settings": describe_objective()} if describe_objective else {}),
        "data": describe(config.data),
        "model": model_info,
        **({"provenance": provenance} if provenance else {}),
    }


def _write_run_header(
    out: Path, config, objective, model_info, provenance, fresh: bool, world: int = 1
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if fresh:
        write_json(out / "train_config.json", _run_header(config, objective, model_info, provenance, world))


def _same_run_again(out: Path, config, objective, model_info, provenance) -> bool:
    """True when `out` holds a checkpointed run started by this very command: same settings, model,
    data, objective and teacher (what its train_config.json records; the process count may differ)."""
    header_path = out / "train_config.json"
    if not header_path.is_file() or latest_checkpoint(out) is None:
        return False
    try:
        saved = json.loads(header_path.read_text())
    except (OSError, ValueError):
        return False
    now = json.loads(json_text(_run_header(config, objective, model_info, provenance)))
    student = (now.get("provenance") or {}).get("student_source") or {}
    if not (now["model"].get("fingerprint") or student.get("fingerprint")):
        return False  # an in-memory model: nothing says its weights are the ones the run started from
    ignored = {"world_size", "global_batch_sequences"}
    for header in (saved, now):
        header["config"] = {k: v for k, v in header.get("config", {}).items() if k not in ("resume", "progress")}
    return {k: v for k, v in saved.items() if k not in ignored} == {k: v for k, v in now.items() if k not in ignored}


# ---- data ----------------------------------------------------------------------------------------


def _heldout_batches(config: TrainConfig, tokenizer) -> list[torch.Tensor]:
    spec = dataclasses.replace(
        config.data, split="heldout", samples=config.eval_batches * config.data.batch_size
    )
    return list(token_batches(spec, tokenizer, hint=SHORT_DATA_HINT))


@torch.no_grad()
def _evaluate(model, objective, batches: list[torch.Tensor], autocast, device) -> dict[str, float]:
    """Every sum the objective reports, per predicted token over the held-out batches (averaged over ranks).

    Each rank evaluates its share; all run the same number of forwards (FSDP2 gathers weights in each),
    a rank with a shorter share repeating a batch it then leaves out.
    """
    from minitron.importance.distributed import rank_and_world

    rank, world = rank_and_world()
    model.eval()
    mine = batches[rank::world]
    rounds = -(-len(batches) // world)
    totals: dict[str, torch.Tensor] = {}
    for i in range(rounds):
        batch = mine[i] if i < len(mine) else batches[0]
        with autocast:
            sums = loss_sums(objective, model, batch.to(device))
        weight = 1.0 if i < len(mine) else 0.0
        for key, value in sums.items():
            totals[key] = totals.get(key, 0) + weight * value.detach().float().reshape(())
    reduced = _all_reduce(totals)
    count = reduced.pop("count")
    return {"eval_loss": reduced.pop("loss") / count, **{f"eval_{k}": v / count for k, v in reduced.items()}}


# ---- outputs -------------------------------------------------------------------------------------


class _Metrics:
    """Append-only JSONL; on resume, records after the checkpoint (from the lost tail) are dropped."""

    def __init__(self, path: Path, keep_through_step: int, enabled: bool = True):
        self.path, self.enabled = path, enabled
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


def _save_final(out: Path, wrapped, model, tokenizer, fsdp: bool) -> Path:
    """The model as a Hugging Face checkpoint with its tokenizer, run header, provenance and loss curves.

    Under FSDP2 every rank takes part in gathering the full state dict; rank 0 writes.
    """
    from minitron.importance.distributed import rank_and_world

    state = None
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(
            wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
    final = out / "final"
    if rank_and_world()[0] == 0:
        tmp = make_temp_dir(prefix=".final-", dir=out)
        try:
            unwrap(wrapped).save_pretrained(tmp, state_dict=state)
            tokenizer.save_pretrained(tmp)
            shutil.copyfile(out / "train_config.json", tmp / "train_config.json")
            _write_provenance(out, tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _barrier()
    return final


def _write_provenance(out: Path, final: Path) -> None:
    """minitron.json (where the model came from, how it was trained, its losses) and loss_curves.png."""
    from minitron import __version__

    header = json.loads((out / "train_config.json").read_text())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
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
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def _progress(enabled: bool, objective_name: str = "loss"):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(objective_name + " {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[tok_s]:,.0f} tok/s"),
        TimeRemainingColumn(),
        disable=not enabled,
    )
