"""The run file: one TOML that sets any option of any stage, by the option's own name.

    teacher = "tiny"              # the model every stage starts from
    out = "runs/demo"             # the run directory (one subfolder per stage)
    data = "builtin"              # a top-level key applies to every stage that has that option
    seq-len = 256

    [score]                       # a section sets options of one stage; it wins over the top level
    samples = 32
    depth-mode = "one-shot"

    [search]
    budget = "18MiB"
    context = "8k"
    layers = [54, 56]             # lists become comma-separated values: --layers 54,56

    [compare]                     # top = 0 skips the comparison (the search's rank 1 is pruned)
    top = 2
    steps = 40

    [distill]
    steps = 200

    eval-tasks = "hellaswag,./my_task.yaml"   # lm-eval on teacher, pruned and distilled (also --eval-tasks)
    [evaluate]                    # the other options of `minitron evaluate`
    limit = 100

Keys are the commands' long options without dashes (`seq-len` or `seq_len`): `minitron score --help`
lists what [score] takes. So a CLI option and its config key are one definition, and a misspelt key
is an error that names the nearest real one. The run sets the paths that chain the stages (model
arguments, --out, --scores, --candidate, --rank, --resume, --overwrite, evaluate's --tasks); a file
that sets them is refused. Like `out`, `eval-tasks` is an option of `minitron run` itself: the
command line wins over the file, and without it (or lm-eval) the evaluate stage is off.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from minitron.errors import MinitronError, input_file

STAGES = ("score", "search", "compare", "prune", "distill", "evaluate")
# Options the run itself sets to chain the stages; a run file may not set them.
MANAGED = {"out", "scores", "candidate", "candidates", "rank", "resume", "overwrite", "stop_at_step", "tasks"}
TOP_LEVEL = {"teacher", "out", "eval_tasks"}


@dataclass(frozen=True)
class Option:
    """What the run needs to know of one command-line option."""

    name: str  # the parameter name, e.g. seq_len
    flag: str  # its long flag, e.g. --seq-len
    is_flag: bool = False  # a boolean switch
    off_flag: str | None = None  # e.g. --no-width, for --width/--no-width


@dataclass(frozen=True)
class RunConfig:
    """A resolved run file: the teacher, the run directory and each stage's options."""

    teacher: str
    out: Path
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> {option name: value}
    source: str = ""  # where it was read from
    eval_tasks: str | None = None  # lm-eval tasks (comma-separated) for the evaluate stage; None = off

    def enabled(self, stage: str) -> bool:
        if stage == "evaluate":
            return self.eval_tasks is not None
        return not (stage == "compare" and self.stages.get("compare", {}).get("top", 3) == 0)

    def to_json(self) -> dict[str, Any]:
        return {"teacher": self.teacher, "out": str(self.out), "source": self.source,
                "eval_tasks": self.eval_tasks, "stages": self.stages}  # fmt: skip


def load_run_config(
    path: str | Path,
    options: Mapping[str, Mapping[str, Option]],
    out: str | None = None,
    eval_tasks: str | None = None,
) -> RunConfig:
    """Read and validate a run file against the stages' options (`options[stage][name]`); `out` and
    `eval_tasks` are `minitron run`'s own options, which win over the file's."""
    path = input_file(path, "run file", "TOML")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise MinitronError(f"{path}: not a valid TOML file ({e})") from None
    return resolve(raw, options, source=str(path), out=out, eval_tasks=eval_tasks)


def resolve(
    raw: Mapping[str, Any],
    options: Mapping[str, Mapping[str, Option]],
    source: str = "",
    out: str | None = None,
    eval_tasks: str | None = None,
) -> RunConfig:
    where = source or "run file"
    teacher = raw.get("teacher")
    if teacher is not None and not isinstance(teacher, str):
        raise MinitronError(
            f"{where}: teacher must be one checkpoint directory or built-in name (a string), got {teacher!r}"
        )
    if not isinstance(teacher, str) or not teacher:
        raise MinitronError(f'{where}: set teacher = "..." (a checkpoint directory or a built-in name)')
    run_dir = Path(out or raw.get("out") or "runs/run")
    tasks = eval_tasks if eval_tasks is not None else _eval_tasks(raw, where)
    sections = {k: v for k, v in raw.items() if isinstance(v, dict)}
    for name in sections:
        if name not in STAGES:
            raise MinitronError(
                f"{where}: unknown section [{name}]{_suggest(name, STAGES)}; stages: {', '.join(STAGES)}"
            )
    shared = {_key(k): v for k, v in raw.items() if not isinstance(v, dict) and _key(k) not in TOP_LEVEL}
    for key in shared:
        _check_key(key, None, where, options)
        if not any(key in options[stage] for stage in STAGES):
            raise MinitronError(f"{where}: no stage takes {key!r}{_suggest(key, _all_names(options))}")
    stages: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        own = {_key(k): v for k, v in sections.get(stage, {}).items()}
        for key in own:
            _check_key(key, stage, where, options)
        merged = {k: v for k, v in shared.items() if k in options[stage]}
        merged.update(own)
        for key, value in merged.items():
            option_value(options[stage][key], value, f"{where} [{stage}] {key}")  # type check now
        stages[stage] = merged
    return RunConfig(teacher=teacher, out=run_dir, stages=stages, source=source, eval_tasks=tasks or None)


def _eval_tasks(raw: Mapping[str, Any], where: str) -> str | None:
    given = [k for k in raw if _key(k) == "eval_tasks"]
    if not given:
        return None
    value = raw[given[0]]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise MinitronError(
            f'{where}: eval-tasks takes task names or YAML paths, e.g. "hellaswag,./task.yaml"'
        )
    return value


def command_args(option: Option, value: Any, where: str = "") -> list[str]:
    """The command-line words that give `option` this config value."""
    return option_value(option, value, where)


def option_value(option: Option, value: Any, where: str) -> list[str]:
    if option.is_flag:
        if not isinstance(value, bool):
            raise MinitronError(f"{where}: must be true or false, got {value!r}")
        if value:
            return [option.flag]
        return [option.off_flag] if option.off_flag else []
    if isinstance(value, bool) or isinstance(value, dict):
        raise MinitronError(
            f"{where}: takes a value such as on the command line ({option.flag} ...), got {value!r}"
        )
    if isinstance(value, list):
        if not value or any(isinstance(v, (list, dict, bool)) for v in value):
            raise MinitronError(f"{where}: a list must hold plain values, e.g. [54, 56]")
        value = ",".join(str(v) for v in value)
    return [option.flag, str(value)]


def _key(key: str) -> str:
    return key.replace("-", "_")


def _check_key(key: str, stage: str | None, where: str, options) -> None:
    if key == "tasks" and stage == "evaluate":
        raise MinitronError(f"{where}: [evaluate] tasks: set eval-tasks at the top level (or --eval-tasks)")
    if key in MANAGED:
        raise MinitronError(f"{where}: {key!r} is set by the run itself (it chains the stages); remove it")
    if stage is not None and key not in options[stage]:
        names = sorted(options[stage])
        raise MinitronError(
            f"{where}: [{stage}] has no option {key!r}{_suggest(key, names)} (see `minitron {stage} --help`)"
        )


def _all_names(options) -> list[str]:
    return sorted({name for stage in STAGES for name in options[stage]})


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
