"""Iterative depth scoring stopped after N removals (`--depth-iterations N`) against full iterative.

On the shipped 62-block tiny teacher (the Nano 12B's block pattern), normalised logit MSE, the same
calibration batches for every run (built-in corpus, train split). Full iterative removes one block
and rescores the rest 62 times (~n^3/6 block runs per batch); `--depth-iterations N` stops after N
removals and orders the rest one-shot on the model reduced by those N (~N n^2/2). One-shot is
printed too (N = 0). Block runs are counted by the same callback that drives `minitron score`'s
progress bar and checked against `depth_block_runs`.

How close the orders are: the first N removals (identical by construction, checked), the blocks
that candidates of 56, 54 and 52 layers drop (the first 6, 8, 10 of each order; how many of them
full iterative drops too), and the Spearman correlation of the whole order with full iterative's.

    nice python bench/search_depth_iterations.py [--iterations 6] [--samples 2] [--seq-len 128]
"""

from __future__ import annotations

import time

from _common import builtin_batches, parse_args, tiny_teacher


def spearman(a: list[int], b: list[int]) -> float:
    """Rank correlation of two orders of the same blocks (permutations: no ties)."""
    n = len(a)
    pos_a = {block: i for i, block in enumerate(a)}
    pos_b = {block: i for i, block in enumerate(b)}
    d2 = sum((pos_a[k] - pos_b[k]) ** 2 for k in pos_a)
    return 1 - 6 * d2 / (n * (n * n - 1))


def main() -> None:
    args = parse_args(
        __doc__,
        iterations=6,
        samples=2,
        seq_len=128,
        batch_size=2,
        layers=("56,54,52", "candidate depths whose dropped sets are compared"),
        threads=1,
    )

    from minitron.importance.depth import depth_block_runs, score_depth

    source, model, tokenizer = tiny_teacher()
    batches = builtin_batches(tokenizer, args.seq_len, args.batch_size, args.samples, "train")
    n = source.architecture.n_blocks
    runs = {
        "full iterative (baseline)": ("iterative", None),
        f"--depth-iterations {args.iterations}": ("iterative", args.iterations),
        "one-shot": ("one-shot", None),
    }
    results = {}
    for name, (mode, iterations) in runs.items():
        counted = [0]

        def advance(k: int, counted=counted) -> None:
            counted[0] += k

        start = time.perf_counter()
        order = score_depth(model, batches, "mse", mode, advance, iterations)["depth.order"].tolist()
        seconds = time.perf_counter() - start
        assert counted[0] == depth_block_runs(n, mode, "mse", iterations) * len(batches), name
        results[name] = (order, counted[0], seconds)

    base_order, base_runs, base_s = results["full iterative (baseline)"]
    stopped = results[f"--depth-iterations {args.iterations}"][0]
    assert stopped[: args.iterations] == base_order[: args.iterations]  # the same greedy steps
    tokens = sum(ids.numel() for ids in batches)
    print(
        f"tiny teacher, {n} blocks ({source.architecture.n_params:,} params), normalised logit MSE, "
        f"{len(batches)} batch(es), {tokens} tokens, {args.threads} thread(s)"
    )
    layers = [int(v) for v in args.layers.split(",")]
    same = " ".join(f"{n_layers:>6}" for n_layers in layers)
    print(f"{'':<26} {'':>10} {'':>8} {'':>8} {'':>8}  dropped blocks also dropped by full, at layers")
    print(
        f"{'depth scoring':<26} {'block runs':>10} {'vs full':>8} {'s':>8} {'vs full':>8}  {same}  {'Spearman':>8}"
    )
    for name, (order, block_runs, seconds) in results.items():
        overlaps = " ".join(
            f"{f'{len(set(order[: n - k]) & set(base_order[: n - k]))}/{n - k}':>6}" for k in layers
        )
        print(
            f"{name:<26} {block_runs:>10,} {block_runs / base_runs:>7.3f}x {seconds:>8.1f} "
            f"{seconds / base_s:>7.3f}x  {overlaps}  {spearman(order, base_order):>8.3f}"
        )
    for name, (order, _, _) in results.items():
        print(f"order, {name}: {' '.join(map(str, order))}")


if __name__ == "__main__":
    main()
