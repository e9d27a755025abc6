"""The `minitron` command: a thin typer app.

Every command parses options, builds a config dataclass and calls one library function. Heavy
imports (torch, transformers) happen inside the commands, so `minitron --help` stays fast.
User errors (`MinitronError`) print one line on stderr and exit 1, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

import typer

# The order a user runs them in; commands not named here follow, alphabetically.
WORKFLOW = ("run", "demo", "estimate", "score", "search", "prune", "distill", "compare", "evaluate", "train")


class WorkflowGroup(typer.core.TyperGroup):
    """Lists the commands in workflow order rather than in the order they are defined."""

    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        return [n for n in WORKFLOW if n in names] + sorted(n for n in names if n not in WORKFLOW)


app = typer.Typer(
    name="minitron",
    help="Compress language models the Minitron way: score, search under a memory budget, prune, distill.",
    cls=WorkflowGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: flags show as flags (no "<bool>"), and "[default: ...]" in a help text stays text.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., object])


def friendly(fn: F) -> F:
    """Turn MinitronError (and Ctrl-C) into one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from minitron.errors import MinitronError

        try:
            return fn(*args, **kwargs)
        except MinitronError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


# Options shared by every command that reads text or runs a model: defined once, so their help is too.
DATA_OPTION = typer.Option(
    "builtin",
    "--data",
    help="Text: 'builtin' (the shipped corpus), a text/JSONL/Parquet file, a save_to_disk or plain directory.",
)
TEXT_FIELD_OPTION = typer.Option(
    "text", "--text-field", help="JSONL field / Parquet or Arrow column holding the text."
)
GLOB_OPTION = typer.Option(
    None,
    "--glob",
    help="Comma-separated file patterns searched in a --data directory "
    "(default: .txt .md .rst .py .jsonl .parquet files, recursively).",
)
DEVICE_OPTION = typer.Option("auto", "--device", help="cpu, cuda, cuda:1 or auto (cuda when available).")


def command_line(ctx: typer.Context) -> str:
    """The running command as a shell line rebuilt from its parsed options (defaults left out).

    Rebuilt rather than read from sys.argv, which holds the host program's arguments when the app
    runs in-process (tests, notebooks).
    """
    import shlex

    words = ctx.command_path.split()
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == param.default:
            continue
        if param.param_type_name == "argument":
            words.append(str(value))
        elif getattr(param, "is_flag", False):
            opts = param.opts if value else param.secondary_opts
            words.extend(opts[:1])
        else:
            words.extend([param.opts[0], str(value)])
    return shlex.join(words)


def _version(value: bool) -> None:
    if value:
        from minitron import __version__

        typer.echo(f"minitron {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Compress language models the Minitron way."""


@app.command()
@friendly
def prune(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Checkpoint directory (or built-in name) to prune."),
    out: str = typer.Option(..., "--out", help="Output directory for the pruned checkpoint."),
    scores: str = typer.Option(
        None, "--scores", help="Scores file from `minitron score`; needed for width pruning and --layers."
    ),
    hidden: int = typer.Option(None, "--hidden", help="Target hidden size (embedding channels)."),
    ffn: int = typer.Option(None, "--ffn", help="Target FFN size (neurons per MLP block)."),
    mamba_heads: int = typer.Option(None, "--mamba-heads", help="Target Mamba heads (multiple of groups)."),
    mamba_head_dim: int = typer.Option(None, "--mamba-head-dim", help="Target Mamba head dimension."),
    attn_heads: int = typer.Option(
        None, "--attn-heads", help="Target attention query heads (multiple of KV heads)."
    ),
    experts: int = typer.Option(
        None,
        "--experts",
        help="MoE: routed experts kept in every MoE block, chosen per block by score (at least top-k).",
    ),
    expert_ffn: int = typer.Option(None, "--expert-ffn", help="MoE: target FFN size of each routed expert."),
    shared_ffn: int = typer.Option(None, "--shared-ffn", help="MoE: target FFN size of the shared expert."),
    layers: int = typer.Option(
        None, "--layers", help="Target block count; drops the least important blocks (depth scores)."
    ),
    drop_blocks: str = typer.Option(
        None, "--drop-blocks", help="Comma-separated source block indices to drop, e.g. 3,17."
    ),
    candidate: str = typer.Option(
        None, "--candidate", help="Candidates JSON from `minitron search`; replaces the target flags."
    ),
    rank: int = typer.Option(None, "--rank", help="Which candidate of --candidate (default 1, the best)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output directory."),
    dtype: str = typer.Option(
        "keep", "--dtype", help="Output weight dtype: keep, bfloat16, float16, float32."
    ),
    max_shard_size: str = typer.Option(
        "2GB", "--max-shard-size", help="Largest safetensors shard, e.g. 2GB."
    ),
) -> None:
    """Slice a checkpoint to a smaller architecture and write a Hugging Face checkpoint."""
    from minitron.errors import MinitronError
    from minitron.prune import PruneConfig, run
    from minitron.prune.target import TargetSpec, parse_block_list

    spec = TargetSpec(
        hidden=hidden,
        ffn=ffn,
        attn_heads=attn_heads,
        mamba_heads=mamba_heads,
        mamba_head_dim=mamba_head_dim,
        experts=experts,
        expert_ffn=expert_ffn,
        shared_ffn=shared_ffn,
        layers=layers,
        drop_blocks=parse_block_list(drop_blocks) if drop_blocks is not None else None,
    )
    if candidate is None and not spec.sizes() and spec.layers is None and spec.drop_blocks is None:
        raise MinitronError(
            "nothing to prune: give target sizes (--hidden, --ffn, --mamba-heads, --mamba-head-dim, "
            "--attn-heads, --experts, --expert-ffn, --shared-ffn, --layers or --drop-blocks) or a search "
            "result (--candidate FILE)"
        )
    run(
        PruneConfig(
            model=model,
            out=out,
            scores=scores,
            target=spec,
            candidate=candidate,
            rank=rank,
            overwrite=overwrite,
            dtype=dtype,
            max_shard_size=max_shard_size,
            command=command_line(ctx),
        )
    )


@app.command()
@friendly
def estimate(
    model: str = typer.Argument(
        ..., help="Checkpoint directory or built-in name (its config.json is enough)."
    ),
    context: str = typer.Option(
        "128k", "--context", help="Tokens per sequence: 128k (=131072), 8k, 1M, 131072."
    ),
    batch: int = typer.Option(1, "--batch", help="Sequences served at once."),
    budget: str = typer.Option(
        None, "--budget", help="Memory budget: 22GiB, 24GB, 19660MiB, 0.5TiB or bytes."
    ),
    gpu: str = typer.Option(
        None,
        "--gpu",
        help="GPU preset (a10g, l4, a100-40g, a100-80g, h100-80g, rtx4090): its memory "
        "is the budget unless --budget is given; its bandwidth gives a decode-speed bound.",
    ),
    headroom: str = typer.Option(None, "--headroom", help="Share of the budget kept free, e.g. 5% or 0.05."),
    reserve: str = typer.Option(None, "--reserve", help="Bytes kept for something else, e.g. 1.3GiB."),
    dtype: str = typer.Option("bfloat16", "--dtype", help="Weight dtype: bfloat16, float16, float32, fp8."),
    kv_dtype: str = typer.Option(None, "--kv-dtype", help="KV cache dtype (default: the compute dtype: bfloat16 for fp8 weights, else --dtype)."),
    ssm_dtype: str = typer.Option(
        None,
        "--ssm-dtype",
        help="Mamba SSM state dtype (default: float32 for transformers, "
        "the config's mamba_ssm_cache_dtype for vllm).",
    ),
    engine: str = typer.Option(
        "transformers",
        "--engine",
        help="Whose caches to size: transformers (conv keeps conv_kernel columns) or vllm (conv_kernel - 1).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables."),
    out: str = typer.Option(None, "--out", help="Also write the JSON to this file."),
) -> None:
    """Parameters and serving memory (weights, KV cache, SSM and conv state) against a budget."""
    from minitron.atomic import json_text
    from minitron.memory import EstimateConfig, estimate_tables, run_estimate, save_json

    config = EstimateConfig.from_options(
        model=model,
        context=context,
        batch=batch,
        budget=budget,
        gpu=gpu,
        headroom=headroom,
        reserve=reserve,
        dtype=dtype,
        kv_dtype=kv_dtype,
        ssm_dtype=ssm_dtype,
        engine=engine,
    )
    report = run_estimate(config)
    data = report.to_dict()
    if out is not None:
        save_json(data, out)
    if as_json:
        typer.echo(json_text(data))
        return
    from rich.console import Console

    console = Console()
    for table in estimate_tables(report):
        console.print(table)


@app.command()
@friendly
def score(
    model: str = typer.Argument(..., help="Checkpoint directory (or built-in name, e.g. tiny) to score."),
    data: str = DATA_OPTION,
    text_field: str = TEXT_FIELD_OPTION,
    glob: str = GLOB_OPTION,
    samples: int = typer.Option(1024, "--samples", help="Calibration sequences (the papers use 1024)."),
    seq_len: int = typer.Option(
        8192, "--seq-len", help="Tokens per sequence (Nano 2: 8192; on CPU try 256)."
    ),
    batch_size: int = typer.Option(1, "--batch-size", help="Sequences per forward pass."),
    out: str = typer.Option(
        "scores.safetensors", "--out", help="Scores file; a .json summary and -depth.png plot go next to it."
    ),
    width: bool = typer.Option(
        True, "--width/--no-width", help="Score hidden channels, FFN neurons, attention and Mamba heads."
    ),
    depth: str = typer.Option(
        "mse",
        "--depth",
        help="Block importance: mse (normalised logit MSE), kl, cosine (Block Influence), none.",
    ),
    depth_mode: str = typer.Option(
        "iterative", "--depth-mode", help="iterative (remove the least important, rescore) or one-shot."
    ),
    depth_iterations: int = typer.Option(
        None,
        "--depth-iterations",
        help="Iterative depth: stop after N removals and order the rest one-shot (~N*n^2/2 block runs).",
    ),
    depth_samples: int = typer.Option(
        None, "--depth-samples", help="Score depth on the first N calibration samples [default: all]."
    ),
    aggregation: str = typer.Option(
        "mean-l2",
        "--aggregation",
        help="Width aggregation over sequence-batch: mean-l2, mean-mean, l2-l2, var-var.",
    ),
    expert_score: str = typer.Option(
        "reap",
        "--expert-score",
        help="Routed experts (MoE models): reap (mean gate x output norm over routed tokens), "
        "frequency (share of tokens routed), norm (mean output norm).",
    ),
    device: str = DEVICE_OPTION,
    dtype: str = typer.Option(
        "auto",
        "--dtype",
        help="Model weights: auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON summary instead of tables."),
) -> None:
    """Importance of blocks, hidden channels, FFN neurons, attention and Mamba heads (torchrun-aware)."""
    from minitron.atomic import json_text
    from minitron.importance.distributed import rank_and_world
    from minitron.importance.report import summary
    from minitron.importance.run import ScoreConfig, run

    scores = run(
        ScoreConfig(
            model=model,
            out=out,
            data=data,
            text_field=text_field,
            glob=glob,
            samples=samples,
            seq_len=seq_len,
            batch_size=batch_size,
            width=width,
            depth=depth,
            depth_mode=depth_mode,
            depth_iterations=depth_iterations,
            depth_samples=depth_samples,
            aggregation=aggregation,
            expert_score=expert_score,
            device=device,
            dtype=dtype,
            report=not as_json,
        )
    )
    if as_json and rank_and_world()[0] == 0:
        typer.echo(json_text(summary(scores), sort_keys=True))


# Options of every training run (train, distill, compare): defined once, so their help is too.
SEQ_LEN_OPTION = typer.Option(256, "--seq-len", help="Tokens per packed sequence.")
BATCH_SIZE_OPTION = typer.Option(
    8, "--batch-size", help="Sequences per micro-batch (global batch = this x --grad-accum x processes)."
)
SAMPLES_OPTION = typer.Option(0, "--samples", help="Sequences per pass over the data (0 = all).")
HELDOUT_OPTION = typer.Option(
    0.05, "--heldout-fraction", help="Share of documents held out for evaluation (chosen by text hash)."
)
MIN_LR_RATIO_OPTION = typer.Option(0.1, "--min-lr-ratio", help="Final learning rate as a fraction of --lr.")
WARMUP_OPTION = typer.Option(50, "--warmup-steps", help="Linear warm-up steps.")
SCHEDULE_OPTION = typer.Option("cosine", "--schedule", help="cosine, or wsd (warm-up, stable, decay).")
DECAY_FRACTION_OPTION = typer.Option(0.2, "--decay-fraction", help="wsd: share of steps spent decaying.")
WEIGHT_DECAY_OPTION = typer.Option(0.1, "--weight-decay", help="AdamW weight decay (matrices only).")
GRAD_CLIP_OPTION = typer.Option(1.0, "--grad-clip", help="Clip the gradient norm to this (0 = off).")
GRAD_ACCUM_OPTION = typer.Option(1, "--grad-accum", help="Micro-batches per optimizer step and process.")
PRECISION_OPTION = typer.Option("auto", "--precision", help="auto (bf16 autocast on CUDA), bf16 or fp32.")
SEED_OPTION = typer.Option(0, "--seed", help="Seed of the data order and of torch.")
EVAL_EVERY_OPTION = typer.Option(
    100, "--eval-every", help="Held-out evaluation every N steps (0 = at the end)."
)
EVAL_BATCHES_OPTION = typer.Option(8, "--eval-batches", help="Held-out batches per evaluation.")
SAVE_EVERY_OPTION = typer.Option(100, "--save-every", help="Checkpoint every N steps (0 = at the end).")
RESUME_OPTION = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint.")
STOP_AT_OPTION = typer.Option(
    0, "--stop-at-step", help="Checkpoint and stop after this step (0 = run to --steps)."
)
TOKENS_OPTION = typer.Option(
    0, "--tokens", help="Train on this many tokens instead of --steps (0 = use --steps)."
)
FSDP_OPTION = typer.Option(
    False,
    "--fsdp",
    help="Under torchrun: shard student and teacher with FSDP2 instead of data parallel (DDP).",
)



# TrainConfig fields that `train` and `distill` take under the same option names.
TRAIN_OPTIONS = (
    "steps", "tokens", "lr", "min_lr_ratio", "warmup_steps", "schedule", "decay_fraction", "weight_decay",
    "grad_clip", "grad_accum", "precision", "seed", "eval_every", "eval_batches", "save_every", "device",
    "fsdp", "resume", "stop_at_step",
)  # fmt: skip


def _train_config(model: str, spec, out: str, options: dict):
    """The TrainConfig of a training command from its parsed options (0 = off for --tokens, --stop-at-step)."""
    from minitron.distill import TrainConfig

    kwargs = {name: options[name] for name in TRAIN_OPTIONS}
    kwargs["tokens"] = kwargs["tokens"] or None
    kwargs["stop_at_step"] = kwargs["stop_at_step"] or None
    return TrainConfig(model=model, data=spec, out=out, **kwargs)

def _data_spec(data, text_field, glob, seq_len, batch_size, samples, heldout_fraction, seed):
    from minitron.data import DEFAULT_GLOB, DataSpec

    return DataSpec(source=data, text_field=text_field, glob=glob or DEFAULT_GLOB, seq_len=seq_len,
                    batch_size=batch_size, samples=samples or None, heldout_fraction=heldout_fraction, seed=seed)  # fmt: skip


AXIS_HELP = (
    "a value (4480), a list (4352,4480), a range LO:HI in axis steps or LO:HI:STEP, or 'source'"
)


@app.command()
@friendly
def search(
    model: str = typer.Argument(
        ..., help="Checkpoint directory or built-in name; a config-only preset ranks without weights."
    ),
    out: str = typer.Option("runs/search", "--out", help="Output directory (candidates, plot, study)."),
    scores: str = typer.Option(
        None, "--scores", help="Scores file from `minitron score` (width rankings, depth order)."
    ),
    budget: str = typer.Option(None, "--budget", help="Memory budget: 22GiB, 24GB, 19660MiB or bytes."),
    gpu: str = typer.Option(
        None, "--gpu", help="GPU preset (a10g, l4, a100-80g, h100-80g, ...): the budget without --budget, "
        "and the bandwidth of the decode estimate [default: a10g for the estimate]."
    ),
    headroom: str = typer.Option(None, "--headroom", help="Share of the budget kept free, e.g. 5%."),
    reserve: str = typer.Option(None, "--reserve", help="Bytes kept for something else, e.g. 1.3GiB."),
    context: str = typer.Option("128k", "--context", help="Tokens per sequence served: 128k, 8k, 131072."),
    batch: int = typer.Option(1, "--batch", help="Sequences served at once."),
    dtype: str = typer.Option("bfloat16", "--dtype", help="Serving weight dtype."),
    kv_dtype: str = typer.Option(None, "--kv-dtype", help="KV cache dtype [default: the compute dtype]."),
    ssm_dtype: str = typer.Option(None, "--ssm-dtype", help="Mamba SSM state dtype [default: per engine]."),
    engine: str = typer.Option("transformers", "--engine", help="transformers or vllm (conv state columns)."),
    layers: str = typer.Option(
        None, "--layers", help=f"Block counts: {AXIS_HELP}; removed blocks follow the depth order."
    ),
    hidden: str = typer.Option(None, "--hidden", help=f"Hidden sizes: {AXIS_HELP}."),
    ffn: str = typer.Option(None, "--ffn", help=f"FFN sizes: {AXIS_HELP}."),
    mamba_heads: str = typer.Option(None, "--mamba-heads", help="Mamba heads (multiples of the groups)."),
    mamba_head_dim: str = typer.Option(None, "--mamba-head-dim", help="Mamba head dims (step 8)."),
    attn_heads: str = typer.Option(
        None, "--attn-heads", help="Attention heads (multiples of KV heads) [default: source, as Nano 2]."
    ),
    drop_blocks: str = typer.Option(
        None, "--drop-blocks", help="Comma-separated source blocks to drop (instead of --layers)."
    ),
    granularity: int = typer.Option(64, "--granularity", help="Step of hidden and FFN ranges."),
    max_prune: str = typer.Option(
        None, "--max-prune", help="Largest share pruned on a default axis: 40% (all) or hidden=30%,ffn=50%."
    ),
    min_params: str = typer.Option(None, "--min-params", help="Fewest parameters: 8B, 500M, 60%."),
    max_params: str = typer.Option(None, "--max-params", help="Most parameters: 9B, 72% (of the source)."),
    min_active_params: str = typer.Option(
        None, "--min-active-params", help="MoE: fewest parameters one token passes through: 2B, 60%."
    ),
    max_active_params: str = typer.Option(
        None, "--max-active-params", help="MoE: most parameters one token passes through: 3.0B, 85% (of the source's)."
    ),
    no_eval: bool = typer.Option(
        False, "--no-eval", help="Rank the feasible frontier by a weight-free proxy; load no weights."
    ),
    objective: str = typer.Option("kl", "--objective", help="kl (KL teacher||candidate) or lm-loss."),
    throughput: bool = typer.Option(
        False, "--throughput/--no-throughput", help="Also maximise estimated decode tokens/s (NSGA-II)."
    ),
    trials: int = typer.Option(100, "--trials", help="Architectures to evaluate (the study's total)."),
    timeout: float = typer.Option(None, "--timeout", help="Stop starting trials after this many seconds."),
    workers: int = typer.Option(1, "--workers", help="Worker processes sharing the study."),
    storage: str = typer.Option(
        None, "--storage", help="Study storage: a journal file path, sqlite:///f.db, postgresql://... "
        "[default: OUT/study.journal]."
    ),
    seed: int = typer.Option(0, "--seed", help="Sampler seed."),
    seed_trials: int = typer.Option(
        10, "--seed-trials", help="Best frontier points (largest that fit) enqueued as the first trials."
    ),
    top: int = typer.Option(100, "--top", help="Candidates written."),
    data: str = DATA_OPTION,
    text_field: str = TEXT_FIELD_OPTION,
    glob: str = GLOB_OPTION,
    eval_samples: int = typer.Option(16, "--eval-samples", help="Held-out sequences for the objective."),
    seq_len: int = typer.Option(256, "--seq-len", help="Tokens per evaluation sequence."),
    batch_size: int = typer.Option(4, "--batch-size", help="Sequences per evaluation forward."),
    top_k: int = typer.Option(64, "--top-k", help="Teacher log-probabilities kept per token."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1 or auto (cuda when available)."),
) -> None:
    """Search the architectures that fit a memory budget; rank them against the teacher."""
    from minitron.prune.target import parse_block_list
    from minitron.search.run import SearchConfig, run

    run(
        SearchConfig(
            model=model,
            out=out,
            scores=scores,
            axes={
                "layers": layers,
                "hidden": hidden,
                "ffn": ffn,
                "mamba_heads": mamba_heads,
                "mamba_head_dim": mamba_head_dim,
                "attn_heads": attn_heads,
            },
            drop_blocks=parse_block_list(drop_blocks) if drop_blocks is not None else None,
            granularity=granularity,
            max_prune=max_prune,
            budget=budget,
            gpu=gpu,
            headroom=headroom,
            reserve=reserve,
            context=context,
            batch=batch,
            dtype=dtype,
            kv_dtype=kv_dtype,
            ssm_dtype=ssm_dtype,
            engine=engine,
            min_params=min_params,
            max_params=max_params,
            min_active_params=min_active_params,
            max_active_params=max_active_params,
            evaluate=not no_eval,
            objective=objective,
            throughput_objective=throughput,
            trials=trials,
            timeout_s=timeout,
            workers=workers,
            storage=storage,
            seed=seed,
            seed_trials=seed_trials,
            top=top,
            data=data,
            text_field=text_field,
            glob=glob,
            eval_samples=eval_samples,
            seq_len=seq_len,
            batch_size=batch_size,
            top_k=top_k,
            device=device,
        )
    )


@app.command()
@friendly
def train(
    model: str = typer.Argument(..., help="Checkpoint directory or built-in name (tiny) to train."),
    data: str = DATA_OPTION,
    text_field: str = TEXT_FIELD_OPTION,
    glob: str = GLOB_OPTION,
    seq_len: int = SEQ_LEN_OPTION,
    batch_size: int = BATCH_SIZE_OPTION,
    samples: int = SAMPLES_OPTION,
    heldout_fraction: float = HELDOUT_OPTION,
    out: str = typer.Option("runs/train", "--out", help="Run directory: metrics, checkpoints, final model."),
    steps: int = typer.Option(1000, "--steps", help="Optimizer steps."),
    tokens: int = TOKENS_OPTION,
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (AdamW)."),
    min_lr_ratio: float = MIN_LR_RATIO_OPTION,
    warmup_steps: int = WARMUP_OPTION,
    schedule: str = SCHEDULE_OPTION,
    decay_fraction: float = DECAY_FRACTION_OPTION,
    weight_decay: float = WEIGHT_DECAY_OPTION,
    grad_clip: float = GRAD_CLIP_OPTION,
    grad_accum: int = GRAD_ACCUM_OPTION,
    precision: str = PRECISION_OPTION,
    seed: int = SEED_OPTION,
    eval_every: int = EVAL_EVERY_OPTION,
    eval_batches: int = EVAL_BATCHES_OPTION,
    save_every: int = SAVE_EVERY_OPTION,
    device: str = DEVICE_OPTION,
    fsdp: bool = FSDP_OPTION,
    resume: bool = RESUME_OPTION,
    stop_at_step: int = STOP_AT_OPTION,
) -> None:
    """Train a model on text with next-token cross-entropy (resumable, torchrun-aware)."""
    from minitron.distill import result_table
    from minitron.distill import train as run_training
    from minitron.importance.distributed import rank_and_world

    spec = _data_spec(data, text_field, glob, seq_len, batch_size, samples, heldout_fraction, seed)
    result = run_training(
        _train_config(model, spec, out, locals())
    )
    if rank_and_world()[0] == 0:
        from rich.console import Console

        Console().print(result_table(result))


KD_LOSS_OPTION = typer.Option(
    "forward_kl",
    "--loss",
    help="forward_kl: KL(teacher || student), the Minitron loss; reverse_kl; jsd (generalised, see --beta).",
)
TAU_OPTION = typer.Option(
    1.0, "--tau", help="Softmax temperature of both models; the loss is scaled by tau^2."
)
BETA_OPTION = typer.Option(
    0.5, "--beta", help="jsd: the teacher's weight in the mixture (0.5 = symmetric JSD)."
)
CE_WEIGHT_OPTION = typer.Option(0.0, "--ce-weight", help="Add this x next-token cross-entropy on the data.")
TOPK_OPTION = typer.Option(
    0, "--teacher-topk", help="Match the teacher's top-k tokens plus the rest mass (0 = all)."
)
CHUNK_OPTION = typer.Option(
    256, "--chunk-tokens", help="Tokens projected to the vocabulary at once (logits never exist for more)."
)
KD_LR_OPTION = typer.Option(1e-4, "--lr", help="Peak learning rate (AdamW); decays to --min-lr-ratio x it.")


@app.command()
@friendly
def distill(
    teacher: str = typer.Argument(..., help="Teacher checkpoint directory or built-in name (tiny)."),
    student: str = typer.Argument(..., help="Student checkpoint directory (e.g. from `minitron prune`)."),
    data: str = DATA_OPTION,
    text_field: str = TEXT_FIELD_OPTION,
    glob: str = GLOB_OPTION,
    seq_len: int = SEQ_LEN_OPTION,
    batch_size: int = BATCH_SIZE_OPTION,
    samples: int = SAMPLES_OPTION,
    heldout_fraction: float = HELDOUT_OPTION,
    out: str = typer.Option(
        "runs/distill", "--out", help="Run directory: metrics, checkpoints, final model."
    ),
    steps: int = typer.Option(1000, "--steps", help="Optimizer steps."),
    tokens: int = TOKENS_OPTION,
    loss: str = KD_LOSS_OPTION,
    tau: float = TAU_OPTION,
    beta: float = BETA_OPTION,
    ce_weight: float = CE_WEIGHT_OPTION,
    teacher_topk: int = TOPK_OPTION,
    chunk_tokens: int = CHUNK_OPTION,
    teacher_device: str = typer.Option(
        None, "--teacher-device", help="Run the teacher on this device (default: the --device)."
    ),
    teacher_dtype: str = typer.Option(
        "auto", "--teacher-dtype", help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16."
    ),
    lr: float = KD_LR_OPTION,
    min_lr_ratio: float = MIN_LR_RATIO_OPTION,
    warmup_steps: int = WARMUP_OPTION,
    schedule: str = SCHEDULE_OPTION,
    decay_fraction: float = DECAY_FRACTION_OPTION,
    weight_decay: float = WEIGHT_DECAY_OPTION,
    grad_clip: float = GRAD_CLIP_OPTION,
    grad_accum: int = GRAD_ACCUM_OPTION,
    precision: str = PRECISION_OPTION,
    seed: int = SEED_OPTION,
    eval_every: int = EVAL_EVERY_OPTION,
    eval_batches: int = EVAL_BATCHES_OPTION,
    save_every: int = SAVE_EVERY_OPTION,
    device: str = DEVICE_OPTION,
    fsdp: bool = FSDP_OPTION,
    resume: bool = RESUME_OPTION,
    stop_at_step: int = STOP_AT_OPTION,
) -> None:
    """Distil the teacher's logits into the student (KL on chunked logits; resumable, torchrun-aware)."""
    from minitron.distill import result_table
    from minitron.distill.losses import KDLoss
    from minitron.distill.run import DistillConfig
    from minitron.distill.run import distill as run_distill
    from minitron.importance.distributed import rank_and_world

    spec = _data_spec(data, text_field, glob, seq_len, batch_size, samples, heldout_fraction, seed)
    config = DistillConfig(
        teacher=teacher,
        train=_train_config(student, spec, out, locals()),
        loss=KDLoss(divergence=loss, tau=tau, beta=beta, ce_weight=ce_weight, teacher_topk=teacher_topk),
        chunk_tokens=chunk_tokens,
        teacher_device=teacher_device,
        teacher_dtype=teacher_dtype,
    )
    result = run_distill(config)
    if rank_and_world()[0] == 0:
        from rich.console import Console

        Console().print(result_table(result, result.objective_name))


def _stage_options() -> dict[str, dict]:
    """Every option of every pipeline stage, read from the commands themselves: a run file's keys are
    the CLI's options, one definition for both."""
    from minitron.pipeline.config import STAGES, Option

    group = typer.main.get_command(app)
    options: dict[str, dict] = {}
    for stage in STAGES:
        command = group.commands.get(stage)
        options[stage] = {}
        for param in command.params if command else []:
            if param.param_type_name != "option" or param.name in ("help",):
                continue
            flag = max((o for o in param.opts if o.startswith("--")), key=len, default=param.opts[0])
            off = next((o for o in param.secondary_opts if o.startswith("--")), None)
            options[stage][param.name] = Option(param.name, flag, bool(getattr(param, "is_flag", False)), off)
    return options


EVAL_TASKS_OPTION = typer.Option(
    None,
    "--eval-tasks",
    help="Also score teacher, pruned and distilled models on these lm-eval tasks (comma-separated names "
    "or local task YAML files; needs pip install 'minitron[eval]'); wins over the file's eval-tasks.",
)


def _invoke(argv: list[str]) -> int:
    """Run one `minitron ...` command line in this process; its exit code."""
    import click

    try:
        result = typer.main.get_command(app).main(args=argv, prog_name="minitron", standalone_mode=False)
    except click.ClickException as e:
        typer.echo(f"error: minitron {argv[0]}: {e.format_message()}", err=True)
        return e.exit_code or 2
    return result if isinstance(result, int) else 0


def _run_pipeline(config_file: str, out: str | None, eval_tasks: str | None) -> None:
    from minitron.pipeline import load_run_config, run_pipeline

    options = _stage_options()
    config = load_run_config(config_file, options, out=out, eval_tasks=eval_tasks)
    code = run_pipeline(config, options, _invoke)
    if code:
        raise typer.Exit(code)


@app.command("run")
@friendly
def run_command(
    config: str = typer.Argument(..., help="Run file (TOML): teacher, data, and any option of any stage."),
    out: str = typer.Option(None, "--out", help="Run directory (default: the file's `out`, else runs/run)."),
    eval_tasks: str = EVAL_TASKS_OPTION,
) -> None:
    """The whole job from one file: score -> search -> compare -> prune -> distill (-> evaluate), and a report.

    Each stage's outputs go to a subfolder of the run directory; running the same file again skips
    the stages already done with the same inputs and resumes an interrupted one.
    """
    _run_pipeline(config, out, eval_tasks)


@app.command()
@friendly
def demo(
    out: str = typer.Option("runs/demo", "--out", help="Run directory."),
    eval_tasks: str = EVAL_TASKS_OPTION,
) -> None:
    """The whole job on the built-in tiny teacher and corpus (minitron/assets/demo.toml), a few minutes on a CPU."""
    from minitron.model.load import ASSETS_DIR

    _run_pipeline(str(ASSETS_DIR / "demo.toml"), out, eval_tasks)

@app.command()
@friendly
def compare(
    teacher: str = typer.Argument(
        ..., help="The checkpoint the candidates were searched from (the teacher)."
    ),
    candidates: str = typer.Argument(
        ..., help="candidates.json from `minitron search` (format: prune/target.py)."
    ),
    scores: str = typer.Option(
        None, "--scores", help="Scores file from `minitron score`; needed for width pruning."
    ),
    top: int = typer.Option(3, "--top", help="Distil the candidates ranked 1..N."),
    context: str = typer.Option(
        "128k", "--context", help="Context of the memory column when the candidates file gives none."
    ),
    data: str = DATA_OPTION,
    text_field: str = TEXT_FIELD_OPTION,
    glob: str = GLOB_OPTION,
    seq_len: int = SEQ_LEN_OPTION,
    batch_size: int = BATCH_SIZE_OPTION,
    samples: int = SAMPLES_OPTION,
    heldout_fraction: float = HELDOUT_OPTION,
    out: str = typer.Option(
        "runs/compare",
        "--out",
        help="Directory: one distill run per candidate and the comparison table; "
        "running again with the same settings continues a stopped compare.",
    ),
    steps: int = typer.Option(200, "--steps", help="Optimizer steps per candidate."),
    tokens: int = TOKENS_OPTION,
    loss: str = KD_LOSS_OPTION,
    tau: float = TAU_OPTION,
    beta: float = BETA_OPTION,
    ce_weight: float = CE_WEIGHT_OPTION,
    teacher_topk: int = TOPK_OPTION,
    chunk_tokens: int = CHUNK_OPTION,
    lr: float = KD_LR_OPTION,
    min_lr_ratio: float = MIN_LR_RATIO_OPTION,
    warmup_steps: int = typer.Option(10, "--warmup-steps", help="Linear warm-up steps."),
    schedule: str = SCHEDULE_OPTION,
    grad_clip: float = GRAD_CLIP_OPTION,
    grad_accum: int = GRAD_ACCUM_OPTION,
    precision: str = PRECISION_OPTION,
    seed: int = SEED_OPTION,
    eval_batches: int = EVAL_BATCHES_OPTION,
    save_every: int = typer.Option(50, "--save-every", help="Checkpoint each candidate's run every N steps."),
    device: str = DEVICE_OPTION,
) -> None:
    """Prune the top candidates of a search, distil each the same way, and rank them again."""
    from minitron.device import resolve_device
    from minitron.distill import TrainConfig
    from minitron.distill.compare import CompareConfig
    from minitron.distill.compare import compare as run_compare
    from minitron.distill.losses import KDLoss

    resolve_device(device)  # a device this machine lacks: one line, before anything is loaded
    spec = _data_spec(data, text_field, glob, seq_len, batch_size, samples, heldout_fraction, seed)
    run_compare(
        CompareConfig(
            teacher=teacher,
            candidates=candidates,
            out=out,
            scores=scores,
            top=top,
            context=context,
            loss=KDLoss(divergence=loss, tau=tau, beta=beta, ce_weight=ce_weight, teacher_topk=teacher_topk),
            chunk_tokens=chunk_tokens,
            train=TrainConfig(
                data=spec,
                steps=steps,
                tokens=tokens or None,
                lr=lr,
                min_lr_ratio=min_lr_ratio,
                warmup_steps=warmup_steps,
                schedule=schedule,
                grad_clip=grad_clip,
                grad_accum=grad_accum,
                precision=precision,
                seed=seed,
                eval_every=0,
                eval_batches=eval_batches,
                save_every=save_every,
                device=device,
            ),
        )
    )


@app.command()
@friendly
def evaluate(
    models: list[str] = typer.Argument(
        ..., help="Checkpoint directories or built-in names (tiny), evaluated side by side."
    ),
    tasks: str = typer.Option(
        ..., "--tasks", help="Comma-separated lm-eval task names or local task YAML files/directories."
    ),
    limit: float = typer.Option(None, "--limit", help="Examples per task (default: all)."),
    num_fewshot: int = typer.Option(None, "--num-fewshot", help="Few-shot examples (default: the task's)."),
    batch_size: int = typer.Option(1, "--batch-size", help="Requests per forward pass."),
    device: str = DEVICE_OPTION,
    out: str = typer.Option("runs/eval", "--out", help="Directory for results.json and results.csv."),
) -> None:
    """Benchmark accuracy with lm-evaluation-harness, models side by side (pip install 'minitron[eval]')."""
    from rich.console import Console

    from minitron.evaluate import EvalConfig, run, table

    results = run(
        EvalConfig(
            models=models,
            tasks=tasks,
            out=out,
            limit=limit,
            batch_size=batch_size,
            device=device,
            num_fewshot=num_fewshot,
        )
    )
    Console().print(table(results))


def main() -> None:
    app(prog_name="minitron")


if __name__ == "__main__":
    sys.exit(main())
