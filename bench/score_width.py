"""Width scoring pass (hooks on every prunable axis) against a plain forward over the same batches.

Target: the width pass costs at most 1.15x `model(input_ids)`. Both run in the same process,
interleaved over --repeats rounds, median reported. The width pass runs the blocks only (no score
needs logits), so the blocks-only loop without hooks is printed too: its ratio is the hooks' cost.

    python bench/score_width.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import torch
from _common import interleaved, parse_args, print_medians

from minitron.importance.width import score_width
from minitron.model.adapters import adapter_for
from minitron.model.arch import Architecture
from minitron.model.load import build_model

# A small hybrid model with every block type; chunk_size 32 is the fast choice on CPU (METHOD.md 8).
BENCH_ARCH = Architecture(
    pattern="M-*-M-M-*-M-",
    hidden=256,
    ffn=1024,
    attn_heads=8,
    kv_heads=2,
    head_dim=32,
    mamba_heads=16,
    mamba_head_dim=32,
    mamba_groups=2,
    ssm_state=32,
    conv_kernel=4,
    vocab=4096,
    extra={
        "chunk_size": 32,
        "layer_norm_epsilon": 1e-5,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
    },
)


def bench_batches(n: int, batch: int, seq: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(3, BENCH_ARCH.vocab, (batch, seq), generator=g) for _ in range(n)]


def main() -> None:
    args = parse_args(__doc__, repeats=5, threads=1, batches=4, batch_size=4, seq_len=256)
    model = build_model(BENCH_ARCH, seed=0)
    adapter = adapter_for(model)
    batches = bench_batches(args.batches, args.batch_size, args.seq_len)

    @torch.no_grad()
    def plain_forward():
        for ids in batches:
            model(input_ids=ids, use_cache=False)

    @torch.no_grad()
    def blocks_only():
        for ids in batches:
            ctx = adapter.start(model, ids, None)
            hidden = ctx.hidden
            for block in adapter.blocks(model):
                hidden = adapter.run_block(block, hidden, ctx)

    runs = {"plain forward (baseline)": plain_forward, "blocks only, no hooks": blocks_only,
            "width pass (mean-l2)": lambda: score_width(model, batches)}  # fmt: skip
    times = interleaved(runs, args.repeats)
    print(
        f"model {BENCH_ARCH.pattern} hidden {BENCH_ARCH.hidden} ({BENCH_ARCH.n_params / 1e6:.1f}M params), "
        f"{args.batches} batches x {args.batch_size} x {args.seq_len} tokens, {args.threads} thread(s), "
        f"{args.repeats} rounds"
    )
    medians = print_medians(times, "pass")
    print(
        f"hook cost vs blocks only: {medians['width pass (mean-l2)'] / medians['blocks only, no hooks']:.3f}x"
    )


if __name__ == "__main__":
    main()
