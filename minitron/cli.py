"""The `minitron` command: a thin typer app.

Every command parses options, builds a config dataclass and calls one library function. Heavy
imports (torch, transformers) happen inside the commands, so `minitron --help` stays fast.
User errors (`MinitronError`) print one line on stderr and exit 1, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from minitron.cli_app import friendly, make_app
from minitron.cli_options import (
    DATA_OPTION,
    DEVICE_OPTION,
    EVAL_DTYPE_OPTION,
    EVAL_TASKS_OPTION,
    GLOB_OPTION,
    KD_OPTIONS,
    RUN_OPTIONS,
    SERVING_OPTIONS,
    TEXT_FIELD_OPTION,
    TRAINING_OPTIONS,
    all_options,
    axis_options,
    command_line,
    granularity_axes,
    run_file,
    with_options,
)

app = make_app()


@app.command()
@friendly
@with_options(lambda: axis_options(int, "prune_help"), after="scores")
def prune(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Checkpoint directory (or built-in name) to prune."),
    out: str = typer.Option(..., "--out", help="Output directory for the pruned checkpoint."),
    scores: str = typer.Option(
        None, "--scores", help="Scores file from `minitron score`; needed for width pruning and --layers."
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
    **options: Any,
) -> None:
    """Slice a checkpoint to a smaller architecture and write a Hugging Face checkpoint."""
    given = all_options(locals())
    from minitron.prune import PruneConfig, run

    run(PruneConfig.from_options(**given, command=command_line(ctx)))


@app.command()
@friendly
@with_options(SERVING_OPTIONS, after="model")
def estimate(
    model: str = typer.Argument(
        ..., help="Checkpoint directory or built-in name (its config.json is enough)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables."),
    out: str = typer.Option(None, "--out", help="Also write the JSON to this file."),
    **options: Any,
) -> None:
    """Parameters and serving memory (weights, KV cache, SSM and conv state) against a budget."""
    given = all_options(locals())
    from minitron.estimate import EstimateConfig, run

    run(EstimateConfig.from_options(**given))


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
    options = dict(locals())
    from minitron.importance.run import ScoreConfig, run

    run(ScoreConfig(**options))


@app.command()
@friendly
@with_options(SERVING_OPTIONS, lambda: axis_options(str, "search_help"), after="scores")
def search(
    model: str = typer.Argument(
        ..., help="Checkpoint directory or built-in name; a config-only preset ranks without weights."
    ),
    out: str = typer.Option("runs/search", "--out", help="Output directory (candidates, plot, study)."),
    scores: str = typer.Option(
        None, "--scores", help="Scores file from `minitron score` (width rankings, depth order)."
    ),
    drop_blocks: str = typer.Option(
        None, "--drop-blocks", help="Comma-separated source blocks to drop (instead of --layers)."
    ),
    granularity: int = typer.Option(64, "--granularity", help=f"Step of {granularity_axes()} ranges."),
    max_prune: str = typer.Option(
        None,
        "--max-prune",
        help="Largest share pruned on a default axis: 40% (all) or hidden=30%,ffn=50%; and per block kind "
        "of a hybrid's depth, attention-blocks=50% (default 40% of each kind; 100% lets a kind go entirely).",
    ),
    min_params: str = typer.Option(None, "--min-params", help="Fewest parameters: 8B, 500M, 60%."),
    max_params: str = typer.Option(None, "--max-params", help="Most parameters: 9B, 72% (of the source)."),
    min_active_params: str = typer.Option(
        None, "--min-active-params", help="MoE: fewest parameters one token passes through: 2B, 60%."
    ),
    max_active_params: str = typer.Option(
        None,
        "--max-active-params",
        help="MoE: most parameters one token passes through: 3.0B, 85% (of the source's).",
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
        None,
        "--storage",
        help="Study storage: a journal file path, sqlite:///f.db, postgresql://... "
        "[default: OUT/study.journal].",
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
    eval_dtype: str = EVAL_DTYPE_OPTION,
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1 or auto (cuda when available)."),
    **options: Any,
) -> None:
    """Search the architectures that fit a memory budget; rank them against the teacher."""
    given = all_options(locals())
    from minitron.search.run import SearchConfig, run

    run(SearchConfig.from_options(**given))


@app.command()
@friendly
@with_options(TRAINING_OPTIONS, RUN_OPTIONS)
def train(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Checkpoint directory or built-in name (tiny) to train."),
    out: str = typer.Option("runs/train", "--out", help="Run directory: metrics, checkpoints, final model."),
    steps: int = typer.Option(1000, "--steps", help="Optimizer steps."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (AdamW)."),
    **options: Any,
) -> None:
    """Train a model on text with next-token cross-entropy (resumable, torchrun-aware)."""
    given = all_options(locals())
    from minitron.distill.run import main, train_config

    main(train_config(**given, command=command_line(ctx)))


@app.command()
@friendly
@with_options(TRAINING_OPTIONS, KD_OPTIONS, RUN_OPTIONS)
def distill(
    ctx: typer.Context,
    teacher: str = typer.Argument(..., help="Teacher checkpoint directory or built-in name (tiny)."),
    student: str = typer.Argument(..., help="Student checkpoint directory (e.g. from `minitron prune`)."),
    out: str = typer.Option(
        "runs/distill", "--out", help="Run directory: metrics, checkpoints, final model."
    ),
    steps: int = typer.Option(1000, "--steps", help="Optimizer steps."),
    teacher_device: str = typer.Option(
        None, "--teacher-device", help="Run the teacher on this device (default: the --device)."
    ),
    teacher_dtype: str = typer.Option(
        "auto", "--teacher-dtype", help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16."
    ),
    **options: Any,
) -> None:
    """Distil the teacher's logits into the student (KL on chunked logits; resumable, torchrun-aware)."""
    given = all_options(locals())
    from minitron.distill.run import DistillConfig, main

    main(DistillConfig.from_options(**given, command=command_line(ctx)))


@app.command()
@friendly
@with_options(TRAINING_OPTIONS, KD_OPTIONS)
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
    out: str = typer.Option(
        "runs/compare",
        "--out",
        help="Directory: one distill run per candidate and the comparison table; "
        "running again with the same settings continues a stopped compare.",
    ),
    steps: int = typer.Option(200, "--steps", help="Optimizer steps per candidate."),
    warmup_steps: int = typer.Option(
        10,
        "--warmup-steps",
        help="Linear warm-up steps (not below --steps: a tenth of --steps, with a note).",
    ),
    save_every: int = typer.Option(50, "--save-every", help="Checkpoint each candidate's run every N steps."),
    **options: Any,
) -> None:
    """Prune the top candidates of a search, distil each the same way, and rank them again."""
    given = all_options(locals())
    from minitron.distill.compare import CompareConfig
    from minitron.distill.compare import compare as run

    run(CompareConfig.from_options(**given))


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
    options = dict(locals())
    from minitron.evaluate import EvalConfig, main

    main(EvalConfig(**options))


@app.command("run")
@friendly
def run_command(
    config: str = typer.Argument(..., help="Run file (TOML): teacher, data, and any option of any stage."),
    out: str = typer.Option(None, "--out", help="Run directory (default: the file's `out`, else runs/run)."),
    eval_tasks: str = EVAL_TASKS_OPTION,
) -> None:
    """The whole job from one file: score -> search -> compare -> prune -> distill (-> evaluate), and a report.

    Each stage's outputs go to a subfolder of the run directory; running the same file again skips
    the stages already done with the same inputs and resumes an interrupted one. Every stage's
    options and outputs are checked before the first stage starts.
    """
    run_file(app, config, out, eval_tasks)


@app.command()
@friendly
def demo(
    out: str = typer.Option("runs/demo", "--out", help="Run directory."),
    eval_tasks: str = EVAL_TASKS_OPTION,
) -> None:
    """The whole job on the built-in tiny teacher and corpus (minitron/assets/demo.toml), a few minutes on a CPU."""
    from minitron.model.load import ASSETS_DIR

    run_file(app, str(ASSETS_DIR / "demo.toml"), out, eval_tasks)


@app.command()
@friendly
@with_options(lambda: axis_options(int, "prune_help"), after="scores")
def plan(
    teacher: str = typer.Argument(
        ..., help="Teacher checkpoint directory or built-in name (a config is enough)."
    ),
    student: str = typer.Argument(
        None, help="Student checkpoint directory or built-in name (a pruned model, nemotron-nano-9b-v2, ...)."
    ),
    candidate: str = typer.Option(
        None, "--candidate", help="Candidates JSON from `minitron search` (the student)."
    ),
    rank: int = typer.Option(1, "--rank", help="Which candidate of --candidate."),
    scores: str = typer.Option(None, "--scores", help="Scores file: the depth order --layers drops by."),
    drop_blocks: str = typer.Option(
        None, "--drop-blocks", help="Teacher blocks the student drops, e.g. 3,17."
    ),
    gpu: str = typer.Option(
        "h100-80g",
        "--gpu",
        help="GPU preset (a10g, l4, a100-40g, a100-80g, h100-80g, rtx4090) or cpu (process RSS).",
    ),
    gpus: int = typer.Option(1, "--gpus", help="GPUs of that type (data parallel, or sharded with --fsdp)."),
    fsdp: bool = typer.Option(False, "--fsdp", help="Shard teacher, student, gradients and moments (FSDP2)."),
    seq_len: int = typer.Option(8192, "--seq-len", help="Tokens per sequence in every stage."),
    batch_size: int = typer.Option(1, "--batch-size", help="Micro-batch: sequences per device per forward."),
    global_batch: int = typer.Option(
        None, "--global-batch", help="Sequences per optimizer step (default: --batch-size x --gpus)."
    ),
    tokens: int = typer.Option(50_000_000_000, "--tokens", help="Distillation tokens (Nano 2: 50000000000)."),
    steps: int = typer.Option(None, "--steps", help="Distillation steps instead of --tokens."),
    compare_tokens: int = typer.Option(
        2_000_000_000, "--compare-tokens", help="Distillation tokens per compared candidate."
    ),
    top: int = typer.Option(3, "--top", help="Candidates compare distils."),
    teacher_dtype: str = typer.Option(
        "auto", "--teacher-dtype", help="auto (bfloat16 on GPUs, float32 on cpu)."
    ),
    student_dtype: str = typer.Option("float32", "--student-dtype", help="Trained weights and gradients."),
    eval_dtype: str = EVAL_DTYPE_OPTION,
    precision: str = typer.Option(
        "auto", "--precision", help="Activations: auto (bf16 on GPUs), bf16, fp32."
    ),
    gradient_checkpointing: bool = TRAINING_OPTIONS["gradient_checkpointing"][1],
    chunk_tokens: int = KD_OPTIONS["chunk_tokens"][1],
    samples: int = typer.Option(1024, "--samples", help="Calibration sequences of score."),
    depth_samples: int = typer.Option(
        None, "--depth-samples", help="Calibration sequences depth scoring uses."
    ),
    depth_mode: str = typer.Option("iterative", "--depth-mode", help="iterative or one-shot."),
    eval_samples: int = typer.Option(16, "--eval-samples", help="Search evaluation sequences."),
    top_k: int = typer.Option(64, "--top-k", help="Top-k of the search's teacher cache."),
    trials: int = typer.Option(100, "--trials", help="Search trials."),
    mfu: float = typer.Option(0.4, "--mfu", help="Model-FLOPs utilisation the times assume (0.4 = 40%)."),
    allocator_headroom: str = typer.Option(
        None, "--allocator-headroom", help="Share added for allocator slack (default 10%)."
    ),
    stages: str = typer.Option(
        None, "--stages", help="Comma-separated subset of score,search,compare,distill."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables."),
    out: str = typer.Option(None, "--out", help="Also write the JSON to this file."),
    **options: Any,
) -> None:
    """Will each stage fit, on how many GPUs, and how long will it take: per-stage memory and time."""
    given = all_options(locals())
    from minitron.plan.run import main

    main(**given)


def main() -> None:
    app(prog_name="minitron")


if __name__ == "__main__":
    sys.exit(main())
