"""Benchmark accuracy with lm-evaluation-harness (`pip install 'minitron[eval]'`), models side by side.

Models are local checkpoint directories or built-in names, loaded by minitron and handed to lm-eval's
HF wrapper already built: lm-eval never resolves a name on the Hub. Tasks are lm-eval task names or
local task YAML files / directories (a YAML with `dataset_path: json` and local `data_files` runs
offline).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minitron.errors import MinitronError

INSTALL_HINT = "lm-eval is not installed; install it with: pip install 'minitron[eval]'"
# Metrics shown and saved: accuracy-like scores and their standard errors.
METRICS = ("acc", "acc_norm", "acc_stderr", "acc_norm_stderr")


@dataclass
class EvalConfig:
    models: list[str]
    tasks: str
    out: str | None = None
    limit: float | None = None
    batch_size: int = 1
    device: str = "auto"
    num_fewshot: int | None = None
    task_paths: list[Path] = field(init=False, default_factory=list)
    task_names: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if not self.models:
            raise MinitronError("give at least one MODEL to evaluate")
        if len(set(self.models)) != len(self.models):
            raise MinitronError("MODEL: each model once (results are keyed by the name given)")
        entries = [t.strip() for t in self.tasks.split(",") if t.strip()]
        if not entries:
            raise MinitronError("--tasks: give one or more comma-separated task names or YAML paths")
        for entry in entries:
            path = Path(entry).expanduser()
            if entry.endswith((".yaml", ".yml")) or "/" in entry or path.exists():
                if not path.exists():
                    raise MinitronError(f"--tasks: {entry}: no such task file or directory")
                self.task_paths.append(path)
            else:
                self.task_names.append(entry)
        if self.limit is not None:
            if not math.isfinite(self.limit) or self.limit < 1 or self.limit != int(self.limit):
                raise MinitronError(f"--limit: {self.limit:g} is not a whole number of examples >= 1")
            self.limit = int(self.limit)
        if self.batch_size < 1:
            raise MinitronError(f"--batch-size: {self.batch_size} must be >= 1")
        if self.num_fewshot is not None and self.num_fewshot < 0:
            raise MinitronError(f"--num-fewshot: {self.num_fewshot} must be >= 0")
        if self.out is not None:
            from minitron.atomic import check_writable

            check_writable(self.out)


def lm_eval_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("lm_eval") is not None


def _require_lm_eval() -> None:
    if not lm_eval_installed():
        raise MinitronError(INSTALL_HINT)


def _task_names(config: EvalConfig, task_manager) -> list[str]:
    """Every task to run: given names, plus the `task:` of each given YAML (all YAMLs of a directory)."""
    import yaml

    names = list(config.task_names)
    for path in config.task_paths:
        files = sorted([*path.rglob("*.yaml"), *path.rglob("*.yml")]) if path.is_dir() else [path]
        for file in files:
            try:
                task = (yaml.safe_load(file.read_text()) or {}).get("task")
            except (yaml.YAMLError, AttributeError) as e:
                raise MinitronError(f"--tasks: {file}: not a task YAML ({str(e).splitlines()[0]})") from None
            if isinstance(task, str):
                names.append(task)
        if not files:
            raise MinitronError(f"--tasks: {path}: no task YAML files")
    known = set(task_manager.all_tasks)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise MinitronError(
            f"--tasks: unknown task {', '.join(unknown)} (an lm-eval task name or a local task YAML)"
        )
    return list(dict.fromkeys(names))


def _metrics(task_results: dict[str, Any]) -> dict[str, float]:
    """lm-eval's 'acc,none' keys as 'acc' (other filters keep their name: 'acc,strict')."""
    metrics = {}
    for key, value in task_results.items():
        name, _, filt = key.partition(",")
        if name in METRICS and isinstance(value, (int, float)):
            metrics[name if filt in ("", "none") else f"{name},{filt}"] = float(value)
    return metrics


def run(config: EvalConfig) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {task: {metric: value}}} for every model and task; written to config.out as JSON and CSV."""
    _require_lm_eval()
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local tasks and models only: never wait on the Hub
    from minitron.device import resolve_device
    from minitron.model.load import load_model, load_tokenizer, resolve_model

    sources = [resolve_model(m) for m in config.models]
    for source in sources:
        source.require_weights("evaluate")
        source.safetensors_files()
    device = str(resolve_device(config.device))

    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    include = sorted({str(p if p.is_dir() else p.parent) for p in config.task_paths}) or None
    task_manager = TaskManager(include_path=include)
    tasks = _task_names(config, task_manager)

    results: dict[str, dict[str, dict[str, float]]] = {}
    for spec, source in zip(config.models, sources, strict=True):
        model = load_model(source, device=device, command="evaluate")
        tokenizer = load_tokenizer(source, command="evaluate")
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=config.batch_size)
        try:
            out = lm_eval.simple_evaluate(
                model=lm,
                tasks=tasks,
                num_fewshot=config.num_fewshot,
                limit=config.limit,
                task_manager=task_manager,
                log_samples=False,
            )
        except (ConnectionError, FileNotFoundError) as e:
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MinitronError(
                f"--tasks: cannot load a task's data ({first_line}); nothing is downloaded: named tasks "
                "need their dataset in the local Hugging Face cache, local tasks their data_files"
            ) from None
        results[spec] = {task: _metrics(out["results"].get(task, {})) for task in tasks}
        del model, lm
    if config.out is not None:
        write_results(results, config.out)
    return results


def main(config: EvalConfig) -> dict[str, dict[str, dict[str, float]]]:
    """`minitron evaluate`: the scores, written and shown as one table with a column per model."""
    from rich.console import Console

    results = run(config)
    Console().print(table(results))
    return results


def rows(results: dict[str, dict[str, dict[str, float]]]) -> list[tuple[str, str, list[float | None]]]:
    """(task, metric, [value per model]) in task order, metrics as lm-eval reported them."""
    models = list(results)
    out = []
    for task in dict.fromkeys(t for per_model in results.values() for t in per_model):
        metrics = dict.fromkeys(m for model in models for m in results[model].get(task, {}))
        for metric in metrics:
            out.append((task, metric, [results[model].get(task, {}).get(metric) for model in models]))
    return out


def write_results(results: dict[str, dict[str, dict[str, float]]], out: str | Path) -> Path:
    from minitron.atomic import write_json, write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["task", "metric", *results])
    for task, metric, values in rows(results):
        writer.writerow([task, metric, *("" if v is None else f"{v:.6g}" for v in values)])
    write_text(out / "results.csv", buffer.getvalue())
    return write_json(out / "results.json", results)


def table(results: dict[str, dict[str, dict[str, float]]]):
    from rich.table import Table

    t = Table(title="lm-eval results")
    t.add_column("task")
    t.add_column("metric")
    for model in results:
        t.add_column(model, justify="right", overflow="fold")
    for task, metric, values in rows(results):
        t.add_row(task, metric, *("-" if v is None else f"{v:.4f}" for v in values))
    return t
