"""The commands' options, declared once: those several commands share (so one help text each), option
groups added to a command's signature, and reading a command's options back (run files, provenance).

Only typer here: `minitron --help` imports this module and must not import torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., object])

# Options shared by every command that reads text or runs a model: defined once, so their help is too.
DATA_OPTION = typer.Option(
    "builtin",
    "--data",
    help="Text: 'builtin' (the shipped corpus), a text/JSONL/Parquet file, a save_to_disk or plain directory, "
    "or a Hub dataset streamed by name: hf:NAME[:CONFIG][@SPLIT].",
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
EVAL_DTYPE_OPTION = typer.Option(
    "float32", "--eval-dtype", help="The search's teacher and candidates: float32, bfloat16 or float16."
)


def with_options(*groups, after: str | None = None) -> Callable[[F], F]:
    """Declare option groups once and add them to a command (its own parameters win): the options
    several commands share have one definition, so one help text. A group is a dict name -> (type,
    typer.Option), or a function returning one (built when the command is defined, e.g. from the axis
    table). The options go after the parameter `after`, else after the command's own."""

    def add(fn: F) -> F:
        signature = inspect.signature(fn)
        params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        at = [p.name for p in params].index(after) + 1 if after else len(params)
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if after else inspect.Parameter.KEYWORD_ONLY
        extra = []
        for group in groups:
            for name, (annotation, option) in (group() if callable(group) else group).items():
                if all(p.name != name for p in params + extra):
                    extra.append(inspect.Parameter(name, kind, default=option, annotation=annotation))
                    fn.__annotations__[name] = annotation
        fn.__signature__ = signature.replace(parameters=params[:at] + extra + params[at:])  # type: ignore[attr-defined]
        return fn

    return add


def all_options(params: dict[str, Any]) -> dict[str, Any]:
    """A command's `locals()` taken first thing: its own parameters and the options its groups added
    (`**options`) as one dict (the typer context left out)."""
    return {k: v for k, v in params.items() if k not in ("options", "ctx")} | params.get("options", {})


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


def _serving_options() -> dict[str, tuple[type, object]]:
    from minitron.memory import DEFAULT_CONTEXT, DEFAULT_GPU, ENGINES, GPUS

    return {
        "budget": (str, typer.Option(None, "--budget", help="Memory budget: 22GiB, 24GB, 19660MiB, 0.5TiB or bytes.")),
        "gpu": (str, typer.Option(None, "--gpu", help=f"GPU preset ({', '.join(GPUS)}): its memory is the budget "
                                  "unless --budget is given; its bandwidth gives the decode-speed estimate "
                                  f"[search's default: {DEFAULT_GPU}].")),
        "headroom": (str, typer.Option(None, "--headroom", help="Share of the budget kept free, e.g. 5% or 0.05.")),
        "reserve": (str, typer.Option(None, "--reserve", help="Bytes kept for something else, e.g. 1.3GiB.")),
        "context": (str, typer.Option(DEFAULT_CONTEXT, "--context",
                                      help="Tokens per sequence served: 128k (=131072), 8k, 1M, 131072.")),
        "batch": (int, typer.Option(1, "--batch", help="Sequences served at once.")),
        "dtype": (str, typer.Option("bfloat16", "--dtype", help="Serving weight dtype: bfloat16, float16, float32, fp8.")),
        "kv_dtype": (str, typer.Option(None, "--kv-dtype", help="KV cache dtype (default: the compute dtype: "
                                       "bfloat16 for fp8 weights, else --dtype).")),
        "ssm_dtype": (str, typer.Option(None, "--ssm-dtype", help="Mamba SSM state dtype (default: float32 for "
                                        "transformers, the config's mamba_ssm_cache_dtype for vllm).")),
        "engine": (str, typer.Option("transformers", "--engine", help=f"Whose caches to size ({', '.join(ENGINES)}): "
                                     "transformers keeps conv_kernel conv columns, vllm conv_kernel - 1.")),
    }  # fmt: skip


# The serving settings (minitron.memory.ServingSpec) of estimate and search: one option and help each.
SERVING_OPTIONS = _serving_options()


def axis_options(kind: type, help_of: str) -> dict[str, tuple[type, object]]:
    """One option per axis of minitron.model.axes (prune: sizes, search: value lists)."""
    from minitron.model.axes import axes

    return {a.option: (kind, typer.Option(None, a.flag, help=getattr(a, help_of)())) for a in axes()}


def granularity_axes() -> str:
    """'hidden and FFN': the axes whose ranges step by --granularity."""
    from minitron.model.axes import GRANULARITY, axes

    names = [a.column or a.name for a in axes() if a.step == GRANULARITY]
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


# Options of every training run (train, distill, compare): declared once, so their help is too.
TRAINING_OPTIONS = {
    "data": (str, DATA_OPTION),
    "text_field": (str, TEXT_FIELD_OPTION),
    "glob": (str, GLOB_OPTION),
    "seq_len": (int, typer.Option(256, "--seq-len", help="Tokens per packed sequence.")),
    "batch_size": (int, typer.Option(
        8, "--batch-size", help="Sequences per micro-batch (global batch = this x --grad-accum x processes)."
    )),
    "samples": (int, typer.Option(0, "--samples", help="Sequences per pass over the data (0 = all).")),
    "heldout_fraction": (float, typer.Option(
        0.05, "--heldout-fraction", help="Share of documents held out for evaluation (chosen by text hash)."
    )),
    "tokens": (int, typer.Option(
        0, "--tokens", help="Train on this many tokens instead of --steps (0 = use --steps)."
    )),
    "min_lr_ratio": (float, typer.Option(
        0.1, "--min-lr-ratio", help="Final learning rate as a fraction of --lr."
    )),
    "warmup_steps": (int, typer.Option(
        50, "--warmup-steps", help="Linear warm-up steps (not below --steps: a tenth of --steps, with a note)."
    )),
    "schedule": (str, typer.Option("cosine", "--schedule", help="cosine, or wsd (warm-up, stable, decay).")),
    "grad_clip": (float, typer.Option(1.0, "--grad-clip", help="Clip the gradient norm to this (0 = off).")),
    "grad_accum": (int, typer.Option(
        1, "--grad-accum", help="Micro-batches per optimizer step and process."
    )),
    "precision": (str, typer.Option(
        "auto", "--precision",
        help="auto (bf16 autocast on CUDA), native (bf16 also on CPUs with bf16 units), bf16 or fp32."
    )),
    "seed": (int, typer.Option(0, "--seed", help="Seed of the data order and of torch.")),
    "eval_batches": (int, typer.Option(8, "--eval-batches", help="Held-out batches per evaluation.")),
    "device": (str, DEVICE_OPTION),
    "report_to": (str, typer.Option(
        "none", "--report-to", help="Also log metrics and the config to: none, tensorboard, wandb, mlflow, "
        "trackio (comma-separated for several; pip install 'minitron[track]').",
    )),
    "gradient_checkpointing": (bool, typer.Option(
        False, "--gradient-checkpointing",
        help="Recompute each block's activations in the backward: the same loss and gradients, less memory, "
        "about a third more compute.",
    )),
}  # fmt: skip
# Options of a single run (train, distill) that compare sets itself.
RUN_OPTIONS = {
    "decay_fraction": (float, typer.Option(0.2, "--decay-fraction", help="wsd: share of steps spent decaying.")),
    "weight_decay": (float, typer.Option(0.1, "--weight-decay", help="AdamW weight decay (matrices only).")),
    "eval_every": (int, typer.Option(
        100, "--eval-every", help="Held-out evaluation every N steps (0 = at the end)."
    )),
    "save_every": (int, typer.Option(100, "--save-every", help="Checkpoint every N steps (0 = at the end).")),
    "fsdp": (bool, typer.Option(
        False, "--fsdp",
        help="Under torchrun: shard student and teacher with FSDP2 instead of data parallel (DDP).",
    )),
    "resume": (bool, typer.Option(
        False, "--resume", help="Continue the run in --out from its latest checkpoint."
    )),
    "stop_at_step": (int, typer.Option(
        0, "--stop-at-step", help="Checkpoint and stop after this step (0 = run to --steps)."
    )),
}  # fmt: skip
# Options of distillation (distill, compare).
KD_OPTIONS = {
    "loss": (str, typer.Option(
        "forward_kl", "--loss",
        help="forward_kl: KL(teacher || student), the Minitron loss; reverse_kl; jsd (generalised, see --beta).",
    )),
    "tau": (float, typer.Option(
        1.0, "--tau", help="Softmax temperature of both models; the loss is scaled by tau^2."
    )),
    "beta": (float, typer.Option(
        0.5, "--beta", help="jsd: the teacher's weight in the mixture (0.5 = symmetric JSD)."
    )),
    "ce_weight": (float, typer.Option(
        0.0, "--ce-weight", help="Add this x next-token cross-entropy on the data."
    )),
    "teacher_topk": (int, typer.Option(
        0, "--teacher-topk", help="Match the teacher's top-k tokens plus the rest mass (0 = all)."
    )),
    "chunk_tokens": (int, typer.Option(
        256, "--chunk-tokens", help="Tokens projected to the vocabulary at once (logits never exist for more)."
    )),
    "lr": (float, typer.Option(
        1e-4, "--lr", help="Peak learning rate (AdamW); decays to --min-lr-ratio x it."
    )),
}  # fmt: skip


EVAL_TASKS_OPTION = typer.Option(
    None,
    "--eval-tasks",
    help="Also score teacher, pruned and distilled models on these lm-eval tasks (comma-separated names "
    "or local task YAML files; needs pip install 'minitron[eval]'); wins over the file's eval-tasks.",
)


def stage_options(app: typer.Typer) -> dict[str, dict]:
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


def run_file(app: typer.Typer, path: str, out: str | None, eval_tasks: str | None) -> None:
    """`minitron run`: every stage of the run file checked against the commands' options, then run."""
    from functools import partial

    from minitron.pipeline import load_run_config, run_pipeline

    options = stage_options(app)
    config = load_run_config(path, options, out=out, eval_tasks=eval_tasks)
    run_pipeline(config, options, partial(parse_command, app))


def parse_command(app: typer.Typer, argv: list[str]) -> dict[str, Any]:
    """A `minitron ...` command line -> its command's options, parsed and defaulted by the command
    itself: a run file's values mean what they mean on the command line."""
    from minitron.errors import MinitronError

    command = typer.main.get_command(app).commands[argv[0]]
    try:
        with command.make_context(f"minitron {argv[0]}", list(argv[1:])) as ctx:
            params = dict(ctx.params)
    except Exception as e:  # click's usage errors; typer may ship its own click, so matched by shape
        if not hasattr(e, "format_message"):
            raise
        raise MinitronError(e.format_message()) from None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
