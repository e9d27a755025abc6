"""RUN/report.md and the terminal summary: candidates, comparison, teacher / pruned / distilled
held-out losses on the same text, a few generations from each, the plots, and what to do next."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from minitron.atomic import write_json, write_text

PROMPTS = ("def __init__(self", "import os\n\n\ndef ", 'class Parser:\n    """')
HELDOUT_SEQUENCES = 16
NEW_TOKENS = 32


def write_report(config, paths, console) -> Path:
    from rich.table import Table

    models = {"teacher": config.teacher, "pruned": str(paths.pruned), "distilled": str(paths.student)}
    console.rule("[bold]report")
    with console.status("held-out loss and generations of the teacher, pruned and distilled models"):
        evaluation = evaluate_models(models, config.stages["distill"])
    write_json(config.out / "report.json", evaluation)
    candidates = _read(paths.candidates)
    compare = _read(paths.compare / "compare.json")

    losses = Table(title="held-out next-token loss (nats/token, same text for all three)")
    for column in ("model", "params", "loss", "vs teacher"):
        losses.add_column(column, justify="left" if column == "model" else "right")
    teacher_loss = evaluation["models"]["teacher"]["loss"]
    for name, row in evaluation["models"].items():
        losses.add_row(name, f"{row['params']:,}", f"{row['loss']:.3f}", f"{row['loss'] - teacher_loss:+.3f}")
    benchmarks = benchmark_results(config, paths, models)
    console.print(losses)
    if benchmarks:
        from minitron.evaluate import table

        console.print(table(benchmarks))
    for name, row in evaluation["models"].items():
        console.print(
            f"[bold]{name}[/bold]: {row['generations'][0]['prompt'] + row['generations'][0]['text']!r}"
        )
    steps = next_steps(config, paths)
    console.print("[bold]next:[/bold]")
    for line in steps:
        console.print(f"  {line}", markup=False)
    text = _markdown(config, paths, evaluation, candidates, compare, steps, benchmarks)
    report = write_text(config.out / "report.md", text)
    console.print(f"wrote {report}")
    return report


def evaluate_models(models: dict[str, str], distill_options: dict[str, Any]) -> dict[str, Any]:
    """Held-out loss and greedy generations of each model, on the same batches."""
    import torch

    from minitron.data import DataSpec, token_batches
    from minitron.distill.objectives import heldout_loss
    from minitron.model.load import load_model, load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(models["teacher"]))
    spec = DataSpec(
        source=str(distill_options.get("data", "builtin")),
        text_field=str(distill_options.get("text_field", "text")),
        seq_len=int(distill_options.get("seq_len", 256)),
        batch_size=4,
        samples=HELDOUT_SEQUENCES,
        split="heldout",
        **({"glob": distill_options["glob"]} if "glob" in distill_options else {}),
    )
    batches = list(token_batches(spec, tokenizer))
    out: dict[str, Any] = {"heldout": {"sequences": HELDOUT_SEQUENCES, "seq_len": spec.seq_len}, "models": {}}
    for name, path in models.items():
        model = load_model(resolve_model(path), command="minitron run")
        loss = heldout_loss(model, batches)
        with torch.no_grad():
            generations = []
            for prompt in PROMPTS:
                ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
                new = model.generate(input_ids=ids, max_new_tokens=NEW_TOKENS, do_sample=False)[
                    0, ids.shape[1] :
                ]
                generations.append(
                    {"prompt": prompt, "text": tokenizer.decode(new, skip_special_tokens=True)}
                )
        out["models"][name] = {
            "path": path,
            "params": sum(p.numel() for p in model.parameters()),
            "loss": loss,
            "generations": generations,
        }
        del model
    return out


def benchmark_results(config, paths, models: dict[str, str]) -> dict[str, dict[str, dict[str, float]]]:
    """The evaluate stage's lm-eval scores keyed teacher / pruned / distilled ({} without eval-tasks)."""
    results = _read(paths.evaluate / "results.json") if config.enabled("evaluate") else None
    if not results:
        return {}
    return {label: results[path] for label, path in models.items() if path in results}


def next_steps(config, paths) -> list[str]:
    student = paths.student
    return [
        f"minitron estimate {student} --context 128k --gpu a10g    # serving memory of the student",
        distill_longer(config, paths) + "    # distil twice as long",
        f"python -c \"from transformers import AutoModelForCausalLM; AutoModelForCausalLM.from_pretrained('{student}')\"",
        f"open {config.out / 'report.md'}",
    ]


def distill_longer(config, paths) -> str:
    """The distill stage's own command line (its data, batch, schedule...) resumed with twice the steps:
    a resume under other settings than the run's would be refused."""
    import shlex

    argv = (_read(paths.marker("distill")) or {}).get("argv") or [
        "distill",
        config.teacher,
        str(paths.pruned),
        "--out",
        str(paths.distill),
    ]
    saved = (_read(paths.distill / "train_config.json") or {}).get("config") or {}
    length = (
        ["--tokens", str(2 * saved["tokens"])]
        if saved.get("tokens")
        else ["--steps", str(2 * (saved.get("steps") or 1000))]
    )
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word in ("--steps", "--tokens", "--resume"):
            skip = word != "--resume"
        else:
            kept.append(word)
    return "minitron " + shlex.join([*kept, "--resume", *length])


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", "\\n")


def _markdown(config, paths, evaluation, candidates, compare, steps, benchmarks) -> str:
    run = config.out
    parts = [
        f"# minitron run: {config.teacher}",
        "",
        f"Run file: `{config.source or '-'}`; run directory: `{run}`.",
        "",
    ]
    teacher_loss = evaluation["models"]["teacher"]["loss"]
    parts += ["## Held-out loss", "",
              f"Next-token loss on {evaluation['heldout']['sequences']} held-out sequences of "
              f"{evaluation['heldout']['seq_len']} tokens (the same text for each model).", "",
              _md_table(["model", "params", "loss (nats/token)", "vs teacher", "path"],
                        [[n, r["params"], r["loss"], r["loss"] - teacher_loss, f"`{r['path']}`"]
                         for n, r in evaluation["models"].items()]), ""]  # fmt: skip
    if benchmarks:
        from minitron.evaluate import rows as benchmark_rows

        parts += ["## Benchmarks (lm-eval)", "",
                  f"Tasks: `{config.eval_tasks}`; scores from `{paths.evaluate / 'results.json'}`.", "",
                  _md_table(["task", "metric", *benchmarks],
                            [[task, metric, *values] for task, metric, values in benchmark_rows(benchmarks)]),
                  ""]  # fmt: skip
    if candidates:
        from minitron.model.axes import depth_axis, width_names

        rows = candidates["candidates"][:10]
        moe = any(r.get("active_params", r.get("params")) != r.get("params") for r in rows)
        keys = [
            k
            for k in (
                "rank",
                depth_axis().name,
                *width_names(),
                "params",
                *(["active_params"] if moe else []),
                "objective",
                "decode_tokens_per_s",
            )
            if rows and k in rows[0] and any(r.get(k) is not None for r in rows)
        ]  # the family's axes only; fmt: skip
        context = candidates.get("serving", {}).get("context_tokens")
        memory_header = f"memory at {context:,} tokens (bytes)" if context else "memory (bytes)"
        parts += ["## Search: candidates under the budget", "",
                  _md_table([*keys, memory_header],
                            [[r.get(k) for k in keys] + [(r.get("memory") or {}).get("total_bytes")] for r in rows]),
                  ""]  # fmt: skip
    if compare:
        rows = sorted(compare["candidates"], key=lambda r: r["rank_after"])
        keys = [
            "rank_after",
            "rank_before",
            "candidate",
            "params",
            "memory_bytes",
            "objective_before",
            "lm_loss_before",
            "lm_loss_after",
            "kd_after",
            "teacher_lm_loss",
        ]
        parts += ["## Compare: short distillation of the top candidates", "",
                  _md_table(keys, [[r.get(k) for k in keys] for r in rows]), ""]  # fmt: skip
    parts += ["## Generations (greedy)", ""]
    for name, row in evaluation["models"].items():
        parts += [f"### {name}", ""]
        for g in row["generations"]:
            parts += ["```python", g["prompt"] + g["text"], "```", ""]
    plots = sorted(p for p in run.rglob("*.png") if ".previous" not in str(p))
    if plots:
        parts += ["## Plots", ""] + [f"- [{p.relative_to(run)}]({p.relative_to(run)})" for p in plots] + [""]
    parts += ["## Next", "", "```bash", *steps, "```", ""]
    return "\n".join(parts)
