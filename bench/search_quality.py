"""Does the search choose well? Its pick against simpler strategies at the demo's budget, after the same distillation.

    OMP_NUM_THREADS=1 nice python bench/search_quality.py [--teacher tiny] [--out runs/search_quality]
        [--seeds 0,1,2] [--distill-steps 150] [--eval-batches 16] [--strategies minitron,depth-only]
        [--layers 56] [--smoke]

On the shipped `tiny` teacher with the demo run file (minitron/assets/demo.toml: its budget, serving
settings, scores, search, compare and distillation recipe), each strategy picks one architecture that
fits the same budget. `--teacher tiny-moe` runs the same benchmark on the MoE teacher (28 Mamba / 28
MoE / 6 attention blocks; --out default runs/search_quality_moe) with the demo run file but
`teacher = "tiny-moe"` and the demo's cut: the demo gives tiny 20 MiB when tiny needs 23.50 MiB at the
demo's serving settings (85.1%), so tiny-moe gets that share of its own memory at the same settings,
rounded to 0.1 MiB (20.2 MiB of 23.72 MiB for the shipped tiny-moe; computed at run time from
the weights in place and printed in the report). The search also searches the MoE axes, each down to
40% pruned as the demo's other widths: routed experts in steps of 2 (never below num_experts_per_tok),
expert FFN and shared-expert FFN in the demo's granularity.

    minitron         search + compare of the top candidates, as `minitron run` ships
    no-compare       the search's rank 1
    modelopt         ModelOpt's recipe: a coarse grid (hidden in 8s, FFN in 16s -- 256/512 of the 12B's
                     5120/20480 scaled to 128/512 --, Mamba head dim in 8s, blocks in 2s, at most 40% of
                     each width and 20% of the blocks pruned), its 10 largest by parameters, the best of
                     them by held-out LM loss without distillation. On an MoE teacher the grid also
                     prunes experts as ModelOpt's MoE recipe does: routed experts in steps of 2 and the
                     expert and shared-expert FFN in steps scaled as the FFN's (512/20480 of the size,
                     rounded up to the granularity: 8 for tiny-moe), each at most 40% pruned, experts
                     never below num_experts_per_tok. `modelopt_axes` builds the grid from the teacher.
    width-only       every width axis shrunk by one ratio, no block removed, the largest that fits (on
                     an MoE teacher: routed experts in steps of 2 down to num_experts_per_tok, expert
                     and shared-expert FFN too)
    depth-only       blocks removed in the depth scores' order until it fits, widths kept
    random-1..3      three random candidates of the search space that fit

Every pick is pruned from the same scores (`minitron prune`) and distilled with the demo's recipe for
--distill-steps steps under each seed of --seeds (`minitron distill`), then judged on held-out corpus
text, on text the corpus does not contain (the Python files of the installed `rich` package; the
corpus is the CPython standard library) and on a local lm-eval task built from those files (which of
four lines comes next). Strategies that pick the same architecture share its distilled runs. Every
pick and every (architecture, seed) result is kept in --out and skipped when present: run the command
again to resume. --layers replaces the demo search's `layers` (to measure another setting; give it its
own --out, since the picks are kept there; so does a new tiny-moe's weights).

On tiny-moe, 21 minutes on this machine (one thread, beside another one-thread job; the picks took
about 4 of them):

    OMP_NUM_THREADS=1 nice python bench/search_quality.py --teacher tiny-moe --seeds 0,1,2 --distill-steps 10 --eval-batches 8
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time
from pathlib import Path

TEACHERS = {"tiny": "runs/search_quality", "tiny-moe": "runs/search_quality_moe"}  # teacher: --out default
MODELOPT_MAX_PRUNE = "40%"
WIDTH_PRUNE, DEPTH_PRUNE = 0.4, 0.2  # the recipe's and the demo's most pruned share of a width; of the blocks
# ModelOpt's steps on Nemotron-Nano-12B-v2 (hidden 5120, FFN 20480), as shares of the size
MODELOPT_STEP = {
    "hidden": 256 / 5120,
    "ffn": 512 / 20480,
    "expert_ffn": 512 / 20480,
    "shared_ffn": 512 / 20480,
}
EXPERT_STEP = 2  # routed experts: ModelOpt's 8 of 128 is too coarse for 16 experts
MODELOPT_TOP = 10
RANDOM_PICKS = 3
UNSEEN_PACKAGE = "rich"
STRATEGIES = ("minitron", "no-compare", "modelopt", "width-only", "depth-only",
              *(f"random-{i}" for i in range(1, RANDOM_PICKS + 1)))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", default="tiny", choices=tuple(TEACHERS))
    parser.add_argument("--out", default=None, help="default: runs/search_quality (tiny), ..._moe (tiny-moe)")
    parser.add_argument("--distill-steps", type=int, default=None, help="default: the demo's 150")
    parser.add_argument("--seeds", default="0,1,2", help="distillation seeds, comma-separated")
    parser.add_argument("--eval-batches", type=int, default=16, help="held-out and unseen batches")
    parser.add_argument("--task-items", type=int, default=100)
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="the ones to distil and judge")
    parser.add_argument("--layers", default=None, help="the demo search's --layers (give it its own --out)")
    parser.add_argument("--smoke", action="store_true", help="tiny step counts: checks the benchmark runs")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if args.smoke:
        args.distill_steps = args.distill_steps or 2
        args.eval_batches, args.task_items = 2, 8
    if not seeds or (args.distill_steps is not None and args.distill_steps < 1):
        parser.error("--seeds needs at least one seed and --distill-steps must be positive")
    wanted = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not wanted or set(wanted) - set(STRATEGIES):
        parser.error(f"--strategies: {args.strategies!r}; known: {', '.join(STRATEGIES)}")

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out or TEACHERS[args.teacher])
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(out, args)
    picks = {name: pick for name, pick in bench.picks().items() if name in wanted}
    results = {name: [bench.result(name, pick, seed) for seed in seeds] for name, pick in picks.items()}
    report(out, picks, results, args, bench)


class Bench:
    """The demo run's plan (stage configs built as `minitron run` builds them) and the judged results."""

    def __init__(self, out: Path, args) -> None:
        import functools

        import tomllib

        from minitron.cli import app
        from minitron.cli_options import parse_command, stage_options
        from minitron.model.load import ASSETS_DIR
        from minitron.pipeline.config import resolve
        from minitron.pipeline.stages import Paths, Plan

        raw = tomllib.loads((ASSETS_DIR / "demo.toml").read_text())
        self.teacher = getattr(args, "teacher", "tiny")
        self.budget_note = f"{raw['search']['budget']}, the demo's"
        if self.teacher != raw["teacher"]:
            self.budget_note = teacher_run(raw, self.teacher)
        if args.layers:
            raw["search"]["layers"] = args.layers
        if args.distill_steps:
            raw["distill"].update(steps=args.distill_steps, **{"eval-every": 0, "save-every": 0})
        if args.smoke:
            raw["score"]["samples"] = 8
            raw["search"].update(trials=3, **{"eval-samples": 2, "seed-trials": 2})
            raw["compare"]["steps"] = 2
        options = stage_options(app)
        self.config = resolve(raw, options, source="demo.toml", out=str(out / "demo"))
        self.plan = Plan(self.config, options, functools.partial(parse_command, app))
        self.paths, self.out, self.args = Paths(self.config.out), out, args
        self.steps = {name: (argv, directory) for name, argv, _, _, directory in self.plan.steps()}

    def stage(self, name: str, *extra: str):
        """The stage's config as `minitron run` builds it (plus `extra` options)."""
        return self.plan.build(name, [*self.steps[name][0](), *extra])

    def timed_stage(self, name: str, done: Path) -> float:
        """Run a stage of the demo once; its seconds are kept next to its output."""
        from minitron.atomic import write_json
        from minitron.pipeline.stages import run_stage

        seconds_file = self.out / "seconds" / f"{name}.json"
        if done.exists() and seconds_file.exists():
            return json.loads(seconds_file.read_text())["seconds"]
        t0 = time.perf_counter()
        run_stage(name, self.stage(name))
        seconds = time.perf_counter() - t0
        seconds_file.parent.mkdir(exist_ok=True)
        write_json(seconds_file, {"seconds": seconds})
        return seconds

    def picks(self) -> dict[str, dict]:
        from minitron.atomic import write_json

        cached = self.out / "picks.json"
        if cached.exists():
            return json.loads(cached.read_text())
        paths = self.paths
        self.timed_stage("score", paths.scores)
        search_s = self.timed_stage("search", paths.candidates)
        compare_s = self.timed_stage("compare", paths.compare / "compare.json")
        from minitron.pipeline.stages import chosen_rank
        from minitron.prune.target import read_candidate

        picks = {
            "minitron": self.pick(
                read_candidate(paths.candidates, chosen_rank(self.config, paths)), search_s + compare_s
            ),
            "no-compare": self.pick(read_candidate(paths.candidates, 1), search_s),
            "modelopt": self.modelopt(),
            "width-only": self.width_only(),
            "depth-only": self.depth_only(),
        }
        search = self.search_parts(self.stage("search"))
        space, enumeration = search[2], search[4]
        t0 = time.perf_counter()
        points = enumeration.sample(RANDOM_PICKS, seed=0)
        for i, point in enumerate(points, 1):
            picks[f"random-{i}"] = self.pick(point_spec(space, point), time.perf_counter() - t0)
        write_json(cached, picks)
        return picks

    def source(self):
        """The teacher's Architecture."""
        from minitron.model.load import resolve_model

        return resolve_model(self.teacher).architecture

    def pick(self, spec, seconds: float, **extra) -> dict:
        """A strategy's choice as JSON: the target sizes, the blocks it drops, how long choosing took."""
        from minitron.prune.target import resolve_target

        arch = resolve_target(self.source(), spec, None).arch
        return {"sizes": spec.sizes(), "drop_blocks": list(spec.drop_blocks or ()), "seconds": seconds,
                "arch": arch.summary(), **extra}  # fmt: skip

    @staticmethod
    def search_parts(config):
        from minitron.search.run import _prepare

        return _prepare(config)

    def modelopt(self) -> dict:
        """The 10 largest grid points by parameters, best by held-out LM loss of the pruned model."""
        import dataclasses

        from minitron.search.frontier import params_proxy, rank_by
        from minitron.search.run import _evaluator, _load, _teacher_cache

        t0 = time.perf_counter()
        base = self.stage("search")
        axes = modelopt_axes(self.source(), base.granularity)
        config = dataclasses.replace(base, axes=axes, max_prune=MODELOPT_MAX_PRUNE, objective="lm-loss",
                                     out=self.out / "modelopt")  # fmt: skip
        source, scores, space, constraint, enumeration = self.search_parts(config)
        largest = [p for p, _ in rank_by(enumeration.frontier(), params_proxy(space))[:MODELOPT_TOP]]
        config.out.mkdir(parents=True, exist_ok=True)
        model = _load(config, source)
        cache, _ = _teacher_cache(config, source, model)
        run_point = _evaluator(config, model, scores, space, constraint, cache)
        best = min(largest, key=lambda p: run_point(p)[0])
        seconds = time.perf_counter() - t0
        return self.pick(point_spec(space, best), seconds, grid_points=enumeration.feasible, grid=axes)

    def width_only(self) -> dict:
        """One ratio for every width axis (each size rounded down to its step), all blocks kept.

        The axes pruned by default (attention heads are kept, as Nano 2 keeps them) and every MoE axis:
        routed experts in steps of EXPERT_STEP, never below num_experts_per_tok.
        """
        from minitron.model.arch import MOE
        from minitron.model.axes import axis, width_names
        from minitron.prune.target import TargetSpec, resolve_target

        t0 = time.perf_counter()
        source, scores, space, constraint, _ = self.search_parts(self.stage("search"))
        arch = source.architecture
        granularity = self.stage("search").granularity
        on = [
            a
            for a in width_names()
            if axis(a).on(arch) and (axis(a).max_prune is not None or axis(a).part == MOE)
        ]
        steps = {name: axis(name).unit(arch) or axis(name).step_of(arch, granularity) for name in on}
        least = dict(steps)
        if "experts" in steps:
            steps["experts"], least["experts"] = EXPERT_STEP, arch.experts_per_token
        for i in range(1000, 0, -1):
            sizes = {}
            for name, step in steps.items():
                sizes[name] = max(least[name], int(axis(name).source_size(arch) * i / 1000) // step * step)
            spec = TargetSpec(drop_blocks=(), **sizes)
            if constraint.violation(resolve_target(arch, spec, scores).arch) is None:
                return self.pick(spec, time.perf_counter() - t0, ratio=i / 1000)
        raise SystemExit("width-only: nothing fits the budget")

    def depth_only(self) -> dict:
        from minitron.prune.target import TargetSpec, resolve_target

        t0 = time.perf_counter()
        source, scores, _, constraint, _ = self.search_parts(self.stage("search"))
        order = [int(i) for i in scores.get("depth.order").tolist()]
        for k in range(1, len(order)):
            spec = TargetSpec(drop_blocks=tuple(sorted(order[:k])))
            if constraint.violation(resolve_target(source.architecture, spec, scores).arch) is None:
                return self.pick(spec, time.perf_counter() - t0)
        raise SystemExit("depth-only: nothing fits the budget")

    def result(self, name: str, chosen: dict, seed: int) -> dict:
        """Prune, distil under `seed` and judge one pick; kept in --out and read back when present.

        Strategies that pick the same architecture share its pruned model and its distilled runs (the
        same target, data, steps and seed give the same student).
        """
        import hashlib

        from minitron.atomic import write_json
        from minitron.distill.run import distill
        from minitron.prune.run import PruneConfig
        from minitron.prune.run import run as prune
        from minitron.prune.target import TargetSpec

        target = {"sizes": chosen["sizes"], "drop_blocks": sorted(chosen["drop_blocks"])}
        where = (
            self.out / "targets" / hashlib.sha1(json.dumps(target, sort_keys=True).encode()).hexdigest()[:12]
        )
        cached = where / f"seed{seed}.json"
        if cached.exists():
            return {"strategy": name, "seed": seed, **json.loads(cached.read_text())}
        pruned = where / "pruned"
        if not (pruned / "minitron.json").exists():
            prune(PruneConfig(model=self.config.teacher, out=pruned, scores=self.paths.scores,
                              target=TargetSpec(drop_blocks=tuple(target["drop_blocks"]), **target["sizes"]),
                              overwrite=True, command=f"bench/search_quality.py {name}"))  # fmt: skip
        run = where / f"seed{seed}"
        argv = [a for a in self.steps["distill"][0]()]
        argv[argv.index(str(self.paths.pruned))] = str(pruned)
        argv[argv.index(str(self.paths.distill))] = str(run)
        if not (run / "final" / "config.json").exists():
            resume = ["--resume"] if (run / "checkpoints").is_dir() else []
            distill(self.plan.build("distill", [*argv, "--seed", str(seed), *resume]))
        judged = self.judge(pruned, run / "final")
        write_json(cached, {**judged, "target": target})
        return {"strategy": name, "seed": seed, **judged}

    def judge(self, pruned: Path, student: Path) -> dict:
        """Held-out loss of the pruned model (once per architecture) and of the student; the student's
        unseen-text loss and task accuracy."""
        from minitron.atomic import write_json
        from minitron.distill.objectives import heldout_loss
        from minitron.evaluate import EvalConfig
        from minitron.evaluate import run as lm_eval
        from minitron.model.load import load_model, load_tokenizer, resolve_model

        tokenizer = load_tokenizer(resolve_model(str(student)))
        heldout = self.batches("heldout", tokenizer)
        before_file = pruned.parent / "heldout_before.json"
        if not before_file.exists():
            before = load_model(resolve_model(str(pruned)), dtype="float32")
            write_json(before_file, {"heldout_before": heldout_loss(before, heldout)})
        after = load_model(resolve_model(str(student)), dtype="float32")
        task = EvalConfig(models=[str(student)], tasks=str(self.task()), device="cpu", batch_size=16)
        metrics = next(iter(next(iter(lm_eval(task).values())).values()))
        return {
            **json.loads(before_file.read_text()),
            "heldout_after": heldout_loss(after, heldout),
            "unseen_after": heldout_loss(after, self.batches("unseen", tokenizer)),
            "task_acc": metrics.get("acc"),
        }

    def batches(self, which: str, tokenizer) -> list:
        from minitron.data import DataSpec, token_batches

        seq_len = self.config.stages["distill"]["seq_len"]
        if which == "heldout":
            spec = DataSpec(
                seq_len=seq_len, batch_size=8, samples=8 * self.args.eval_batches, split="heldout"
            )
        else:
            spec = DataSpec(source=str(unseen_dir()), glob="**/*.py", seq_len=seq_len, batch_size=8,
                            samples=8 * self.args.eval_batches)  # fmt: skip
        return list(token_batches(spec, tokenizer))

    def task(self) -> Path:
        """A local lm-eval task: after three lines of an unseen source file, which of four lines comes next."""
        path = self.out / "task" / "next_line.yaml"
        if path.exists():
            return path
        rng = random.Random(0)
        lines = [
            [ln for ln in f.read_text().splitlines() if len(ln.strip()) > 8]
            for f in sorted(unseen_dir().rglob("*.py"))
        ]
        pool = [ln for file in lines for ln in file]
        items = []
        while len(items) < self.args.task_items:
            file = rng.choice([f for f in lines if len(f) > 4])
            i = rng.randrange(3, len(file))
            choices = [file[i], *rng.sample([ln for ln in pool if ln != file[i]], 3)]
            rng.shuffle(choices)
            items.append(
                {"q": "\n".join(file[i - 3 : i]) + "\n", "choices": choices, "label": choices.index(file[i])}
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        data = path.with_suffix(".jsonl")
        data.write_text("".join(json.dumps(item) + "\n" for item in items))
        path.write_text(
            "task: minitron_next_line\n"
            "dataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {data.resolve()}\n"
            "test_split: test\n"
            "output_type: multiple_choice\n"
            'doc_to_text: "{{q}}"\n'
            'doc_to_choice: "{{choices}}"\n'
            'doc_to_target: "{{label}}"\n'
            "metric_list:\n  - metric: acc\n"
        )
        return path


def unseen_dir() -> Path:
    import importlib

    return Path(importlib.import_module(UNSEEN_PACKAGE).__file__).parent


def point_spec(space, point):
    from minitron.prune.target import TargetSpec

    return TargetSpec(drop_blocks=point.depth.dropped or (), **space.pruned_sizes(point.sizes()))


def coarse(top: int, step: int, share: float = WIDTH_PRUNE, least: int = 1) -> str:
    """'LO:TOP:STEP': from `top` down in `step`s, at most `share` of it pruned and never below `least`."""
    return f"{max(least, top - int(top * share) // step * step)}:{top}:{step}"


def modelopt_axes(source, granularity: int) -> dict[str, str]:
    """ModelOpt's coarse grid on `source`: hidden and FFN-like axes in MODELOPT_STEP of their size (rounded up
    to `granularity`), routed experts in EXPERT_STEP, blocks in 2s; Mamba axes are left to the search's
    default (head dim in 8s, heads in groups, 40% pruned). Tiny: hidden 80:128:8, FFN 320:512:16, blocks 50:62:2.
    """
    from minitron.model.axes import axis

    axes = {}
    for name, share in MODELOPT_STEP.items():
        if axis(name).on(source):
            size = axis(name).source_size(source)
            axes[name] = coarse(size, math.ceil(size * share / granularity) * granularity)
    if axis("experts").on(source):
        axes["experts"] = coarse(source.experts, EXPERT_STEP, least=source.experts_per_token)
    axes["layers"] = coarse(source.n_blocks, 2, DEPTH_PRUNE)
    return axes


def teacher_run(raw: dict, teacher: str) -> str:
    """Point the demo run file `raw` at `teacher` with the demo's cut; returns how the budget was set.

    The budget is the share of its own memory the demo gives tiny, at the demo's serving settings; an MoE
    teacher's search also searches the expert axes, each down to 40% pruned (experts in EXPERT_STEP).
    """
    from minitron.memory import ServingSpec
    from minitron.model.load import resolve_model
    from minitron.units import parse_bytes

    search = raw["search"]
    serving = ServingSpec.from_options(**{k: search[k.replace("_", "-")] for k in ServingSpec.option_names()
                                          if k.replace("_", "-") in search})  # fmt: skip
    demo, source = (resolve_model(name).architecture for name in (raw["teacher"], teacher))
    demo_budget, demo_need = search["budget"], serving.memory(demo).total_bytes / 2**20
    share = parse_bytes(demo_budget) / 2**20 / demo_need
    need = serving.memory(source).total_bytes / 2**20
    search["budget"] = f"{round(share * need, 1)}MiB"
    if source.experts:
        granularity = search["granularity"]
        search["experts"] = coarse(source.experts, EXPERT_STEP, least=source.experts_per_token)
        search["expert-ffn"] = coarse(source.expert_ffn, granularity)
        if source.shared_ffn:
            search["shared-ffn"] = coarse(source.shared_ffn, granularity)
    raw["teacher"], demo_teacher = teacher, raw["teacher"]
    return (
        f"{search['budget']}: {share:.1%} of {teacher}'s {need:.2f} MiB, as the demo's {demo_budget}"
        f" of {demo_teacher}'s {demo_need:.2f} MiB"
    )


def report(out: Path, picks: dict, results: dict, args, bench) -> None:
    """The table on the console and as Markdown (search_quality.md), the numbers in search_quality.json."""
    from rich.console import Console
    from rich.table import Table

    from minitron.atomic import write_json
    from minitron.model.arch import BLOCK_NAMES, MOE
    from minitron.model.axes import axis, width_names

    source, serving = bench.source(), bench.stage("search").serving
    title = (
        f"search quality on {bench.teacher} at the demo's budget"
        + (f" (budget {bench.budget_note})" if bench.teacher != "tiny" else "")
        + (" -- SMOKE RUN, not results" if args.smoke else "")
    )
    kinds = [k for k in source.block_kinds if k in source.pattern]
    moe_axes = [a for a in width_names() if axis(a).part == MOE and axis(a).on(source)]
    columns = ("strategy", f"blocks {'/'.join(kinds)}", "widths", "params", "memory MiB", "held-out before",
               "held-out after", "unseen after", "task acc", "pick s")  # fmt: skip
    table = Table(title=title, caption="after: mean ± half the range over the seeds")
    for column in columns:
        table.add_column(column, justify="left" if column in ("strategy", "widths") else "right")
    rows, lines = [], ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name, chosen in picks.items():
        arch = source.drop_blocks(tuple(chosen["drop_blocks"])).with_sizes(**chosen["sizes"])
        seeds = results[name]
        row = {"strategy": name, "arch": chosen["arch"], "params": arch.n_params,
               "memory_bytes": serving.memory(arch).total_bytes, "pick_seconds": chosen["seconds"],
               "heldout_before": seeds[0]["heldout_before"], "seeds": seeds}  # fmt: skip
        for key in ("heldout_after", "unseen_after", "task_acc"):
            values = [r[key] or 0.0 for r in seeds]
            row[f"{key}_mean"], row[f"{key}_spread"] = statistics.mean(values), max(values) - min(values)
        rows.append(row)
        summary = chosen["arch"]
        widths = {**chosen["sizes"], **{a: chosen["sizes"].get(a, summary[a]) for a in moe_axes}}
        cells = (
            name,
            "/".join(str(summary[f"{BLOCK_NAMES[k]}_blocks"]) for k in kinds),
            ", ".join(f"{k} {v}" for k, v in widths.items()) or "the teacher's",
            f"{arch.n_params:,}",
            f"{row['memory_bytes'] / 2**20:.2f}",
            f"{row['heldout_before']:.4f}",
            *(f"{row[f'{k}_mean']:.{d}f} ± {row[f'{k}_spread'] / 2:.{d}f}"
              for k, d in (("heldout_after", 4), ("unseen_after", 4), ("task_acc", 3))),
            f"{chosen['seconds']:.1f}",
        )  # fmt: skip
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    Console(width=200).print(table)
    document = {
        "teacher": bench.teacher,
        "budget": bench.budget_note,
        "smoke": args.smoke,
        "distill_steps": args.distill_steps or 150,
        "seeds": args.seeds,
        "rows": rows,
    }
    write_json(out / "search_quality.json", document)
    (out / "search_quality.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'search_quality.json'}, {out / 'search_quality.md'}")


if __name__ == "__main__":
    main()
