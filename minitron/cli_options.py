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


def with_options(*groups: dict[str, tuple[type, Any]]) -> Callable[[F], F]:
    """Declare option groups once and add them to a command after its own parameters (its own win):
    the options every training command shares have one definition, so one help text."""

    def add(fn: F) -> F:
        signature = inspect.signature(fn)
        params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        for group in groups:
            for name, (annotation, option) in group.items():
                if all(p.name != name for p in params):
                    params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                                    annotation=annotation))  # fmt: skip
                    fn.__annotations__[name] = annotation
        fn.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        return fn

    return add


def all_options(params: dict[str, Any]) -> dict[str, Any]:
    """A command's `locals()`: its own parameters and the options its groups added (`**options`) as one dict."""
    return {k: v for k, v in params.items() if k != "options"} | params.get("options", {})


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
    "warmup_steps": (int, typer.Option(50, "--warmup-steps", help="Linear warm-up steps.")),
    "schedule": (str, typer.Option("cosine", "--schedule", help="cosine, or wsd (warm-up, stable, decay).")),
    "grad_clip": (float, typer.Option(1.0, "--grad-clip", help="Clip the gradient norm to this (0 = off).")),
    "grad_accum": (int, typer.Option(
        1, "--grad-accum", help="Micro-batches per optimizer step and process."
    )),
    "precision": (str, typer.Option(
        "auto", "--precision", help="auto (bf16 autocast on CUDA), bf16 or fp32."
    )),
    "seed": (int, typer.Option(0, "--seed", help="Seed of the data order and of torch.")),
    "eval_batches": (int, typer.Option(8, "--eval-batches", help="Held-out batches per evaluation.")),
    "device": (str, DEVICE_OPTION),
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
