"""`minitron compare`: prune each of the search's top candidates, distil each the same way, rank them again.

The Nano 2 team distilled its top 3 candidates briefly before choosing one: rankings by the search
objective (measured before any training) flip after distillation. Every candidate is pruned in memory
from the teacher (`prune_to`, ranked by the scores file) and distilled with the same data, steps and
seed into `<out>/rank-<r>/` (a normal distill run directory). Writes into `--out`:

    compare_config.json   the settings; a later call with the same --out and settings continues
    rank-<r>/             each candidate's run (resumable: a killed compare picks up where it stopped)
    compare.json, compare.csv, compare.png   the table: before vs after distillation
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from minitron.atomic import write_json, write_png, write_text
from minitron.distill.losses import KDLoss
from minitron.distill.trainer import TrainConfig
from minitron.errors import MinitronError
from minitron.runs import claim, file_digest

COLUMNS = ("rank_before", "rank_after", "candidate", "params", "memory_bytes", "objective_before",
           "kd_before", "kd_after", "lm_loss_before", "lm_loss_after", "teacher_lm_loss")  # fmt: skip


@dataclass(frozen=True)
class CompareConfig:
    teacher: str
    candidates: str
    out: str
    train: TrainConfig  # the recipe every candidate gets; its model and out are set per candidate
    scores: str | None = None
    top: int = 3
    loss: KDLoss = field(default_factory=KDLoss)
    chunk_tokens: int = 256

    def __post_init__(self) -> None:
        from minitron.atomic import check_writable

        if self.top < 1:
            raise MinitronError(f"--top must be at least 1, got {self.top}")
        if self.chunk_tokens < 1:
            raise MinitronError(f"--chunk-tokens must be positive, got {self.chunk_tokens}")
        if self.train.stop_at_step is not None:
            raise MinitronError("--stop-at-step does not apply to compare (interrupt it and run it again)")
        check_writable(self.out)

    @classmethod
    def from_options(
        cls,
        teacher: str,
        candidates: str,
        out: str,
        scores: str | None,
        top: int,
        chunk_tokens: int,
        **options: Any,
    ) -> CompareConfig:
        """`minitron compare`'s options -> its config; every candidate gets the same training recipe
        (held-out loss only at its start and end)."""
        from minitron.distill.run import kd_loss, recipe

        loss = kd_loss(options)
        return cls(teacher=teacher, candidates=candidates, out=out, scores=scores, top=top,
                   loss=loss, chunk_tokens=chunk_tokens, train=recipe(eval_every=0, **options))  # fmt: skip


@dataclass
class CandidateResult:
    rank_before: int
    candidate: str
    params: int
    memory_bytes: int | None  # at the spec the search served it at (the candidates file's figure)
    objective_before: float | None  # the search's objective, from the candidates file
    kd_before: float
    kd_after: float
    lm_loss_before: float
    lm_loss_after: float
    teacher_lm_loss: float
    rank_after: int = 0
    run: str = ""


def compare(config: CompareConfig, console=None) -> list[CandidateResult]:
    """Distil the top `config.top` candidates and rank them by held-out LM loss after distillation."""
    import torch

    from minitron.device import resolve_device
    from minitron.distill.kd import Distillation, shared_vocab
    from minitron.distill.trainer import train
    from minitron.importance.scores import load_scores
    from minitron.model.load import load_model, load_tokenizer, resolve_model
    from minitron.parallel import launched_distributed
    from minitron.prune.slicing import prune_to
    from minitron.prune.target import (
        candidates_document,
        read_candidate,
        resolve_target,
        searched_memory_bytes,
    )

    if launched_distributed():
        raise MinitronError(
            "compare runs in one process (its candidates one after another); run it without torchrun"
        )
    resolve_device(config.train.device)  # a device this machine lacks: one line, before anything is loaded
    console = console or _wide_console()
    out = Path(config.out)
    source = resolve_model(config.teacher)
    source.require_weights("minitron compare")
    config.loss.check_vocab(source.architecture.vocab)
    rows = _top_rows(Path(config.candidates), config.top, source)
    scores = None
    if config.scores is not None:
        scores = load_scores(config.scores)
        scores.check_matches(source.architecture, source.fingerprint())
    specs = {row["rank"]: read_candidate(config.candidates, row["rank"], source) for row in rows}
    targets = {r: resolve_target(source.architecture, spec, scores) for r, spec in specs.items()}
    needs_scores = [r for r, t in targets.items() if _narrows_width(source.architecture, t.arch)]
    if needs_scores and scores is None:
        raise MinitronError(
            f"candidates {needs_scores} narrow width axes: give --scores (from `minitron score`)"
        )
    settings = _settings(config, source.fingerprint())
    _forget_unstarted(out, settings)
    claim(out, "compare_config.json", settings, "compare")

    teacher = load_model(source, dtype="float32", device="cpu", command="minitron compare")
    tokenizer = load_tokenizer(source, command="minitron compare")
    document = candidates_document(config.candidates)
    results = []
    for row in rows:
        rank = row["rank"]
        arch = targets[rank].arch
        run_dir = out / f"rank-{rank}"
        name = _describe(arch, targets[rank].dropped_blocks)
        console.rule(f"candidate {rank}: {name}")
        if not (run_dir / "final").exists():
            student = prune_to(teacher, specs[rank], scores)
            objective = Distillation(teacher, config.loss, shared_vocab(arch.vocab, teacher.config.vocab_size,
                                                                         len(tokenizer)), config.chunk_tokens)  # fmt: skip
            resume = run_dir.exists() and (run_dir / "checkpoints" / "latest").exists()
            if run_dir.exists() and not resume:
                import shutil

                shutil.rmtree(run_dir)  # started but never checkpointed: nothing to keep
            torch.manual_seed(config.train.seed)
            # Evaluated at step 0 (after pruning) and at the end (after distillation).
            recipe = dataclasses.replace(config.train, model=f"candidate {rank}", out=str(run_dir), resume=resume,
                                         eval_every=config.train.total_steps())  # fmt: skip
            train(recipe,
                  objective=objective, model=student, tokenizer=tokenizer,
                  provenance={"teacher": {"model": source.name, "fingerprint": source.fingerprint()},
                              "candidate": {"file": str(Path(config.candidates).resolve()), "rank": rank,
                                            "row": row}},
                  group=out.resolve().name)  # fmt: skip
            teacher.cpu()
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        evals = [r for r in records if "eval_kd" in r]
        first, last = evals[0], evals[-1]
        memory = searched_memory_bytes(document, row, arch)
        results.append(CandidateResult(
            rank_before=rank, candidate=name, params=arch.n_params, memory_bytes=memory,
            objective_before=row.get("objective") if isinstance(row.get("objective"), (int, float)) else None,
            kd_before=first["eval_kd"], kd_after=last["eval_kd"], lm_loss_before=first["eval_lm_loss"],
            lm_loss_after=last["eval_lm_loss"], teacher_lm_loss=last["eval_teacher_lm_loss"], run=str(run_dir),
        ))  # fmt: skip
    for i, result in enumerate(sorted(results, key=lambda r: r.lm_loss_after), 1):
        result.rank_after = i
    _write_outputs(out, results, settings)
    console.print(table(results))
    console.print(f"wrote {out / 'compare.json'}, compare.csv, compare.png")
    return results


def _wide_console():
    """Rich's console; piped or logged (not a terminal), wide enough that the table is not squeezed."""
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


def _top_rows(path: Path, top: int, model) -> list[dict[str, Any]]:
    import sys

    from minitron.prune.target import candidate_rows

    rows = candidate_rows(path, model)
    if not all(isinstance(r.get("rank"), int) for r in rows):
        raise MinitronError(f"{path}: not a candidates file (every candidate needs an integer 'rank')")
    if not rows:
        raise MinitronError(f"{path}: holds no candidates")
    if top > len(rows):
        print(f"note: --top {top} but {path} holds {len(rows)} candidates; comparing all {len(rows)}",
              file=sys.stderr)  # fmt: skip
    return sorted(rows, key=lambda r: r["rank"])[:top]


def _narrows_width(source, target) -> bool:
    from minitron.prune.target import width_axes_changed

    return bool(width_axes_changed(source, target))


def _describe(arch, dropped: tuple[int, ...]) -> str:
    from minitron.model.arch import ATTENTION, DENSE, MAMBA, MLP, MOE, SPARSE
    from minitron.model.axes import width_axes

    # the block kinds it has, e.g. 28M/17-/5* (tiny) or 28M/28E/6* (tiny-moe)
    counts = "/".join(f"{n}{k}" for k in (MAMBA, MLP, MOE, ATTENTION, DENSE, SPARSE) if (n := arch.count(k)))
    drop = f" (drop {','.join(map(str, dropped))})" if dropped else ""
    sizes = " ".join(f"{a.name}={getattr(arch, a.name)}" for a in width_axes() if a.on(arch))
    return f"{counts}{drop} {sizes}"


def _settings(config: CompareConfig, fingerprint: str) -> dict[str, Any]:
    """What the compare's results depend on: files by content, not by path (a moved run continues)."""
    train = asdict(dataclasses.replace(config.train, model="", out="", resume=False, report_to="none"))
    return json.loads(json.dumps({
        "teacher_fingerprint": fingerprint, "candidates": file_digest(config.candidates, 16),
        "scores": file_digest(config.scores, 16) if config.scores else None, "top": config.top,
        "loss": asdict(config.loss), "chunk_tokens": config.chunk_tokens, "train": train,
    }))  # fmt: skip


def _forget_unstarted(out: Path, settings: dict[str, Any]) -> None:
    """A compare that never checkpointed a candidate (e.g. refused after its settings were written)
    holds nothing to continue: its settings do not block a corrected command."""
    path = out / "compare_config.json"
    started = any(out.glob("rank-*/checkpoints")) or any(out.glob("rank-*/final"))
    if path.is_file() and not started and json.loads(path.read_text()) != settings:
        import shutil

        for run in out.glob("rank-*"):
            shutil.rmtree(run)
        path.unlink()


def _write_outputs(out: Path, results: list[CandidateResult], settings: dict[str, Any]) -> None:
    write_json(out / "compare.json", {"settings": settings, "candidates": [asdict(r) for r in results]})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in sorted(results, key=lambda r: r.rank_after):
        writer.writerow(asdict(r))
    write_text(out / "compare.csv", buffer.getvalue())
    _plot(out / "compare.png", results)


def _plot(path: Path, results: list[CandidateResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in results:
        ax.plot(
            [0, 1], [r.lm_loss_before, r.lm_loss_after], marker="o", label=f"#{r.rank_before} {r.candidate}"
        )
    ax.axhline(results[0].teacher_lm_loss, color="black", linestyle="--", label="teacher")
    ax.set_xticks([0, 1], ["after pruning", "after distillation"])
    ax.set_ylabel("held-out LM loss (nats / token)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    write_png(path, fig)


def table(results: list[CandidateResult]):
    from rich.table import Table

    from minitron.units import format_bytes

    t = Table(
        title="candidates after pruning (0) and after distillation (end), ranked by held-out LM loss at the end"
    )
    for name in ("#after", "#before", "candidate", "params", "memory", "search obj", "KD 0", "KD end",
                 "LM 0", "LM end"):  # fmt: skip
        t.add_column(name, justify="left" if name == "candidate" else "right", overflow="fold")
    for r in sorted(results, key=lambda r: r.rank_after):
        t.add_row(str(r.rank_after), str(r.rank_before), r.candidate, f"{r.params:,}", "-" if r.memory_bytes is None else format_bytes(r.memory_bytes),
                  "-" if r.objective_before is None else f"{r.objective_before:.4f}", f"{r.kd_before:.4f}",
                  f"{r.kd_after:.4f}", f"{r.lm_loss_before:.4f}", f"{r.lm_loss_after:.4f}")  # fmt: skip
    if results:
        t.caption = (
            f"teacher held-out LM loss {results[0].teacher_lm_loss:.4f}; KD = held-out KL to the teacher"
        )
    return t
