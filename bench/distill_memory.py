"""Peak memory of the chunked KD loss against the plain full-logit loss, forward + backward.

    nice python bench/distill_memory.py [--vocab 131072] [--tokens 4096] [--hidden 256] [--chunk 256]

Each variant runs in a fresh process: the inputs are allocated (student and teacher final hidden
states, both output heads), then the loss and its backward run once; the process reports the RSS
added by that (its peak RSS minus the RSS just before). Both variants compute the same value, checked.

    plain    kd_sums(h_s @ W_s.T, h_t @ W_t.T): full (tokens, vocab) logits of both models
    chunked  chunked_kd_sums: --chunk tokens at a time, recomputed in backward
"""

from __future__ import annotations

import json
import subprocess
import sys

from _common import parse_args


def child(variant: str, vocab: int, tokens: int, hidden: int, chunk: int) -> None:
    import resource
    import time

    import torch

    from minitron.distill.losses import KDLoss, chunked_kd_sums, kd_sums

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    h_s = torch.randn(tokens, hidden, generator=g, requires_grad=True)
    w_s = (torch.randn(vocab, hidden, generator=g) / hidden**0.5).requires_grad_()
    h_t, w_t = torch.randn(tokens, hidden, generator=g), torch.randn(vocab, hidden, generator=g) / hidden**0.5
    labels = torch.randint(0, vocab, (tokens,), generator=g)
    # The gradients are outputs of either variant: allocate them up front so they are not counted.
    h_s.grad, w_s.grad = torch.zeros_like(h_s), torch.zeros_like(w_s)
    page = resource.getpagesize()
    with open("/proc/self/statm") as f:
        before = int(f.read().split()[1]) * page
    t0 = time.perf_counter()
    if variant == "plain":
        out = kd_sums(h_s @ w_s.T, h_t @ w_t.T, labels, KDLoss())
    else:
        out = chunked_kd_sums(h_s, w_s, h_t, w_t, labels, KDLoss(), chunk_tokens=chunk)
    out[0].backward()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"added": peak - before, "seconds": seconds, "loss": out[0].item(),
                      "grad_norm": w_s.grad.norm().item()}))  # fmt: skip


def main() -> None:
    args = parse_args(__doc__, vocab=131072, tokens=4096, hidden=256, chunk=256, child=("", "(internal)"))
    if args.child:
        child(args.child, args.vocab, args.tokens, args.hidden, args.chunk)
        return
    results = {}
    for variant in ("chunked", "plain"):
        command = [sys.executable, __file__, "--child", variant, "--vocab", str(args.vocab), "--tokens",
                   str(args.tokens), "--hidden", str(args.hidden), "--chunk", str(args.chunk)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    logits_gib = args.tokens * args.vocab * 4 / 2**30
    print(f"vocab {args.vocab:,} x {args.tokens:,} tokens (one model's float32 logits: {logits_gib:.2f} GiB), "
          f"hidden {args.hidden}, chunk {args.chunk} tokens, forward + backward")  # fmt: skip
    print(f"{'loss':<10}{'RSS added GiB':>15}{'time s':>9}{'value':>14}")
    for variant in ("plain", "chunked"):
        r = results[variant]
        print(f"{variant:<10}{r['added'] / 2**30:>15.3f}{r['seconds']:>9.1f}{r['loss']:>14.2f}")
    p, c = results["plain"], results["chunked"]
    same = (
        abs(p["loss"] - c["loss"]) <= 1e-4 * abs(p["loss"])
        and abs(p["grad_norm"] - c["grad_norm"]) <= 1e-3 * p["grad_norm"]
    )
    print(f"chunked / plain: peak memory {c['added'] / p['added']:.3f}x, time {c['seconds'] / p['seconds']:.2f}x; "
          f"same value and gradient norm: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
