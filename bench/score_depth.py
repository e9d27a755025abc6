"""One-shot depth MSE over all blocks against the naive way: one full forward per removed block.

Target: at most 0.6x the naive cost. Ours runs one full forward per batch, caches the hidden
state entering every block and reruns only the suffix after each removed block; the naive
baseline runs embeddings + every other block + LM head for each removed block (compared with the
full logits computed once, with the same reduction). Interleaved over --repeats rounds, median reported; both results are
checked to agree.

    python bench/score_depth.py [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, parse_args, print_medians  # noqa: E402
from score_width import BENCH_ARCH, bench_batches  # noqa: E402

from minitron.importance.depth import _sum_of_squares, score_depth  # noqa: E402
from minitron.model.adapters import adapter_for  # noqa: E402
from minitron.model.load import build_model  # noqa: E402


def main() -> None:
    args = parse_args(
        __doc__,
        repeats=3,
        threads=1,
        batches=2,
        batch_size=4,
        seq_len=128,
        repeat_pattern=(2, "depth: the width bench's pattern x N"),
    )
    # Real hybrids have 50-60 blocks; 24 keeps the naive baseline affordable on 2 cores.
    arch = dataclasses.replace(BENCH_ARCH, pattern=BENCH_ARCH.pattern * args.repeat_pattern)
    model = build_model(arch, seed=0)
    adapter = adapter_for(model)
    blocks = adapter.blocks(model)
    batches = bench_batches(args.batches, args.batch_size, args.seq_len)
    result = {}

    @torch.no_grad()
    def naive():
        sums, norm = torch.zeros(len(blocks), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
        for ids in batches:
            full = model(input_ids=ids, use_cache=False).logits.float()
            norm += _sum_of_squares(full)
            for j in range(len(blocks)):
                ctx = adapter.start(model, ids, None)
                hidden = ctx.hidden
                for i, block in enumerate(blocks):
                    if i != j:
                        hidden = adapter.run_block(block, hidden, ctx)
                sums[j] += _sum_of_squares(adapter.logits(model, hidden) - full)
        result["naive"] = sums / norm

    def ours():
        result["ours"] = score_depth(model, batches, "mse", "one-shot")["depth.scores"].double()

    runs = {"naive: forward per block (baseline)": naive, "one-shot, suffix reuse": ours}
    times = interleaved(runs, args.repeats, warmup=False)
    torch.testing.assert_close(result["ours"], result["naive"], rtol=1e-4, atol=1e-7)
    print(
        f"model {arch.pattern} ({arch.n_blocks} blocks, hidden {arch.hidden}, vocab "
        f"{arch.vocab}), {args.batches} batches x {args.batch_size} x {args.seq_len} tokens, "
        f"{args.threads} thread(s), {args.repeats} rounds; scores agree (rtol 1e-4)"
    )
    print_medians(times, "method")


if __name__ == "__main__":
    main()
