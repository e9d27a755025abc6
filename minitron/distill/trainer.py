"""The training loop: AdamW, warm-up + cosine/WSD, clipping, accumulation, evaluation, checkpoints.

`train(config, objective=...)` minimises any `Objective` (next-token cross-entropy by default) and
writes into `config.out`:

    train_config.json   resolved config, data description, model provenance
    metrics.jsonl       one JSON record per logged step ("loss") and per evaluation ("eval_loss")
    checkpoints/        the latest resumable checkpoint (see checkpoint.py)
    final/              the trained model as a Hugging Face checkpoint (float32), with its tokenizer

One optimizer step consumes `grad_accum` batches. Epochs over the data repeat with the shuffle seed
advanced by one each time, so a run may be longer than one pass over its corpus. `resume=True`
continues from the latest checkpoint with the same weights, optimizer, schedule, RNG and data
position, so an interrupted-and-resumed run ends with the weights an uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from minitron.atomic import write_json, write_text
from minitron.data import DataSpec, describe, token_batches
from minitron.distill.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from minitron.distill.objectives import NextTokenCE, Objective
from minitron.distill.schedule import SCHEDULES, lr_multiplier
from minitron.errors import MinitronError

PRECISIONS = ("auto", "bf16", "fp32")
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
}


@dataclass(frozen=True)
class TrainConfig:
    """One training run. `steps` counts optimizer steps; each sees grad_accum x batch x seq_len tokens."""

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

    def __post_init__(self) -> None:
        for name in ("steps", "grad_accum", "eval_batches", "log_every"):
            if getattr(self, name) < 1:
                raise MinitronError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
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
        if self.precision not in PRECISIONS:
            raise MinitronError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.grad_clip < 0:
            raise MinitronError(f"--grad-clip must be >= 0 (0 = off), got {self.grad_clip}")
        if self.stop_at_step is not None and not 0 < self.stop_at_step <= self.steps:
            raise MinitronError(f"--stop-at-step must be in 1..{self.steps}, got {self.stop_at_step}")

    @property
    def tokens_per_step(self) -> int:
        return self.grad_accum * self.data.batch_size * self.data.seq_len


@dataclass(frozen=True)
class TrainResult:
    out: Path
    step: int
    tokens: int
    train_loss: float
    eval_loss: float | None
    elapsed_s: float
    final: Path | None  # the saved model; None when stopped early by stop_at_step


def train(
    config: TrainConfig,
    objective: Objective | None = None,
    model: torch.nn.Module | None = None,
    tokenizer: Any = None,
    provenance: dict[str, Any] | None = None,
) -> TrainResult:
    """Train `model` (or the model `config.model` names) on `config.data`, minimising `objective`.

    `objective` defaults to next-token cross-entropy; distillation passes one that holds a teacher.
    `provenance` is extra JSON stored in train_config.json (e.g. the teacher, the pruning source).
    """
    objective = objective or NextTokenCE()
    out = Path(config.out).expanduser()
    torch.manual_seed(config.seed)
    if model is None or tokenizer is None:
        model, tokenizer, model_info = _load(config)
    else:
        model_info = {"model": "in-memory", "params": sum(p.numel() for p in model.parameters())}
    device = _device(config.device)
    model.to(device=device, dtype=torch.float32)
    autocast = _autocast(config.precision, device)

    optimizer = torch.optim.AdamW(
        _param_groups(model, config.weight_decay), lr=config.lr, betas=config.betas, fused=False
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_multiplier(
            step,
            total_steps=config.steps,
            warmup_steps=config.warmup_steps,
            schedule=config.schedule,
            min_ratio=config.min_lr_ratio,
            decay_fraction=config.decay_fraction,
        ),
    )
    start = _start_state(config, out, model, optimizer, scheduler)
    _write_run_header(out, config, objective, model_info, provenance, fresh=start["step"] == 0)
    heldout = _heldout_batches(config, tokenizer)

    metrics = _Metrics(out / "metrics.jsonl", keep_through_step=start["step"] if config.resume else -1)
    step, tokens, elapsed = start["step"], start["tokens"], start["elapsed_s"]
    epoch, batch_in_epoch = start["epoch"], start["batch_in_epoch"]
    batches = _batches_from(config, tokenizer, epoch, batch_in_epoch)
    stop = config.stop_at_step or config.steps
    eval_loss = None
    loss_value = float("nan")
    t0 = time.perf_counter()
    run_tokens = 0

    with _progress(config.progress) as progress:
        task = progress.add_task("train", total=config.steps, completed=step, loss=float("nan"), tok_s=0.0)
        if step == 0 and config.eval_every:
            eval_loss = _evaluate(model, objective, heldout, autocast, device)
            metrics.write({"step": 0, "tokens": 0, "eval_loss": eval_loss})
        while step < stop:
            model.train()
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for _ in range(config.grad_accum):
                batch, epoch, batch_in_epoch = next(batches)
                batch = batch.to(device)
                with autocast:
                    loss = objective(model, batch)
                (loss / config.grad_accum).backward()
                loss_sum += loss.item()
                tokens += batch.numel()
                run_tokens += batch.numel()
            grad_norm = (
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip).item()
                if config.grad_clip
                else float("nan")
            )
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            step += 1
            loss_value = loss_sum / config.grad_accum
            run_elapsed = time.perf_counter() - t0
            tok_s = run_tokens / max(run_elapsed, 1e-9)
            progress.update(task, completed=step, loss=loss_value, tok_s=tok_s)
            if step % config.log_every == 0 or step == stop:
                metrics.write(
                    {
                        "step": step,
                        "tokens": tokens,
                        "loss": loss_value,
                        "lr": lr,
                        "grad_norm": grad_norm,
                        "tokens_per_s": tok_s,
                        "elapsed_s": elapsed + run_elapsed,
                    }
                )
            if (config.eval_every and step % config.eval_every == 0) or step == config.steps:
                eval_loss = _evaluate(model, objective, heldout, autocast, device)
                metrics.write({"step": step, "tokens": tokens, "eval_loss": eval_loss})
                progress.console.print(f"step {step}: held-out {objective.name} {eval_loss:.4f}")
            if (config.save_every and step % config.save_every == 0) or step == stop:
                save_checkpoint(
                    out,
                    step,
                    {
                        "step": step,
                        "tokens": tokens,
                        "elapsed_s": elapsed + (time.perf_counter() - t0),
                        "epoch": epoch,
                        "batch_in_epoch": batch_in_epoch,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": rng_state(),
                        "config": _config_json(config),
                    },
                )

    elapsed += time.perf_counter() - t0
    final = _save_final(out, model, tokenizer) if step == config.steps else None
    result = TrainResult(out, step, tokens, loss_value, eval_loss, elapsed, final)
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


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise MinitronError(f"--device: unknown device {name!r} (cpu, cuda, cuda:1, auto)") from None


def _autocast(precision: str, device: torch.device):
    # bf16 autocast on CPUs without native bf16 is slower than fp32, so `auto` uses it on CUDA only.
    use_bf16 = precision == "bf16" or (
        precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)


def _start_state(config: TrainConfig, out: Path, model, optimizer, scheduler) -> dict[str, Any]:
    fresh = {"step": 0, "tokens": 0, "elapsed_s": 0.0, "epoch": 0, "batch_in_epoch": 0}
    checkpoint = latest_checkpoint(out) if out.exists() else None
    if not config.resume:
        if checkpoint is not None or (out / "final").exists():
            raise MinitronError(f"--out {out} already holds a run; pass --resume or choose another --out")
        return fresh
    if checkpoint is None:
        raise MinitronError(f"--resume: no checkpoint in {out}")
    state = load_checkpoint(checkpoint)
    _check_same_run(config, state["config"])
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return {k: state[k] for k in fresh}


def _check_same_run(config: TrainConfig, saved: dict[str, Any]) -> None:
    now = _config_json(config)
    changed = sorted(k for k in now if k not in _RESUME_FREE and now[k] != saved.get(k))
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
        raise MinitronError(f"--resume with different settings than the checkpoint ({detail})")


def _config_json(config: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(config)))


def _write_run_header(out: Path, config, objective, model_info, provenance, fresh: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if not fresh:
        return
    header = {
        "config": _config_json(config),
        "objective": objective.name,
        "data": describe(config.data),
        "model": model_info,
        **({"provenance": provenance} if provenance else {}),
    }
    write_json(out / "train_config.json", header)


# ---- data ----------------------------------------------------------------------------------------


def _batches_from(
    config: TrainConfig, tokenizer, epoch: int, skip: int
) -> Iterator[tuple[torch.Tensor, int, int]]:
    """(batch, epoch, batches consumed in that epoch) forever, starting at a saved position."""
    while True:
        spec = dataclasses.replace(config.data, seed=config.data.seed + epoch)
        index = 0
        for batch in token_batches(spec, tokenizer):
            index += 1
            if index <= skip:
                continue
            yield batch, epoch, index
        epoch, skip = epoch + 1, 0


def _heldout_batches(config: TrainConfig, tokenizer) -> list[torch.Tensor]:
    spec = dataclasses.replace(
        config.data, split="heldout", samples=config.eval_batches * config.data.batch_size
    )
    return list(token_batches(spec, tokenizer))


@torch.no_grad()
def _evaluate(model, objective, batches: list[torch.Tensor], autocast, device) -> float:
    """Mean objective per predicted token over the held-out batches."""
    model.eval()
    total, weight = 0.0, 0
    for batch in batches:
        with autocast:
            loss = objective(model, batch.to(device))
        n = batch.shape[0] * (batch.shape[1] - 1)
        total += loss.item() * n
        weight += n
    return total / weight


# ---- outputs -------------------------------------------------------------------------------------


class _Metrics:
    """Append-only JSONL; on resume, records after the checkpoint (from the lost tail) are dropped."""

    def __init__(self, path: Path, keep_through_step: int):
        self.path = path
        if path.exists():
            kept = [
                line
                for line in path.read_text().splitlines()
                if json.loads(line)["step"] <= keep_through_step
            ]
            write_text(path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _save_final(out: Path, model, tokenizer) -> Path:
    final = out / "final"
    tmp = Path(tempfile.mkdtemp(prefix=".final-", dir=out))
    tmp.chmod(0o755)  # mkdtemp makes it private; the model is an ordinary output directory
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.copyfile(out / "train_config.json", tmp / "train_config.json")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[tok_s]:,.0f} tok/s"),
        TimeRemainingColumn(),
        disable=not enabled,
    )
