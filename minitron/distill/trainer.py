"""The training loop: AdamW, warm-up + cosine/WSD, clipping, accumulation, evaluation, checkpoints.

`train(config, objective=...)` minimises any `Objective` (next-token cross-entropy by default) and
writes its run directory `config.out` (layout, identity and resumption: rundir.py).

One optimizer step consumes the global batch: batch_size x grad_accum x world size sequences (world
size 1 without torchrun). Under torchrun every rank reads the same shuffled stream and keeps its own
share of each step's micro-batches, data parallel (DDP) or sharded (FSDP2, `fsdp=True`; parallel.py);
gradients are synchronised once per optimizer step and the loss of every micro-batch is divided by
the real tokens of the whole global batch, so any split of the global batch gives the gradient of one
big batch.

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
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from minitron import parallel
from minitron.data import BatchStream, DataSpec, token_batches
from minitron.device import autocast as precision_autocast
from minitron.device import check_precision, resolve_device
from minitron.distill.checkpoint import latest_checkpoint, rng_state
from minitron.distill.objectives import NextTokenCE, Objective, heldout_losses, loss_sums
from minitron.distill.rundir import RunDir
from minitron.distill.schedule import SCHEDULES, effective_warmup, lr_lambda
from minitron.distill.tracking import parse_report_to
from minitron.errors import MinitronError, check_choice
from minitron.model.load import check_seq_len
from minitron.progress import status

# Too little text for one sequence: what train, distill and compare can change.
SHORT_DATA_HINT = "use more text, a shorter --seq-len or another --heldout-fraction"


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
    report_to: str = "none"  # experiment trackers, comma-separated (tracking.py)
    command: str = ""  # the command line that started the run (its model card shows it)
    gradient_checkpointing: bool = False  # recompute each block in the backward: same result, less memory

    def __post_init__(self) -> None:
        parse_report_to(self.report_to)
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
        check_choice("--schedule", self.schedule, SCHEDULES)
        if not 0 < self.decay_fraction <= 1:
            raise MinitronError(f"--decay-fraction must be in (0, 1], got {self.decay_fraction}")
        check_precision(self.precision)
        if self.seed < 0:
            raise MinitronError(f"--seed must be >= 0, got {self.seed}")
        if self.weight_decay < 0:
            raise MinitronError(f"--weight-decay must be >= 0, got {self.weight_decay}")
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
    group: str | None = None,
) -> TrainResult:
    """Train `model` (or the model `config.model` names) on `config.data`, minimising `objective`.

    `objective` defaults to next-token cross-entropy; distillation passes one that holds a teacher
    (objectives with a `setup(device, fsdp)` method get it called once the device is known).
    `provenance` is extra JSON stored in train_config.json (e.g. the teacher, the pruning source).
    Runs sharing a `group` (compare's candidates) show together in the experiment trackers.
    """
    objective = objective or NextTokenCE()
    out = Path(config.out).expanduser()
    device = resolve_device(config.device)
    if parallel.launched_distributed():
        parallel.init_from_env(str(device))
    rank, world = parallel.rank_and_world()
    if config.fsdp and world == 1:
        raise MinitronError("--fsdp shards over several processes: launch with torchrun --nproc-per-node N")
    total_steps = config.total_steps(world)
    if config.stop_at_step is not None and config.stop_at_step > total_steps:
        raise MinitronError(f"--stop-at-step must be in 1..{total_steps}, got {config.stop_at_step}")
    warmup_steps, note = effective_warmup(config.warmup_steps, total_steps)
    if note and rank == 0:
        print(f"note: {note}", file=sys.stderr)
    torch.manual_seed(config.seed)
    if model is None or tokenizer is None:
        model, tokenizer, model_info = _load(config)
    else:
        # A student loaded by the caller (distill) is named by its source; only a built one is "in-memory".
        student = (provenance or {}).get("student_source") or {"model": "in-memory"}
        model_info = {**student, "params": sum(p.numel() for p in model.parameters())}
    check_seq_len(config.data.seq_len, model.config.to_dict(), model_info["model"])
    model.to(device=device, dtype=torch.float32)
    if (
        config.gradient_checkpointing
    ):  # transformers 5.x renamed it; early 5.x releases have the old name only
        enable = (
            getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        )
        enable({"use_reentrant": False})
    setup = getattr(objective, "setup", None)
    if setup is not None:
        setup(device, fsdp=config.fsdp)
    what = f"reading held-out text: {config.eval_batches} x {config.data.batch_size} sequences of {config.data.seq_len}"
    with status(what + " tokens", config.progress and rank == 0):
        heldout = _heldout_batches(config, tokenizer)  # before anything is written: bad data fails cleanly
    wrapped = parallel.wrap(model, config.fsdp, device)
    optimizer = torch.optim.AdamW(
        _param_groups(wrapped, config.weight_decay), lr=config.lr, betas=config.betas, fused=False
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(
        total_steps=total_steps, warmup_steps=warmup_steps, schedule=config.schedule,
        min_ratio=config.min_lr_ratio, decay_fraction=config.decay_fraction,
    ))  # fmt: skip
    run_dir = RunDir(out, config, objective, model_info, provenance, world, group)
    if not config.resume and run_dir.holds_this_run():
        # The same command on its own --out (a rerun of a finished or killed command) continues it.
        if rank == 0:
            print(f"note: --out {out} holds this same run; continuing it (as --resume)", file=sys.stderr)
        config = run_dir.config = dataclasses.replace(config, resume=True)
    start = run_dir.start(wrapped, optimizer, scheduler)
    loop = _Loop(config, objective, wrapped, tokenizer, optimizer, scheduler, run_dir, device, total_steps)
    from minitron.plan.oom import explain_out_of_memory, training_plan

    stage, hint = (
        ("distill" if getattr(objective, "teacher", None) is not None else "train"),
        "--resume continues",
    )
    if "candidate" in (provenance or {}):
        stage, hint = (
            f"compare (candidate {provenance['candidate']['rank']})",
            "the same compare command continues",
        )
    failed = True
    try:
        with explain_out_of_memory(stage, lambda: training_plan(config, model, objective, world, device),
                                   lambda: latest_checkpoint(out) if out.exists() else None, hint):  # fmt: skip
            result = loop.run(start, heldout)
        failed = False
        return result
    except MinitronError:
        run_dir.discard_if_new()
        raise
    finally:
        run_dir.close(failed)


class _Loop:
    """One run's optimizer steps, evaluations and checkpoints, from a start state to its stop step."""

    def __init__(
        self, config, objective, wrapped, tokenizer, optimizer, scheduler, run_dir, device, total_steps
    ):
        self.config, self.objective, self.wrapped, self.tokenizer = config, objective, wrapped, tokenizer
        self.optimizer, self.scheduler, self.run_dir, self.device = optimizer, scheduler, run_dir, device
        self.total_steps = total_steps
        self.autocast = precision_autocast(config.precision, device)
        self.rank, self.world = parallel.rank_and_world()

    def run(self, start: dict[str, Any], heldout: list[torch.Tensor]) -> TrainResult:
        from rich.console import Console

        from minitron.progress import progress_bar

        config, objective, main = self.config, self.objective, self.rank == 0
        metrics = self.run_dir.open(
            fresh=start["step"] == 0, keep_through_step=start["step"] if config.resume else -1
        )
        self.step, self.tokens, elapsed = start["step"], start["tokens"], start["elapsed_s"]
        stream = BatchStream(config.data, self.tokenizer, start["data"], hint=SHORT_DATA_HINT)
        stop = config.stop_at_step or self.total_steps
        eval_metrics: dict[str, float] = {}
        loss_value = float("nan")
        self.t0, self.elapsed_before, run_tokens = time.perf_counter(), elapsed, 0
        columns = (objective.name + " {task.fields[loss]:.3f}", "{task.fields[tok_s]:,.0f} tok/s")
        bar_fields = {"loss": float("nan"), "tok_s": 0.0}
        with progress_bar("train", self.total_steps, config.progress and main, completed=self.step,
                          fields=bar_fields, columns=columns, console=Console()) as bar:  # fmt: skip
            if self.step == 0 and config.eval_every:
                eval_metrics = self.evaluate(heldout)
                metrics.write({"step": 0, "tokens": 0, **eval_metrics})
                if main:
                    bar.print(f"step 0: held-out {objective.name}: {_shown(eval_metrics)}")
            while self.step < stop:
                # Where a checkpoint written now would restart: the start of the unfinished step.
                resume_point = (stream.snapshot(), rng_state())
                try:
                    micro = [next(stream) for _ in range(config.grad_accum * self.world)]
                    reduced, grad_norm = self.gradients(micro)
                    loss_value = reduced["loss"] / reduced["count"]
                    self.check_finite(loss_value, grad_norm)
                    lr = self.scheduler.get_last_lr()[0]
                    with _interrupt_deferred():  # weights, optimizer, schedule and step count move together
                        self.optimizer.step()
                        self.scheduler.step()
                        self.step += 1
                        resume_point = (stream.snapshot(), rng_state())
                    step_tokens = sum(b.numel() for b in micro)
                    self.tokens += step_tokens
                    run_tokens += step_tokens
                    run_elapsed = time.perf_counter() - self.t0
                    tok_s = run_tokens / max(run_elapsed, 1e-9)
                    bar.update(completed=self.step, loss=loss_value, tok_s=tok_s)
                    if self.step % config.log_every == 0 or self.step == stop:
                        extra = {
                            k: reduced[k] / reduced["count"] for k in reduced if k not in ("loss", "count")
                        }
                        metrics.write({"step": self.step, "tokens": self.tokens, "loss": loss_value, **extra, "lr": lr,
                                       "grad_norm": grad_norm, "tokens_per_s": tok_s,
                                       "elapsed_s": elapsed + run_elapsed})  # fmt: skip
                    if (
                        config.eval_every and self.step % config.eval_every == 0
                    ) or self.step == self.total_steps:
                        eval_metrics = self.evaluate(heldout)
                        metrics.write({"step": self.step, "tokens": self.tokens, **eval_metrics})
                        if main:
                            bar.print(f"step {self.step}: held-out {objective.name}: {_shown(eval_metrics)}")
                    if (config.save_every and self.step % config.save_every == 0) or self.step == stop:
                        self.checkpoint(*resume_point)
                except KeyboardInterrupt:
                    # Nothing of an unfinished step was applied: checkpoint the last finished one.
                    self.checkpoint(*resume_point)
                    # Said once, by the command that stops (the CLI prints "interrupted: <this>").
                    raise KeyboardInterrupt(
                        f"checkpoint of step {self.step} saved; --resume continues"
                    ) from None

        elapsed += time.perf_counter() - self.t0
        final = self.run_dir.finish(self.wrapped, self.tokenizer) if self.step == self.total_steps else None
        result = TrainResult(self.run_dir.out, self.step, self.tokens, loss_value, eval_metrics.get("eval_loss"),
                             elapsed, final, eval_metrics, objective.name)  # fmt: skip
        self.run_dir.write_result(result)
        return result

    def gradients(self, micro: list[torch.Tensor]) -> tuple[dict[str, float], float]:
        """Backward over this rank's micro-batches of the global batch (rank, rank + world, ...); the
        step's sums over all ranks and the clipped gradient norm (nan without clipping)."""
        self.wrapped.train()
        self.optimizer.zero_grad(set_to_none=True)
        global_count = sum(b.shape[0] * (b.shape[1] - 1) for b in micro)
        mine = micro[self.rank :: self.world]
        totals: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(mine):
            batch = batch.to(self.device)
            with parallel.grad_sync(self.wrapped, self.config.fsdp, last=i == len(mine) - 1), self.autocast:
                sums = loss_sums(self.objective, self.wrapped, batch)
                # DDP and FSDP2 average gradients over ranks; x world makes it the global sum.
                (sums["loss"] * (self.world / global_count)).backward()
            for key, value in sums.items():
                totals[key] = totals.get(key, 0) + value.detach().float().reshape(())
        clip = self.config.grad_clip
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(self.wrapped.parameters(), clip).item() if clip else float("nan")
        )
        return parallel.sum_over_ranks(totals), grad_norm

    def check_finite(self, loss_value: float, grad_norm: float) -> None:
        if math.isfinite(loss_value) and not (self.config.grad_clip and not math.isfinite(grad_norm)):
            return
        what = f"loss {loss_value}" if not math.isfinite(loss_value) else f"gradient norm {grad_norm}"
        kept = latest_checkpoint(self.run_dir.out)
        raise MinitronError(
            f"{what} at step {self.step + 1}; stopped before applying it. "
            + (f"The last good checkpoint ({kept.name}) is kept; --resume continues from it "
               "(a lower --lr may help)" if kept else "No checkpoint had been written yet")
        )  # fmt: skip

    def evaluate(self, heldout: list[torch.Tensor]) -> dict[str, float]:
        return heldout_losses(self.wrapped, self.objective, heldout, self.autocast, self.device)

    def checkpoint(self, data_snapshot, rng) -> None:
        elapsed = self.elapsed_before + (time.perf_counter() - self.t0)
        self.run_dir.save(self.step, self.wrapped, self.optimizer, {
            "step": self.step, "tokens": self.tokens, "elapsed_s": elapsed, "data": BatchStream.pack(data_snapshot),
            "scheduler": self.scheduler.state_dict(), "rng": rng,
        })  # fmt: skip


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


def _shown(eval_metrics: dict[str, float]) -> str:
    return ", ".join(f"{k.removeprefix('eval_')} {v:.4f}" for k, v in eval_metrics.items())


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


def _heldout_batches(config: TrainConfig, tokenizer) -> list[torch.Tensor]:
    spec = dataclasses.replace(
        config.data, split="heldout", samples=config.eval_batches * config.data.batch_size
    )
    return list(token_batches(spec, tokenizer, hint=SHORT_DATA_HINT))


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
