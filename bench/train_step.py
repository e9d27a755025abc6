"""Training-step throughput of the `tiny` teacher's architecture (62 blocks), before and after.

Measures one AdamW step (forward, backward, update) of the 12B-pattern tiny model on a batch of
8 x 256 tokens, for the settings the teacher used to train with and for each change kept:

    baseline      transformers' PyTorch Mamba-2 scan, chunk_size 32, float32 (the shipped setting before)
    chunk 16      the same with chunk_size 16
    fast scan     minitron's scan (minitron/model/mamba_fallback.py), chunk_size 16
    + bf16        the same under bfloat16 autocast (float32 master weights)

All run in one process, interleaved over --repeats rounds; the median step time of each is
reported with its ratio to the baseline. One torch thread by default (see BENCHMARKS.md).

    python bench/train_step.py [--repeats 3] [--steps 2] [--threads 1]
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
from _common import parse_args

from minitron.model import mamba_fallback
from minitron.model.load import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from make_tiny import tiny_architecture  # noqa: E402

SETTINGS = {  # name: (chunk_size, minitron scan, bf16 autocast)
    "baseline": (32, False, False),
    "chunk 16": (16, False, False),
    "fast scan": (16, True, False),
    "+ bf16": (16, True, True),
}


def make_step(chunk: int, fast: bool, bf16: bool, batch: torch.Tensor):
    arch = tiny_architecture()
    arch = dataclasses.replace(arch, extra={**arch.extra, "chunk_size": chunk, "dtype": "float32"})
    model = build_model(arch, seed=0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> float:
        (mamba_fallback.enable if fast else mamba_fallback.disable)()
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=batch).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    step()  # warm-up
    return step


def main() -> None:
    args = parse_args(__doc__, repeats=3, steps=(2, "steps per setting per round"), threads=1)
    batch = torch.randint(3, 4096, (8, 256), generator=torch.Generator().manual_seed(0))
    steps = {name: make_step(*setting, batch) for name, setting in SETTINGS.items()}
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(args.repeats):
        for name, step in steps.items():
            times[name].extend(step() for _ in range(args.steps))
    base = statistics.median(times["baseline"])
    print(f"tiny teacher architecture, batch 8 x 256, {args.threads} thread(s), torch {torch.__version__}")
    print(f"{'setting':<12} {'s/step':>8} {'tokens/s':>9} {'speed-up':>9}")
    for name, t in times.items():
        m = statistics.median(t)
        print(f"{name:<12} {m:8.2f} {batch.numel() / m:9.0f} {base / m:8.2f}x")


if __name__ == "__main__":
    main()
