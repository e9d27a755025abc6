"""The stages of a run, what each reads and writes, and when one can be skipped.

    RUN/run_config.json          the resolved run file
    RUN/score/scores.safetensors importance (minitron score)
    RUN/search/candidates.json   architectures under the budget (minitron search)
    RUN/compare/                 short distillation of the top candidates (minitron compare)
    RUN/prune/                   the chosen candidate, pruned (minitron prune)
    RUN/distill/final/           the distilled student (minitron distill)
    RUN/evaluate/results.json    lm-eval scores of teacher, pruned and distilled (with eval-tasks)
    RUN/report.md                what came out, side by side
    RUN/.stages/NAME.json        the key of a stage's inputs, written when it starts and when it is done

Before the first stage starts, every enabled stage's command line is parsed by its command and built
into its config (`stage_config`, the builder the command itself uses), so a bad value in any section
or an output that cannot be written fails at once; each stage then runs in this process
(`run_stage`) with that config.

A stage is skipped when it finished before with the same key: its command line (less --resume) and
the content of what it reads (teacher fingerprint, scores, candidates, pruned model). A stage that
was interrupted runs again in place and picks up where it stopped (search and compare from their
storage, distill from its last checkpoint); a stage whose inputs changed starts afresh, its old
directory kept as NAME.previous.
"""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minitron.atomic import check_writable, write_json
from minitron.errors import MinitronError
from minitron.pipeline.config import Option, RunConfig, command_args
from minitron.runs import digest, file_digest

# A `minitron ...` command line -> its command's options, parsed and defaulted as the command's own.
Parse = Callable[[list[str]], dict[str, Any]]


@dataclass(frozen=True)
class Paths:
    run: Path

    @property
    def scores(self) -> Path:
        return self.run / "score" / "scores.safetensors"

    @property
    def candidates(self) -> Path:
        return self.run / "search" / "candidates.json"

    @property
    def compare(self) -> Path:
        return self.run / "compare"

    @property
    def pruned(self) -> Path:
        return self.run / "prune"

    @property
    def distill(self) -> Path:
        return self.run / "distill"

    @property
    def student(self) -> Path:
        return self.run / "distill" / "final"

    @property
    def evaluate(self) -> Path:
        return self.run / "evaluate"

    def marker(self, stage: str) -> Path:
        return self.run / ".stages" / f"{stage}.json"


@dataclass(frozen=True)
class Plan:
    """Each stage of a run as its command line, the files it reads, the file that says it is complete
    and its directory; and each stage's config, built from its command line as the command builds it."""

    config: RunConfig
    options: dict[str, dict[str, Option]]
    parse: Parse

    def steps(self) -> list[tuple[str, Callable[[], list[str]], Callable[[], list[Path]], Path, Path]]:
        config, paths = self.config, Paths(self.config.out)
        opts = self._opts
        return [
            ("score", lambda: ["score", config.teacher, "--out", str(paths.scores), *opts("score")],
             lambda: [], paths.scores, paths.scores.parent),
            ("search", lambda: ["search", config.teacher, "--scores", str(paths.scores), "--out",
                                str(paths.candidates.parent), *opts("search")],
             lambda: [paths.scores], paths.candidates, paths.candidates.parent),
            ("compare", lambda: ["compare", config.teacher, str(paths.candidates), "--scores", str(paths.scores),
                                 "--out", str(paths.compare), *opts("compare")],
             lambda: [paths.scores, paths.candidates], paths.compare / "compare.json", paths.compare),
            ("prune", lambda: ["prune", config.teacher, "--scores", str(paths.scores), "--candidate",
                               str(paths.candidates), "--rank", str(chosen_rank(config, paths)), "--out",
                               str(paths.pruned), "--overwrite", *opts("prune")],
             lambda: [paths.scores, paths.candidates], paths.pruned / "minitron.json", paths.pruned),
            ("distill", lambda: ["distill", config.teacher, str(paths.pruned), "--out", str(paths.distill),
                                 *opts("distill")],
             lambda: [paths.pruned / "minitron.json"], paths.student / "config.json", paths.distill),
            ("evaluate", lambda: ["evaluate", config.teacher, str(paths.pruned), str(paths.student), "--tasks",
                                  str(config.eval_tasks), "--out", str(paths.evaluate), *opts("evaluate")],
             lambda: [paths.pruned / "minitron.json", paths.student / "minitron.json", *task_files(config)],
             paths.evaluate / "results.json", paths.evaluate),
        ]  # fmt: skip

    def _opts(self, stage: str) -> list[str]:
        given = self.config.stages[stage].items()
        return [w for name, value in given for w in command_args(self.options[stage][name], value)]

    def build(self, stage: str, argv: list[str]) -> Any:
        """The stage's validated config; an error names the run file and the stage."""
        try:
            return stage_config(stage, self.parse(argv), "minitron " + shlex.join(argv))
        except MinitronError as e:
            raise MinitronError(f"{self.config.source or 'run file'} [{stage}]: {e}") from None

    def check(self) -> None:
        """Build every enabled stage's config before the first stage starts: a bad [distill] value must
        not wait for hours of scoring and search. Files a stage reads that an earlier stage writes
        (scores, candidates, the pruned model) are checked when that stage starts."""
        for stage, argv_of, *_ in self.steps():
            if self.config.enabled(stage):
                self.build(stage, argv_of())


def run_pipeline(
    config: RunConfig, options: dict[str, dict[str, Option]], parse: Parse, console=None
) -> None:
    """Build and check every stage's config, then run every stage not already done."""
    from rich.console import Console

    from minitron.model.load import resolve_model

    console = console or Console()
    paths = Paths(config.out)
    teacher = resolve_model(config.teacher)
    teacher.require_weights("minitron run")
    preflight(config)
    check_writable(config.out, what="run directory")
    plan = Plan(config, options, parse)
    plan.check()
    try:
        config.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MinitronError(f"--out: cannot create run directory {config.out} ({e.strerror})") from None
    write_json(config.out / "run_config.json", config.to_json())
    base = {"teacher": teacher.fingerprint()}

    for stage, argv_of, inputs_of, done_file, directory in plan.steps():
        if not config.enabled(stage):
            why = "no eval-tasks" if stage == "evaluate" else "top = 0"
            console.print(f"[dim]{stage}: off ({why})[/dim]")
            continue
        argv = argv_of()
        inputs = {str(p): file_digest(p) if p.exists() else None for p in inputs_of()}
        key = digest({**base, "argv": argv, "inputs": inputs})
        marker = paths.marker(stage)
        state = json.loads(marker.read_text()) if marker.exists() else {}
        if state.get("key") == key and state.get("done") and done_file.exists():
            console.print(f"[green]{stage}[/green]: done before with the same inputs, skipped")
            continue
        if state.get("key") not in (None, key) and directory.exists():
            _set_aside(directory)  # other inputs than the interrupted or finished run: start afresh
        resume = stage == "distill" and state.get("key") == key and _has_checkpoint(paths.distill)
        marker.parent.mkdir(parents=True, exist_ok=True)
        write_json(marker, {"stage": stage, "key": key, "done": False, "argv": argv})
        console.rule(f"[bold]{stage}")
        console.print("minitron " + " ".join(argv + (["--resume"] if resume else [])), markup=False)
        run_stage(stage, plan.build(stage, argv + (["--resume"] if resume else [])))
        if not done_file.exists():
            raise MinitronError(f"{stage} finished but wrote no {done_file}")
        write_json(marker, {"stage": stage, "key": key, "done": True, "argv": argv})
    from minitron.pipeline.report import write_report

    write_report(config, paths, console)


def stage_config(stage: str, options: dict[str, Any], command: str = "") -> Any:
    """A stage's validated config from its command's parsed options, built as the command builds it."""
    if stage == "score":
        from minitron.importance.run import ScoreConfig

        return ScoreConfig(**options)
    if stage == "search":
        from minitron.search.run import SearchConfig

        return SearchConfig.from_options(**options)
    if stage == "compare":
        from minitron.distill.compare import CompareConfig

        return CompareConfig.from_options(**options)
    if stage == "prune":
        from minitron.prune.run import PruneConfig

        return PruneConfig.from_options(command=command, **options)
    if stage == "distill":
        from minitron.distill.run import DistillConfig

        return DistillConfig.from_options(**options)
    from minitron.evaluate import EvalConfig

    return EvalConfig(**options)


def run_stage(stage: str, config: Any) -> None:
    """Run one stage in this process, as its command does (tables and all)."""
    if stage == "score":
        from minitron.importance.run import run
    elif stage == "search":
        from minitron.search.run import run
    elif stage == "compare":
        from minitron.distill.compare import compare as run
    elif stage == "prune":
        from minitron.prune.run import run
    elif stage == "distill":
        from minitron.distill.run import main as run
    else:
        from minitron.evaluate import main as run
    run(config)


def preflight(config: RunConfig) -> None:
    """What would only fail hours in, checked before the first stage: each stage's devices and --data
    exist, and with eval-tasks, lm-eval is installed and the task files are there."""
    from minitron.data import check_source
    from minitron.device import resolve_device
    from minitron.parallel import launched_distributed

    if launched_distributed():
        raise MinitronError(
            "minitron run runs its stages one after another in one process; run it without torchrun "
            "(or run the stages by hand under torchrun: minitron score, distill and train take it)"
        )

    where = config.source or "run file"
    for stage, stage_options in config.stages.items():
        if not config.enabled(stage):
            continue
        for name, value in stage_options.items():
            if name.endswith("device") and isinstance(value, str):
                resolve_device(value, f"{where} [{stage}] {name.replace('_', '-')}")
            if name == "data" and isinstance(value, str):
                try:
                    check_source(value)
                except MinitronError as e:
                    raise MinitronError(f"{where} [{stage}]: {e}") from None
    if config.eval_tasks is not None:
        from minitron.evaluate import INSTALL_HINT, EvalConfig, lm_eval_installed

        if not lm_eval_installed():
            raise MinitronError(f"eval-tasks: {INSTALL_HINT}, or run without eval-tasks")
        try:
            EvalConfig(models=[config.teacher], tasks=config.eval_tasks)
        except MinitronError as e:
            raise MinitronError(f"eval-tasks: {str(e).removeprefix('--tasks: ')}") from None


def task_files(config: RunConfig) -> list[Path]:
    """The local task YAML files among eval-tasks: editing one makes the evaluate stage run again."""
    entries = [Path(t.strip()).expanduser() for t in (config.eval_tasks or "").split(",") if t.strip()]
    return [p for p in entries if p.is_file()]


def chosen_rank(config: RunConfig, paths: Paths) -> int:
    """The candidate to prune: the best after the short distillation if compare ran, else rank 1."""
    table = paths.compare / "compare.json"
    if not config.enabled("compare") or not table.exists():
        return 1
    rows = json.loads(table.read_text())["candidates"]
    best = min(rows, key=lambda r: r["rank_after"])  # rank after the short distillation
    return int(best["rank_before"])  # its rank in the search's candidates file


def _has_checkpoint(run: Path) -> bool:
    return (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir())


def _set_aside(directory: Path) -> None:
    previous = directory.with_name(directory.name + ".previous")
    if previous.exists():
        shutil.rmtree(previous)
    directory.rename(previous)
