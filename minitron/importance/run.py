"""`minitron score`: calibration data -> width and depth importance -> scores file, JSON summary, plot."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from minitron.errors import MinitronError, check_choice
from minitron.importance.depth import DEPTH_METRICS, DEPTH_MODES, depth_block_runs, score_depth
from minitron.importance.scores import Scores
from minitron.importance.width import AGGREGATIONS, EXPERT_SCORES

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class ScoreConfig:
    model: str
    out: Path = Path("scores.safetensors")
    data: str = "builtin"
    text_field: str = "text"
    glob: str | None = None  # files searched in a --data directory; None = minitron.data's default
    # The papers calibrate on 1024 samples (Nano 2: 8192 tokens each).
    samples: int = 1024
    seq_len: int = 8192
    batch_size: int = 1
    width: bool = True
    depth: str = "mse"  # one of DEPTH_METRICS or "none"
    depth_mode: str = "iterative"
    depth_iterations: int | None = None  # iterative removals before the rest is ordered one-shot
    depth_samples: int | None = None  # score depth on the first N calibration samples only
    aggregation: str = "mean-l2"
    expert_score: str = "reap"  # one of EXPERT_SCORES (MoE models)
    device: str = "auto"
    dtype: str = "auto"
    progress: bool = True  # rich progress bars on stderr
    report: bool = True  # rich tables on stdout
    as_json: bool = False  # the JSON summary on stdout instead of the tables

    def __post_init__(self) -> None:
        from minitron.atomic import check_writable

        self.out = Path(self.out)
        if self.out.suffix != ".safetensors":
            raise MinitronError(f"--out must end in .safetensors, got {self.out}")
        check_writable(self.out, file=True)
        for flag, value in (("--samples", self.samples), ("--seq-len", self.seq_len)):
            if value < 1:
                raise MinitronError(f"{flag} must be positive, got {value}")
        if self.batch_size < 1:
            raise MinitronError(f"--batch-size must be positive, got {self.batch_size}")
        check_choice("--depth", self.depth, (*DEPTH_METRICS, "none"))
        check_choice("--depth-mode", self.depth_mode, DEPTH_MODES)
        check_choice("--aggregation", self.aggregation, AGGREGATIONS)
        check_choice("--expert-score", self.expert_score, EXPERT_SCORES)
        check_choice("--dtype", self.dtype, DTYPES)
        if self.depth_iterations is not None and self.depth_iterations < 0:
            raise MinitronError(f"--depth-iterations must be 0 or more, got {self.depth_iterations}")
        if self.depth_iterations is not None and self.depth_mode == "one-shot":
            raise MinitronError("--depth-iterations applies to --depth-mode iterative, not one-shot")
        if self.depth_samples is not None and not 1 <= self.depth_samples <= self.samples:
            raise MinitronError(
                f"--depth-samples must be between 1 and --samples ({self.samples}), got {self.depth_samples}"
            )
        if not self.width and self.depth == "none":
            raise MinitronError("nothing to score: --no-width together with --depth none")

    @property
    def summary_path(self) -> Path:
        return self.out.with_suffix(".json")

    @property
    def plot_path(self) -> Path:
        return self.out.with_name(self.out.stem + "-depth.png")


def run(config: ScoreConfig) -> Scores:
    """Score a checkpoint and write the scores file (+ JSON summary and depth plot) on rank 0."""
    import torch

    from minitron import __version__, parallel
    from minitron.atomic import write_json
    from minitron.data import DataSpec, describe, token_batches
    from minitron.device import resolve_device, weights_dtype
    from minitron.importance.batches import n_samples
    from minitron.importance.report import plot_depth, print_json, print_report, summary
    from minitron.importance.scores import save_scores
    from minitron.importance.width import score_width
    from minitron.model.load import check_seq_len, load_model, load_tokenizer, resolve_model
    from minitron.plan.oom import explain_out_of_memory, model_plan
    from minitron.progress import progress_bar

    device = str(resolve_device(config.device))
    source = resolve_model(config.model)
    source.require_weights("minitron score")
    check_seq_len(config.seq_len, source.config, source.name)
    arch = source.architecture
    dtype = weights_dtype(config.dtype, device)
    parallel.init_from_env(device)
    rank, world = parallel.rank_and_world()
    show = config.progress and rank == 0

    spec = DataSpec.of_command(config, config.samples, "train")
    tokenizer = load_tokenizer(source, "minitron score")
    # Every rank reads the same (deterministic) batches and keeps its share; depth passes over them
    # once per removed block, so they stay in memory (1024 x 8192 int64 = 64 MiB).
    batches = list(token_batches(spec, tokenizer))
    samples = n_samples(batches)
    if samples < config.samples and rank == 0:
        print(
            f"warning: --data {config.data} holds only {samples} sequences of {config.seq_len} tokens "
            f"(asked for {config.samples}); scoring on those",
            file=sys.stderr,
        )
    mine = parallel.shard(batches)
    model = load_model(source, dtype=dtype, device=device, command="minitron score")

    depth_batches = first_samples(mine, config.depth_samples) if config.depth_samples else mine
    work = score_work(arch, config, mine, depth_batches)
    if rank == 0 and config.progress:
        warn_if_long(work, device, config)

    tensors: dict[str, torch.Tensor] = {}
    plan = lambda: model_plan("score", arch, device, seq_len=config.seq_len, batch_size=config.batch_size,  # noqa: E731
                              teacher_dtype=dtype, depth_metric=config.depth)  # fmt: skip
    with explain_out_of_memory("score", plan):
        if config.width:
            with progress_bar("width scores", len(mine), show) as advance:
                tensors.update(score_width(model, mine, config.aggregation, advance, config.expert_score))
        if config.depth != "none":
            runs = work["depth_block_runs"]
            with progress_bar(f"depth scores ({config.depth}, block runs)", runs, show) as advance:
                tensors.update(score_depth(model, depth_batches, config.depth, config.depth_mode, advance,
                                           config.depth_iterations))  # fmt: skip

    settings: dict[str, Any] = {
        "width": config.width,
        "aggregation": config.aggregation if config.width else None,
        "expert_score": config.expert_score if config.width and arch.experts else None,
        "depth": config.depth,
        "depth_mode": config.depth_mode if config.depth != "none" else None,
        "depth_iterations": config.depth_iterations if config.depth != "none" else None,
        "depth_samples": n_samples(depth_batches) if config.depth != "none" else None,
        "dtype": dtype,
        "world_size": world,
        "activations": "float32",
    }
    header = {
        "model": source.name,
        "model_path": str(source.path.resolve()),
        "fingerprint": source.fingerprint(),
        "architecture": arch.summary(),
        "data": describe(spec),
        "samples": samples,
        "seq_len": config.seq_len,
        "settings": settings,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "version": __version__,
    }
    scores = Scores(tensors={k: v.cpu() for k, v in tensors.items()}, header=header)
    if rank == 0:
        written = [
            save_scores(scores, config.out),
            write_json(config.summary_path, summary(scores), sort_keys=True),
        ]
        if scores.has_depth():
            plot = plot_depth(scores, config.plot_path)
            if plot is not None:
                written.append(plot)
        if config.as_json:
            print_json(scores)
        elif config.report:
            print_report(scores, written)
    return scores


def first_samples(batches: list, samples: int) -> list:
    """The first `samples` sequences of `batches` (bare id tensors or (ids, mask) pairs)."""
    out, left = [], samples
    for batch in batches:
        if left <= 0:
            break
        ids, mask = (batch, None) if not isinstance(batch, tuple) else batch
        take = min(left, ids.shape[0])
        out.append(ids[:take] if mask is None else (ids[:take], mask[:take]))
        left -= take
    return out


# Rough sustained float32 throughput of a forward on each device type, for the work estimate only.
DEVICE_FLOPS = {"cpu": 2e10, "cuda": 5e13}
LONG_RUN_SECONDS = 600


def score_work(arch, config: ScoreConfig, batches: list, depth_batches: list) -> dict[str, Any]:
    """How much a score run computes: passes, block runs and tokens, and a rough FLOP count."""
    from minitron.importance.batches import as_batches

    def tokens(bs) -> int:
        return sum(ids.numel() for ids, _ in as_batches(bs))

    width_tokens, depth_tokens = tokens(batches), tokens(depth_batches)
    runs_per_batch = (
        0
        if config.depth == "none"
        else depth_block_runs(arch.n_blocks, config.depth_mode, config.depth, config.depth_iterations)
    )
    mean_block_params = sum(arch.block_params(k) for k in arch.pattern) / arch.n_blocks
    depth_block_tokens = runs_per_batch * depth_tokens  # every block run sees every token of its batch
    flops = (
        2 * mean_block_params * (depth_block_tokens + (arch.n_blocks * width_tokens if config.width else 0))
    )
    return {
        "width_passes": 1 if config.width else 0,
        "width_tokens": width_tokens if config.width else 0,
        "depth_passes": 0 if config.depth == "none" else _steps(arch, config),
        "depth_block_runs": runs_per_batch * len(depth_batches),
        "depth_block_tokens": depth_block_tokens,
        "flops": flops,
    }


def _steps(arch, config: ScoreConfig) -> int:
    from minitron.importance.depth import depth_steps

    return depth_steps(arch.n_blocks, config.depth_mode, config.depth_iterations)


def warn_if_long(work: dict[str, Any], device: str, config: ScoreConfig) -> None:
    """Say how much work a run is when it would take long here; on CPU, suggest the CPU settings."""
    seconds = work["flops"] / DEVICE_FLOPS["cuda" if device.startswith("cuda") else "cpu"]
    if seconds < LONG_RUN_SECONDS:
        return
    duration = f"{seconds / 3600:.1f} hours" if seconds >= 3600 else f"{seconds / 60:.0f} minutes"
    print(
        f"note: this run is {work['width_passes']} width pass ({work['width_tokens']:,} tokens) and "
        f"{work['depth_passes']} depth passes ({work['depth_block_runs']:,} block runs over "
        f"{work['depth_block_tokens']:,} block-tokens), about {work['flops']:.2g} FLOPs: "
        f"roughly {duration} on {device}",
        file=sys.stderr,
    )
    if not device.startswith("cuda"):
        print(
            "note: on a CPU try --seq-len 256 --samples 32 --depth-samples 8 and "
            "--depth-iterations 6 (or --depth-mode one-shot)",
            file=sys.stderr,
        )
