"""The search space and its feasible set, without weights (torch-free parts)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from minitron.errors import MinitronError
from minitron.memory import Budget, ServingSpec, estimate_memory
from minitron.model.load import resolve_model
from minitron.search.frontier import Constraint, Point, enumerate_feasible
from minitron.search.space import DepthOption, build_space, parse_axis

NANO12B = resolve_model("nemotron-nano-12b-v2-base").architecture
NANO2_BUDGET = Budget.from_options("22GiB", None, "5%", "1.3GiB")

NO_EXPERTS = (0, 0, 0)  # experts, expert FFN, shared FFN: the 12B has no MoE blocks


def test_axis_syntax():
    assert parse_axis("4480", "hidden", NANO12B, 64) == (4480,)
    assert parse_axis("4352,4480, 4416", "hidden", NANO12B, 64) == (4480, 4416, 4352)
    assert parse_axis("4992:5120", "hidden", NANO12B, 64) == (5120, 5056, 4992)
    assert parse_axis("4990:5120", "hidden", NANO12B, 64) == (5120, 5056, 4992)  # runs down from HI
    assert parse_axis("96:128:16", "mamba_heads", NANO12B, 64) == (128, 112, 96)
    assert parse_axis("112:128", "mamba_heads", NANO12B, 64) == (128, 120, 112)  # step = 8 groups
    assert parse_axis("source", "ffn", NANO12B, 64) == (20480,)
    assert parse_axis("52:56", "layers", NANO12B, 64) == (56, 55, 54, 53, 52)


@pytest.mark.parametrize(
    "text, axis, message",
    [
        ("44k", "hidden", "--hidden: cannot read '44k'"),
        ("1:2:3:4", "ffn", "--ffn: cannot read"),
        ("5000:6000", "hidden", "--hidden: 6000 is above the source size 5120"),
        ("64", "layers", "--layers: 64 is above the source size 62"),
        ("100", "mamba_heads", "--mamba-heads: 100 is not a multiple of the 8 Mamba groups"),
        ("36", "attn_heads", "--attn-heads: 36 is not a multiple of the 8 KV heads"),
        ("5120:4000", "hidden", "--hidden: range '5120:4000' needs LO <= HI"),
        ("0", "ffn", "--ffn: sizes must be positive"),
    ],
)
def test_bad_axis_is_one_clear_error(text, axis, message):
    with pytest.raises(MinitronError, match="^" + message.replace("(", r"\(").replace("*", r"\*")):
        parse_axis(text, axis, NANO12B, 64)


def test_unknown_axis():
    with pytest.raises(MinitronError, match="unknown axis 'heads'"):
        build_space(NANO12B, {"heads": "8"})


def test_default_space_reaches_fine_granularity():
    space = build_space(NANO12B, {"layers": "56"})
    assert 4480 in space.hidden and 15680 in space.ffn  # ModelOpt's 256/512 steps cannot reach them
    assert min(space.hidden) >= 0.6 * 5120 and min(space.ffn) >= 0.6 * 20480
    assert space.attn_heads == (40,)  # kept, as Nano 2 did
    assert all(h % 8 == 0 for h in space.mamba_heads)
    # no depth order: every split of 6 removed blocks over 28 M / 28 - / 6 * blocks, at most 40% of each
    # kind (11 M, 11 -, 2 *): 18 of the 28 unrestricted splits
    assert len(space.depth) == 18 and all(sum(d.counts) == 6 and d.dropped is None for d in space.depth)


def test_12b_space_holds_the_9b_and_table10_candidates():
    """Nano 2's 9B (56 blocks, 4480, 15680, 128 x 80) and Table 10's candidates 1 and 3 fit 19.60 GiB."""
    space = build_space(NANO12B, {"layers": "56"})
    constraint = Constraint(ServingSpec(context_tokens=131072, budget=NANO2_BUDGET))
    enumeration = enumerate_feasible(space, constraint)
    assert round(NANO2_BUDGET.usable_bytes / 2**30, 2) == 19.60
    depth = next(d for d in space.depth if d.counts == (1, 3, 2))  # the 9B dropped 1 M, 3 -, 2 *
    nano9b = resolve_model("nemotron-nano-9b-v2").architecture
    for hidden, ffn, heads, params in [
        (4480, 17920, 112, 8.92e9),
        (4480, 15680, 128, 8.89e9),
        (4800, 14400, 120, 8.97e9),
    ]:
        point = Point(depth, hidden, ffn, heads, 80, 40, *NO_EXPERTS)
        arch = space.arch(depth, **point.sizes())
        assert abs(arch.n_params - params) < 0.01e9
        assert enumeration.contains(point)
        combo = next(
            c for c in enumeration.combinations
            if (c.depth, c.hidden, c.mamba_heads, c.mamba_head_dim, c.attn_heads) == (depth, hidden, heads, 80, 40)
        )  # fmt: skip
        assert ffn in combo.ffn
    # negative controls: off the 64 grid, over the budget (the 12B's widths at 56 blocks), wrong depth
    assert not enumeration.contains(Point(depth, 4500, 15680, 128, 80, 40, *NO_EXPERTS))
    assert not enumeration.contains(Point(depth, 5120, 20480, 128, 80, 40, *NO_EXPERTS))
    fifty_seven = DepthOption(None, (1, 2, 2))
    assert not enumeration.contains(Point(fifty_seven, 4480, 15680, 128, 80, 40, *NO_EXPERTS))
    nine = space.arch(depth, hidden=4480, ffn=15680, mamba_heads=128, mamba_head_dim=80, attn_heads=40)
    assert nine.n_params == nano9b.n_params == 8_888_227_328


def test_analytic_enumeration_equals_brute_force():
    """The closed-form FFN solve against checking every configuration with memory.estimate_memory."""
    space = build_space(
        NANO12B,
        {"layers": "60:62", "hidden": "4096:5120:256", "ffn": "12288:20480:1024", "mamba_heads": "96:128:16"},
    )
    constraint = Constraint(
        ServingSpec(context_tokens=65536, budget=NANO2_BUDGET), min_params=int(9e9), max_params=int(10.5e9)
    )
    enumeration = enumerate_feasible(space, constraint)
    got = {c.point(f).key() for c in enumeration.combinations for f in c.ffn}
    want = set()
    for depth, *values in itertools.product(space.depth, *space.width.values()):
        sizes = dict(zip(space.width, values, strict=True))
        arch = dataclasses.replace(space.arch(depth), **sizes)
        mem = estimate_memory(arch, 65536)
        if mem.total_bytes <= constraint.usable_bytes and 9e9 <= arch.n_params <= 10.5e9:
            want.add(Point(depth, **sizes).key())
    assert got == want and 0 < len(want) < space.size
    assert enumeration.feasible == len(want)
    # the frontier holds the largest fitting FFN of each combination
    for combo in enumeration.combinations:
        assert combo.ffn[0] == max(combo.ffn)


def test_budget_below_the_smallest_candidate():
    from minitron.units import format_bytes

    space = build_space(NANO12B, {"layers": "56"})
    constraint = Constraint(ServingSpec(context_tokens=131072, budget=Budget.from_options("6GiB")))
    with pytest.raises(MinitronError) as e:
        enumerate_feasible(space, constraint)
    smallest = min(
        constraint.memory(
            space.arch(d, hidden=min(space.hidden), ffn=min(space.ffn), mamba_heads=min(space.mamba_heads),
                       mamba_head_dim=min(space.mamba_head_dim), attn_heads=40)
        ).total_bytes
        for d in space.depth
    )  # fmt: skip
    assert str(e.value).startswith(
        f"nothing in the search space fits the budget 6.00 GiB: the smallest candidate needs {format_bytes(smallest)}"
    )
