"""Enumerating the feasible 12B search space against checking every configuration one by one.

The Nano 2 budget (22 GiB, 5% headroom, 1.3 GiB reserve = 19.60 GiB at 128k tokens, bf16, batch 1)
over the nemotron-nano-12b-v2-base preset (config only, no weights), default axes (hidden, FFN and
Mamba heads / head dim down to 60% of the source; hidden and FFN in steps of 64), for each --layers
setting below.

    ours      `build_space` + `enumerate_feasible`: FFN solved in closed form for every choice of the
              other axes (minitron/search/frontier.py), torch-free
    baseline  `Constraint.violation` (`estimate_memory` + parameter count) of every configuration of the space (what a grid search does); run
              in full when the space holds at most --brute-force-limit configurations, otherwise timed
              on that many configurations drawn at random and extrapolated to the whole space

Both must agree: every checked configuration is feasible exactly when the enumeration holds it.

    python bench/search_enumerate.py [--repeats 5] [--brute-force-limit 200000]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import random
import statistics
import time

NANO2 = {"budget": "22GiB", "headroom": "5%", "reserve": "1.3GiB", "context": 131072}
LAYER_SETTINGS = (None, "56", "52:56")  # None: --layers not given (the source's 62 blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--brute-force-limit", type=int, default=200_000)
    args = parser.parse_args()

    from minitron.memory import Budget, ServingSpec
    from minitron.model.load import resolve_model
    from minitron.search.frontier import Constraint, enumerate_feasible
    from minitron.search.space import build_space

    source = resolve_model("nemotron-nano-12b-v2-base").architecture
    budget = Budget.from_options(NANO2["budget"], None, NANO2["headroom"], NANO2["reserve"])
    constraint = Constraint(ServingSpec(context_tokens=NANO2["context"], budget=budget))
    print(
        f"nemotron-nano-12b-v2-base, budget {budget.usable_bytes / 2**30:.2f} GiB usable at "
        f"{NANO2['context']:,} tokens, {args.repeats} repeats (median)"
    )
    header = (
        f"{'--layers':<9} {'configs':>10} {'feasible':>9} {'frontier':>9} {'ours s':>8} "
        f"{'brute s':>9} {'brute':<13} {'ours / brute':>12}"
    )
    print(header)
    for layers in LAYER_SETTINGS:
        axes = {} if layers is None else {"layers": layers}
        times, enumeration = [], None
        for _ in range(args.repeats):
            start = time.perf_counter()
            space = build_space(source, axes)
            enumeration = enumerate_feasible(space, constraint)
            times.append(time.perf_counter() - start)
        ours = statistics.median(times)
        # FFN values that fit, per choice of the other axes (the whole feasible set, compactly)
        fitting = {(c.depth, c.hidden, c.mamba_heads, c.mamba_head_dim, c.attn_heads): set(c.ffn)
                   for c in enumeration.combinations}  # fmt: skip
        axes_values = [space.depth, *space.width.values()]
        full = space.size <= args.brute_force_limit
        if full:
            checked = itertools.product(*axes_values)
        else:  # distinct configurations by their index in the grid, decoded axis by axis
            picks = random.Random(0).sample(range(space.size), args.brute_force_limit)
            checked = [_decode(i, axes_values) for i in picks]
        start = time.perf_counter()
        results = []
        for config in checked:
            depth, h, f, mh, mhd, ah = config
            arch = dataclasses.replace(
                space.arch(depth), hidden=h, ffn=f, mamba_heads=mh, mamba_head_dim=mhd, attn_heads=ah
            )
            results.append((config, constraint.violation(arch) is None))
        brute = (time.perf_counter() - start) * space.size / len(results)
        for (depth, h, f, mh, mhd, ah), fit in results:
            assert fit == (f in fitting.get((depth, h, mh, mhd, ah), ())), (layers, depth, h, f, mh, mhd, ah)
        if full:
            assert sum(fit for _, fit in results) == enumeration.feasible
        how = "all" if full else f"{len(results) // 1000}k, extrap."
        print(
            f"{layers or '(62)':<9} {space.size:>10,} {enumeration.feasible:>9,} "
            f"{len(enumeration.combinations):>9,} {ours:>8.3f} {brute:>9.1f} {how:<13} {ours / brute:>11.4f}x"
        )


def _decode(index: int, axes_values: list) -> tuple:
    """The configuration at `index` of the grid (the last axis varies fastest)."""
    out = []
    for values in reversed(axes_values):
        index, i = divmod(index, len(values))
        out.append(values[i])
    return tuple(reversed(out))


if __name__ == "__main__":
    main()
