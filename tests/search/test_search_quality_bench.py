"""bench/search_quality.py's strategies pick what they say, under the demo's budget (no distillation)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
from bench_scripts import BENCH_DIR, load_bench

pytestmark = pytest.mark.slow  # scores the tiny teacher first (20-100 s on the shared 2-core box)

BENCH = BENCH_DIR / "search_quality.py"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    module = load_bench("search_quality")
    out = tmp_path_factory.mktemp("search_quality")
    args = argparse.Namespace(smoke=True, distill_steps=2, layers=None, eval_batches=2, task_items=8)
    bench = module.Bench(out, args)
    bench.timed_stage("score", bench.paths.scores)
    return module, bench


def _fits(bench, chosen) -> tuple[object, bool]:
    from minitron.prune.target import TargetSpec, resolve_target

    source, scores, _, constraint, _ = bench.search_parts(bench.stage("search"))
    spec = TargetSpec(drop_blocks=tuple(chosen["drop_blocks"]), **chosen["sizes"])
    arch = resolve_target(source.architecture, spec, scores).arch
    return arch, constraint.violation(arch) is None


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
        assert _fits(bench, module.pick(module.point_spec(space, point), 0.0))[1]
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
