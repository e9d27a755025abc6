"""What the benchmarks share: one timing protocol and the student most of them time.

Timing: every variant once as a warm-up, then the variants in turn for several rounds (so background
load on a shared machine hits each alike), medians reported with their ratio to the baseline.
The student: the shipped tiny teacher compressed the way Nemotron-Nano-12B-v2 became the 9B.

A benchmark runs as `python bench/NAME.py`, so this directory is on its import path.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

NANO2_DROPPED = (7, 8, 23, 24, 48, 52)  # the blocks the 9B drops from the 12B's pattern


def nano2_target():
    """The 12B -> 9B compression applied to the tiny teacher: hidden 128 -> 112, FFN 512 -> 392 and
    the blocks the 9B drops."""
    from minitron.prune.target import TargetSpec

    return TargetSpec(hidden=112, ffn=392, drop_blocks=NANO2_DROPPED)


def tiny_teacher():
    """(source, float32 model in eval mode, tokenizer) of the shipped tiny teacher."""
    from minitron.model.load import load_model, load_tokenizer, resolve_model

    source = resolve_model("tiny")
    return source, load_model(source, dtype="float32").eval(), load_tokenizer(source, "bench")


def builtin_batches(tokenizer, seq_len: int, batch_size: int, samples: int, split: str) -> list:
    """`samples` sequences of the built-in corpus's `split`, packed and batched as the commands do."""
    from minitron.data import DataSpec, token_batches

    spec = DataSpec(source="builtin", seq_len=seq_len, batch_size=batch_size, samples=samples, split=split)
    return list(token_batches(spec, tokenizer))


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(runs: dict[str, Callable[[], object]], rounds: int, warmup: bool = True) -> dict[str, list]:
    """Seconds of each run in every round: {name: [s, ...]}, the runs taking turns within a round."""
    if warmup:
        for fn in runs.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            times[name].append(seconds(fn))
    return times


def print_medians(times: dict[str, list[float]], label: str, digits: int = 3) -> dict[str, float]:
    """A table of each run's median seconds and its ratio to the first run's (the baseline)."""
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = next(iter(medians.values()))
    width = max(len(label), *map(len, medians))
    print(f"{label:<{width}} {'median s':>9} {'vs baseline':>12}")
    for name, median in medians.items():
        print(f"{name:<{width}} {median:>9.3f} {median / base:>11.{digits}f}x")
    return medians


def print_ranges(times: dict[str, list[float]]) -> None:
    """The fastest and slowest round of each run: how much the machine's load moved them."""
    print(
        "range over rounds: " + ", ".join(f"{name} {min(t):.3f}-{max(t):.3f} s" for name, t in times.items())
    )


def parse_args(doc: str, **options) -> argparse.Namespace:
    """A benchmark's command line: one `--some-name` option per keyword, its value the default or a
    (default, help) pair, typed like the default; the module docstring is the help. `threads` (torch
    intra-op threads) is applied before this returns."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, value in options.items():
        default, help = value if isinstance(value, tuple) else (value, None)
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default, help=help)
    args = parser.parse_args()
    if "threads" in options:
        import torch

        torch.set_num_threads(args.threads)
    return args
