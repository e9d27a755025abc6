"""Data pipeline throughput against the training step it feeds, measured in the same run.

The pipeline (read the built-in corpus, tokenise, pack, shuffle, batch) must never be what a
training run waits for. This times one full pass over the train split of the built-in corpus and
a few optimizer steps of the `tiny` architecture at the same batch shape, and prints the ratio
(pipeline tokens/s over training tokens/s; > 1 means the data keeps up).

    python bench/data_throughput.py                   # batch 16 x 256, 2 timed training steps
"""

from __future__ import annotations

import json
import time

import torch
from _common import parse_args
from rich.console import Console
from rich.table import Table

from minitron.data import DataSpec, token_batches
from minitron.distill.objectives import NextTokenCE
from minitron.model.load import build_model, load_tokenizer, resolve_model


def tokenizer_and_arch():
    """The shipped tiny teacher's tokenizer and architecture (scripts/make_tiny.py builds them)."""
    source = resolve_model("tiny")
    return load_tokenizer(source), source.architecture


def pipeline_tokens_per_s(spec: DataSpec, tokenizer) -> tuple[float, int, float]:
    start = time.perf_counter()
    first = None
    tokens = 0
    for batch in token_batches(spec, tokenizer):
        first = first or time.perf_counter() - start
        tokens += batch.numel()
    return tokens / (time.perf_counter() - start), tokens, first


def train_tokens_per_s(arch, spec: DataSpec, steps: int) -> float:
    model = build_model(arch, seed=0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    objective = NextTokenCE()
    batch = torch.randint(
        3, arch.vocab, (spec.batch_size, spec.seq_len), generator=torch.Generator().manual_seed(0)
    )

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        objective(model, batch).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    step()  # warm-up: allocator, first-call overheads
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch.numel() / (time.perf_counter() - start)


def main() -> None:
    args = parse_args(
        __doc__,
        batch_size=16,
        seq_len=256,
        train_steps=2,
        threads=(1, "torch intra-op threads (1: see make_tiny.py)"),
    )

    tokenizer, arch = tokenizer_and_arch()
    spec = DataSpec(seq_len=args.seq_len, batch_size=args.batch_size)
    data_tps, data_tokens, first_s = pipeline_tokens_per_s(spec, tokenizer)
    train_tps = train_tokens_per_s(arch, spec, args.train_steps)
    ratio = data_tps / train_tps

    table = Table(title=f"data pipeline vs training step (batch {args.batch_size} x {args.seq_len})")
    table.add_column("what")
    table.add_column("tokens/s", justify="right")
    table.add_row(
        f"data: built-in corpus, one pass ({data_tokens:,} tokens; first batch {first_s:.2f} s)",
        f"{data_tps:,.0f}",
    )
    table.add_row(
        f"train step: tiny architecture ({arch.n_params:,} params), AdamW, fp32", f"{train_tps:,.0f}"
    )
    table.add_row("ratio data / train", f"{ratio:,.0f}x")
    Console().print(table)
    record = {
        "data_tokens_per_s": round(data_tps),
        "train_tokens_per_s": round(train_tps, 1),
        "ratio": round(ratio, 1),
        "threads": args.threads,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
