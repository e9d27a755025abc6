"""How the decode-throughput estimate ranks Table 10's three Nano 2 width candidates (METHOD.md section 5).

Each candidate is built from the nemotron-nano-12b-v2-base preset the way the search builds it: 56
blocks, the 9B's split of removed blocks (1 Mamba, 3 MLP, 2 attention), its hidden / FFN / Mamba
heads (x 80 head dim), 40 attention heads. `minitron.search.throughput` gives the roofline estimate
(bytes read per decode step: weights + KV up to the context + 2 x (SSM + conv state)) on an A10G:

    search default   batch 1 at 128k tokens, transformers' caches (the table `minitron search` prints)
    reasoning-like   batch 32 at 24k tokens (8k in + 16k out), vLLM's caches

    python bench/search_throughput.py
"""

from __future__ import annotations

TABLE10 = (  # candidate, hidden, FFN, Mamba heads, params the report gives
    ("1", 4480, 17920, 112, "8.92B"),
    ("2 (chosen)", 4480, 15680, 128, "8.89B"),
    ("3", 4800, 14400, 120, "8.97B"),
)
SETTINGS = (
    ("search default: batch 1 @ 128k, transformers", 1, 131072, "transformers"),
    ("reasoning-like: batch 32 @ 24k, vllm", 32, 24576, "vllm"),
)


def main() -> None:
    from minitron.memory import estimate_memory, get_gpu
    from minitron.model.load import resolve_model
    from minitron.search.space import build_space
    from minitron.search.throughput import decode_bytes_per_step, decode_tokens_per_s

    gpu = get_gpu("a10g")
    space = build_space(resolve_model("nemotron-nano-12b-v2-base").architecture, {"layers": "56"})
    depth = next(d for d in space.depth if d.counts == (1, 3, 2))
    print(
        f"{gpu.name}, {gpu.bandwidth_bytes_per_s / 1e9:.0f} GB/s; 56 blocks (27 M / 25 - / 4 *), bf16 weights"
    )
    for title, batch, context, engine in SETTINGS:
        print(f"\n{title}")
        print(
            f"{'candidate':<11} {'hidden':>6} {'FFN':>6} {'M heads':>7} {'params':>14} {'weights GiB':>11} "
            f"{'KV GiB':>7} {'SSM+conv GiB':>12} {'GiB/step':>9} {'est tok/s':>10} {'rank':>4}"
        )
        rows = []
        for name, hidden, ffn, heads, reported in TABLE10:
            arch = space.arch(
                depth, hidden=hidden, ffn=ffn, mamba_heads=heads, mamba_head_dim=80, attn_heads=40
            )
            assert f"{arch.n_params / 1e9:.2f}B" == reported, (name, arch.n_params)
            mem = estimate_memory(arch, context, batch=batch, engine=engine)
            rows.append((name, hidden, ffn, heads, arch.n_params, mem, decode_tokens_per_s(mem, gpu)))
        ranks = {r[0]: i + 1 for i, r in enumerate(sorted(rows, key=lambda r: -r[-1]))}
        for name, hidden, ffn, heads, params, mem, tps in rows:
            state = (mem.ssm_state_bytes + mem.conv_state_bytes) / 2**30
            print(
                f"{name:<11} {hidden:>6} {ffn:>6} {heads:>7} {params:>14,} {mem.weights_bytes / 2**30:>11.2f} "
                f"{mem.kv_cache_bytes / 2**30:>7.2f} {state:>12.3f} {decode_bytes_per_step(mem) / 2**30:>9.2f} "
                f"{tps:>10.1f} {ranks[name]:>4}"
            )


if __name__ == "__main__":
    main()
