"""Scale rehearsal: the plan against measured peak RSS, and time per token against parameters.

    nice python bench/scale.py [--hidden 256,512,1024] [--seq-len 128] [--batch-size 2] [--steps 3]

Random-weight NemotronH models with the 12B's 62-block pattern (Nemotron-Nano-12B-v2-Base) and the
tiny tokenizer (vocabulary 4096), at each --hidden (FFN 4 x hidden, Mamba 64-channel heads with
d_inner = 2 x hidden, 8 groups, state hidden / 16, attention heads of 64 with a quarter as many KV
heads; hidden 256 / 512 / 1024 are ~27M / ~103M / ~404M parameters), each through:

    score     one-shot depth (mse) + width, a few calibration samples
    search    a short search with evaluation (the teacher's top-k cache, a few trials)
    prune     the best candidate
    distill   a few steps, with and without --gradient-checkpointing

Every stage is its own `python -m minitron` process on the CPU (float32); its peak RSS is the
kernel's ru_maxrss of that process (os.wait4), compared with `minitron plan --gpu cpu` for the same
settings. A baseline process (imports, tokenizer, data, no model) is measured too: what the plan's
`runtime` term is. Prints one table and writes JSON (--json); the log-log slopes of peak memory and
of time per token against parameters are fitted over the sizes run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PATTERN_SOURCE = "nemotron-nano-12b-v2-base"
BASELINE = """
from minitron.data import DataSpec, token_batches
from minitron.model.load import load_tokenizer, resolve_model
import minitron.distill.trainer, minitron.search.run, minitron.importance.run
tok = load_tokenizer(resolve_model("tiny"))
batches = list(token_batches(DataSpec(seq_len={seq_len}, batch_size={batch}, samples=8), tok))
"""


def scaled_arch(hidden: int, chunk: int):
    import dataclasses

    from minitron.model.load import resolve_model

    tiny = resolve_model("tiny").architecture
    pattern = resolve_model(PATTERN_SOURCE).architecture.pattern
    heads = hidden // 64
    return dataclasses.replace(
        tiny, pattern=pattern, hidden=hidden, ffn=4 * hidden, attn_heads=heads, kv_heads=max(1, heads // 4),
        head_dim=64, mamba_heads=hidden // 32, mamba_head_dim=64, mamba_groups=8, ssm_state=max(16, hidden // 16),
        extra={**tiny.extra, "chunk_size": chunk},
    )  # fmt: skip


def write_teacher(arch, path: Path) -> None:
    from minitron.model.load import build_model, resolve_model

    if (path / "model.safetensors").exists():
        return
    path.mkdir(parents=True, exist_ok=True)
    build_model(arch, seed=0).save_pretrained(path)
    tiny = resolve_model("tiny").path
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny / name, path / name)


def run_stage(argv: list[str], log: Path) -> dict:
    """Run one `python -m minitron` (or `python -c`) process; its peak RSS and wall time."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(argv)} (log: {log})\n" + log.read_text()[-2000:])
    return {"peak_rss_bytes": usage.ru_maxrss * 1024, "seconds": seconds}


def plan_peaks(teacher, student, args, samples, depth_samples) -> dict[str, dict]:
    from minitron.plan.stages import PlanConfig, plan_stage

    common = dict(teacher=teacher, student=student, gpu="cpu", seq_len=args.seq_len, batch_size=args.batch_size,
                  samples=samples, depth_samples=depth_samples, depth_mode="one-shot",
                  eval_samples=args.eval_samples, top_k=args.top_k, chunk_tokens=256)  # fmt: skip
    out = {}
    for stage, changes in (("score", {}), ("search", {}), ("distill", {}),
                           ("distill+ckpt", {"gradient_checkpointing": True})):  # fmt: skip
        plan = plan_stage(PlanConfig(**common, **changes), stage.split("+")[0])
        out[stage] = {"peak_bytes": plan.peak_bytes, "terms": {t.name: int(t.bytes) for t in plan.terms}}
    return out


def slope(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 2 or min(ys) <= 0:
        return None
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    den = sum((x - mx) ** 2 for x in lx)
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly, strict=True)) / den if den else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", default="256,512,1024", help="Comma-separated hidden sizes (one model each).")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--samples", type=int, default=4, help="Calibration samples of score.")
    p.add_argument("--depth-samples", type=int, default=2)
    p.add_argument("--eval-samples", type=int, default=4)
    p.add_argument("--top-k", type=int, default=64)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="Distillation steps.")
    p.add_argument("--chunk-size", type=int, default=64, help="Mamba-2 chunk size of the models.")
    p.add_argument("--work", default="/tmp/minitron-scale", help="Where the models and runs go.")
    p.add_argument("--json", default=None, help="Also write the results here.")
    p.add_argument("--report", nargs="+", default=None, help="Only print the table of earlier --json files.")
    args = p.parse_args()
    if args.report:
        report([json.loads(Path(path).read_text()) for path in args.report])
        return

    from minitron.model.load import resolve_model

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    base = run_stage(
        ["-c", BASELINE.format(seq_len=args.seq_len, batch=args.batch_size)], work / "baseline.log"
    )
    print(
        f"baseline (imports, tokenizer, data; no model): {base['peak_rss_bytes'] / 2**20:.0f} MiB", flush=True
    )
    rows = []
    for hidden in [int(h) for h in args.hidden.split(",")]:
        arch = scaled_arch(hidden, args.chunk_size)
        d = work / f"h{hidden}"
        teacher = d / "teacher"
        write_teacher(arch, teacher)
        for sub in ("search", "student", "distill", "distill-ckpt"):
            shutil.rmtree(d / sub, ignore_errors=True)
        m = ["-m", "minitron"]
        data = ["--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size)]
        measured = {}
        tokens = {}
        measured["score"] = run_stage([*m, "score", str(teacher), "--out", str(d / "scores.safetensors"), *data,
                                       "--samples", str(args.samples), "--depth-samples", str(args.depth_samples),
                                       "--depth-mode", "one-shot", "--device", "cpu", "--dtype", "float32"],
                                      d / "score.log")  # fmt: skip
        tokens["score"] = args.samples * args.seq_len
        measured["search"] = run_stage([*m, "search", str(teacher), "--out", str(d / "search"), "--scores",
                                        str(d / "scores.safetensors"), "--max-params", "75%", "--layers", "56", "--budget", "1TiB",
                                        "--trials", str(args.trials), "--seed-trials", "1", "--eval-samples",
                                        str(args.eval_samples), "--top-k", str(args.top_k), *data, "--device", "cpu"],
                                       d / "search.log")  # fmt: skip
        tokens["search"] = args.trials * args.eval_samples * args.seq_len
        measured["prune"] = run_stage([*m, "prune", str(teacher), "--candidate", str(d / "search" / "candidates.json"),
                                       "--rank", "1", "--scores", str(d / "scores.safetensors"), "--out",
                                       str(d / "student"), "--dtype", "float32"], d / "prune.log")  # fmt: skip
        distill = [*m, "distill", str(teacher), str(d / "student"), *data, "--steps", str(args.steps),
                   "--eval-every", "0", "--save-every", "0", "--eval-batches", "1", "--device", "cpu"]  # fmt: skip
        measured["distill"] = run_stage([*distill, "--out", str(d / "distill")], d / "distill.log")
        measured["distill+ckpt"] = run_stage([*distill, "--out", str(d / "distill-ckpt"), "--gradient-checkpointing"],
                                             d / "distill-ckpt.log")  # fmt: skip
        tokens["distill"] = tokens["distill+ckpt"] = args.steps * args.batch_size * args.seq_len
        student = resolve_model(str(d / "student")).architecture
        planned = plan_peaks(arch, student, args, args.samples, args.depth_samples)
        row = {"hidden": hidden, "teacher_params": arch.n_params, "student_params": student.n_params,
               "measured": measured, "planned": planned, "tokens": tokens}  # fmt: skip
        rows.append(row)
        for stage, m_ in measured.items():
            plan = planned.get(stage, {}).get("peak_bytes")
            ratio = f"{plan / m_['peak_rss_bytes']:.2f}" if plan else "-"
            print(f"h{hidden} {arch.n_params / 1e6:.0f}M {stage:13s} measured {m_['peak_rss_bytes'] / 2**20:8.0f} MiB"
                  f"  plan {plan / 2**20 if plan else float('nan'):8.0f} MiB  plan/measured {ratio}"
                  f"  {m_['seconds']:7.1f} s", flush=True)  # fmt: skip
    summary = {"baseline": base, "args": vars(args), "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    report([summary])


def report(runs: list[dict]) -> None:
    """The rehearsal table (markdown) over every size of `runs`, and the log-log slopes against parameters.

    Memory slopes are of the peak RSS above the baseline process; time slopes of the wall seconds per
    token of the whole process (its imports and loading included: short stages grow less than linearly
    for that). Each planned term's slope says which term is not
    linear in the parameters (activations grow with hidden only; logit chunks with the vocabulary).
    """
    rows = sorted(
        ((r, run["baseline"]) for run in runs for r in run["rows"]), key=lambda rb: rb[0]["teacher_params"]
    )
    print(
        "| hidden | teacher params | stage | measured peak RSS | plan | plan / measured | seconds | s per 1k tokens |"
    )  # noqa: E501
    print("|---|---|---|---|---|---|---|---|")
    for r, _ in rows:
        for stage, m in r["measured"].items():
            plan = r["planned"].get(stage, {}).get("peak_bytes")
            per_k = m["seconds"] / r["tokens"][stage] * 1000 if stage in r["tokens"] else None
            print(f"| {r['hidden']} | {r['teacher_params'] / 1e6:.1f}M | {stage} | {m['peak_rss_bytes'] / 2**20:,.0f} MiB | "
                  + (f"{plan / 2**20:,.0f} MiB | {plan / m['peak_rss_bytes']:.2f} | " if plan else "- | - | ")
                  + f"{m['seconds']:.1f} | " + (f"{per_k:.2f} |" if per_k is not None else "- |"))  # fmt: skip
    if len(rows) < 2:
        return
    params = [r["teacher_params"] for r, _ in rows]
    print(
        "\n| stage | slope: peak RSS above baseline | slope: time per token | slopes of the planned terms |"
    )
    print("|---|---|---|---|")
    for stage in rows[0][0]["measured"]:
        mem = slope(params, [r["measured"][stage]["peak_rss_bytes"] - b["peak_rss_bytes"] for r, b in rows])
        t = None
        if stage in rows[0][0]["tokens"]:
            t = slope(params, [r["measured"][stage]["seconds"] / r["tokens"][stage] for r, _ in rows])
        planned = rows[0][0]["planned"].get(stage, {}).get("terms", {})
        term_slopes = []
        for term in planned:
            values = [r["planned"][stage]["terms"][term] for r, _ in rows]
            if min(values) > 0:
                term_slopes.append(f"{term} {slope(params, values):.2f}")
        print(
            f"| {stage} | "
            + (f"{mem:.2f}" if mem is not None else "-")
            + " | "
            + (f"{t:.2f}" if t is not None else "-")
            + f" | {', '.join(term_slopes)} |"
        )


if __name__ == "__main__":
    main()
