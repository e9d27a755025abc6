"""bench/search_quality.py's strategies pick what they say, under the demo's budget (no distillation on
tiny; two distillation steps per pick on tiny-moe, end to end)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
from bench_scripts import BENCH_DIR, load_bench

from minitron.model.load import BUILTIN_CHECKPOINTS

pytestmark = pytest.mark.slow  # scores the tiny teacher first (20-100 s on the shared 2-core box)

BENCH = BENCH_DIR / "search_quality.py"
TINY_MOE = BUILTIN_CHECKPOINTS["tiny-moe"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    module = load_bench("search_quality")
    out = tmp_path_factory.mktemp("search_quality")
    args = argparse.Namespace(
        teacher="tiny", smoke=True, distill_steps=2, layers=None, eval_batches=2, task_items=8
    )
    bench = module.Bench(out, args)
    bench.timed_stage("score", bench.paths.scores)
    return module, bench


def _fits(bench, chosen) -> tuple[object, bool]:
    from minitron.prune.target import TargetSpec, resolve_target

    source, scores, _, constraint, _ = bench.search_parts(bench.stage("search"))
    spec = TargetSpec(drop_blocks=tuple(chosen["drop_blocks"]), **chosen["sizes"])
    arch = resolve_target(source.architecture, spec, scores).arch
    return arch, constraint.violation(arch) is None


def test_modelopt_grid_on_tiny_is_the_recipe_scaled_to_its_widths(bench):
    module, bench = bench
    grid = module.modelopt_axes(bench.source(), 8)
    assert grid == {"hidden": "80:128:8", "ffn": "320:512:16", "layers": "50:62:2"}


def test_width_only_shrinks_every_width_axis_by_one_ratio_and_keeps_every_block(bench):
    from minitron.model.axes import axis

    module, bench = bench
    chosen = bench.width_only()
    arch, fits = _fits(bench, chosen)
    assert fits and chosen["drop_blocks"] == [] and arch.n_blocks == 62
    ratio = chosen["ratio"]
    assert 0 < ratio < 1
    # each size is the ratio's share of the source, rounded down to the axis step (8 for tiny's widths)
    assert chosen["sizes"]["hidden"] == int(128 * ratio) // 8 * 8
    assert chosen["sizes"]["ffn"] == int(512 * ratio) // 8 * 8
    # The scan goes down in thousandths, so the next larger ratio grows each axis by at most one step;
    # it did not fit, so every axis one step larger does not either.
    source = bench.search_parts(bench.stage("search"))[0].architecture
    steps = {name: axis(name).unit(source) or axis(name).step_of(source, 8) for name in chosen["sizes"]}
    assert steps["hidden"] == steps["ffn"] == 8
    bigger = {k: min(v + steps[k], axis(k).source_size(source)) for k, v in chosen["sizes"].items()}
    assert not _fits(bench, dict(chosen, sizes=bigger))[1]


def test_depth_only_drops_the_least_important_blocks_until_it_fits(bench):
    module, bench = bench
    chosen = bench.depth_only()
    _, fits = _fits(bench, chosen)
    assert fits and chosen["sizes"] == {}
    source, scores, *_ = bench.search_parts(bench.stage("search"))
    order = [int(i) for i in scores.get("depth.order").tolist()]
    k = len(chosen["drop_blocks"])
    assert sorted(chosen["drop_blocks"]) == sorted(order[:k])  # a prefix of the depth order
    assert not _fits(bench, dict(chosen, drop_blocks=order[: k - 1]))[1]  # one block fewer does not fit


def test_random_picks_fit_and_the_task_is_well_formed(bench):
    module, bench = bench
    source, scores, space, constraint, enumeration = bench.search_parts(bench.stage("search"))
    points = enumeration.sample(module.RANDOM_PICKS, seed=0)
    assert len({str(p) for p in points}) == module.RANDOM_PICKS
    for point in points:
        assert _fits(bench, bench.pick(module.point_spec(space, point), 0.0))[1]
    task = bench.task()
    items = [json.loads(line) for line in task.with_suffix(".jsonl").read_text().splitlines()]
    assert len(items) == 8
    # the right answer is the line of an unseen file (lines of 9+ characters) after the question's three
    files = ["\n".join(ln for ln in f.read_text().splitlines() if len(ln.strip()) > 8) + "\n"
             for f in module.unseen_dir().rglob("*.py")]  # fmt: skip
    for item in items:
        assert len(set(item["choices"])) == 4 and 0 <= item["label"] < 4
        assert any(item["q"] + item["choices"][item["label"]] + "\n" in text for text in files)


def test_unknown_strategy_is_one_error_line_before_any_work(tmp_path):
    result = subprocess.run([sys.executable, str(BENCH), "--out", str(tmp_path), "--strategies", "minitron,nope"],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2
    assert "--strategies: 'minitron,nope'; known: minitron, no-compare" in result.stderr
    assert "Traceback" not in result.stderr and not any(tmp_path.iterdir())


@pytest.mark.skipif(not (TINY_MOE / "config.json").exists(), reason="tiny-moe is not installed")
def test_tiny_moe_smoke_run_picks_fit_its_scaled_budget_and_prune_experts(tmp_path):
    """The whole --smoke run on tiny-moe: every pick fits the budget (recounted here with the demo's
    serving settings), the ModelOpt pick is on its expert grid, width-only keeps at least top-k experts."""
    import math

    import tomllib

    from minitron.memory import ServingSpec
    from minitron.model.load import ASSETS_DIR, resolve_model
    from minitron.units import parse_bytes

    # every strategy picks; two of them are distilled and judged (the rest costs minutes, not checks)
    judged = {"minitron", "width-only"}
    result = subprocess.run([sys.executable, str(BENCH), "--teacher", "tiny-moe", "--smoke", "--seeds", "0",
                             "--strategies", ",".join(sorted(judged)), "--out", str(tmp_path)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads((tmp_path / "search_quality.json").read_text())
    picks = json.loads((tmp_path / "picks.json").read_text())
    assert set(picks) == set(load_bench("search_quality").STRATEGIES)
    assert document["teacher"] == "tiny-moe" and {r["strategy"] for r in document["rows"]} == judged

    search = tomllib.loads((ASSETS_DIR / "demo.toml").read_text())["search"]
    serving = ServingSpec.from_options(context=search["context"], budget=search["budget"])
    source, tiny = resolve_model("tiny-moe").architecture, resolve_model("tiny").architecture
    share = parse_bytes(search["budget"]) / serving.memory(tiny).total_bytes  # the demo's 20 MiB of tiny's
    budget = round(share * serving.memory(source).total_bytes / 2**20, 1)
    assert document["budget"].startswith(f"{budget}MiB")
    usable = ServingSpec.from_options(
        context=search["context"],
        budget=f"{budget}MiB",
        headroom=search["headroom"],
        reserve=search["reserve"],
    ).budget.usable_bytes
    for name, chosen in picks.items():
        arch = source.drop_blocks(tuple(chosen["drop_blocks"])).with_sizes(**chosen["sizes"])
        assert serving.memory(arch).total_bytes <= usable, name
        assert arch.experts >= source.experts_per_token, name

    lo = source.experts - math.floor(0.4 * source.experts) // 2 * 2
    assert picks["modelopt"]["arch"]["experts"] in range(max(lo, 4), source.experts + 1, 2)
    assert picks["modelopt"]["grid"]["experts"] == f"{max(lo, 4)}:{source.experts}:2"
    width = picks["width-only"]
    assert {"experts", "expert_ffn", "shared_ffn", "hidden"} <= set(width["sizes"])
    assert width["drop_blocks"] == []
    assert width["sizes"]["experts"] == max(4, int(source.experts * width["ratio"]) // 2 * 2)
    assert width["sizes"]["expert_ffn"] == max(8, int(source.expert_ffn * width["ratio"]) // 8 * 8)
    # the table shows the MoE blocks and the expert axes of every pick
    table = (tmp_path / "search_quality.md").read_text()
    assert table.startswith("| strategy | blocks M/*/E | widths |")
    for name in judged:
        chosen = picks[name]
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
        assert f"experts {chosen['arch']['experts']}" in row and "expert_ffn" in row
