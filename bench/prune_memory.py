"""Peak memory of `minitron prune` vs a naive prune, on a generated multi-GB random checkpoint.

    nice python bench/prune_memory.py [--size-gb 2] [--workdir DIR]

1. Writes a random bfloat16 NemotronH checkpoint of about --size-gb, shard by shard, without ever
   building the model (names and shapes come from a meta-device model; each tensor is generated,
   written and freed).
2. Prunes it twice, each in a fresh subprocess that reports its own peak RSS:
   ours  = minitron.prune.run (lazy get_slice reads, streaming shard writes);
   naive = from_pretrained + in-memory slicing (minitron.prune.slicing.prune_model) + save_pretrained.
3. Checks both outputs hold identical tensors, prints peak RSS / checkpoint size and ours vs naive,
   and deletes everything it wrote.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SHARD = "500MB"


def bench_arch(size_gb: float):
    """The Nano 2 12B block pattern at narrower widths, scaled so its bf16 weights are about `size_gb` GB."""
    from minitron.model.load import resolve_model

    base = resolve_model("nemotron-nano-12b-v2-base").architecture
    scale = (size_gb / 2.0) ** 0.5  # params grow with width squared
    hidden = int(1472 * scale) // 64 * 64
    return dataclasses.replace(
        base,
        hidden=hidden,
        ffn=hidden * 4,
        attn_heads=16,
        mamba_heads=max(8, int(40 * scale) // 8 * 8),
        mamba_head_dim=80,
        ssm_state=64,
        vocab=32768,
        extra={**base.extra, "dtype": "bfloat16", "chunk_size": 64},
    )


def write_random_checkpoint(arch, path: Path) -> int:
    import torch

    from minitron.model.load import build_model
    from minitron.prune.writer import TensorSpec, plan_shards, write_index, write_shard
    from minitron.units import parse_bytes

    path.mkdir(parents=True)
    meta = build_model(arch, device="meta").state_dict()
    # Named as save_pretrained names NemotronH weights (the hub's `backbone.` prefix).
    specs = [TensorSpec(_hub_name(k), torch.bfloat16, tuple(v.shape)) for k, v in meta.items()]
    shards = plan_shards(specs, parse_bytes(SHARD, "--max-shard-size"))
    g = torch.Generator().manual_seed(0)

    def produce(s: TensorSpec) -> torch.Tensor:
        return (torch.randn(s.shape, generator=g) * 0.02).to(torch.bfloat16)

    for file, group in shards:
        write_shard(path / file, group, produce)
    write_index(path, shards)
    config = arch.to_config_dict()
    (path / "config.json").write_text(json.dumps(config, indent=2))
    return sum(s.nbytes for s in specs)


def _hub_name(key: str) -> str:
    return "backbone." + key[len("model.") :] if key.startswith("model.") else key


class RssSampler:
    """Highest resident set size seen while running (sampled from /proc every 2 ms)."""

    def __init__(self):
        self.peak = self.start = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def write_scores(arch, path: Path) -> None:
    import torch

    from minitron.importance.scores import Scores, save_scores

    g = torch.Generator().manual_seed(1)
    tensors = {"hidden": torch.rand(arch.hidden, generator=g)}
    for i, kind in enumerate(arch.pattern):
        if kind == "-":
            tensors[f"ffn.{i}"] = torch.rand(arch.ffn, generator=g)
        elif kind == "*":
            tensors[f"attn_heads.{i}"] = torch.rand(arch.attn_heads, generator=g)
        else:
            tensors[f"mamba.{i}"] = torch.rand(arch.mamba_heads, arch.mamba_head_dim, generator=g)
    save_scores(Scores(tensors, {"architecture": arch.summary()}), path)


def target_spec(arch):
    from minitron.prune.target import TargetSpec

    # Proportional to 12B -> 9B: hidden x0.875, FFN x0.77, drop the 6 blocks the 9B drops.
    return TargetSpec(
        hidden=arch.hidden * 7 // 8 // 8 * 8,
        ffn=arch.ffn * 3 // 4,
        mamba_heads=max(8, arch.mamba_heads * 3 // 4 // 8 * 8),
        mamba_head_dim=64,
        drop_blocks=(7, 8, 23, 24, 48, 52),
    )


def child(mode: str, src: Path, out: Path, scores: Path) -> None:
    """Run one prune; print peak RSS (process), RSS before/while pruning and seconds as JSON."""
    # Imported before measuring, so neither mode is charged for library imports.
    import rich.progress  # noqa: F401
    import safetensors.torch  # noqa: F401
    import transformers.models.nemotron_h.modeling_nemotron_h  # noqa: F401
    from transformers import AutoModelForCausalLM  # noqa: F401

    from minitron.model.load import resolve_model
    from minitron.prune import PruneConfig, run

    arch = resolve_model(str(src)).architecture
    with RssSampler() as rss:
        start = time.perf_counter()
        if mode == "ours":
            from rich.console import Console

            config = PruneConfig(
                model=str(src), out=out, scores=scores, target=target_spec(arch), max_shard_size=SHARD
            )
            run(config, console=Console(file=sys.stderr))
        else:
            import torch
            from transformers import AutoModelForCausalLM

            from minitron.importance.scores import load_scores
            from minitron.prune.select import select_units
            from minitron.prune.slicing import prune_model
            from minitron.prune.target import resolve_target

            s = load_scores(scores)
            sel = select_units(arch, resolve_target(arch, target_spec(arch), s), s)
            model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
            pruned = prune_model(model, sel)
            pruned.save_pretrained(out, max_shard_size=SHARD)
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps({"peak_rss": peak, "start_rss": rss.start, "work_peak_rss": rss.peak, "seconds": seconds})
    )


def same_tensors(a: Path, b: Path) -> bool:
    """Every tensor of checkpoint `a` equals the one of the same name in `b` (read one at a time)."""
    import torch
    from safetensors import safe_open

    def where(path: Path) -> dict[str, Path]:
        out = {}
        for file in sorted(path.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as f:
                out.update({k: file for k in f.keys()})
        return out

    wa, wb = where(a), where(b)
    if set(wa) != set(wb):
        return False
    for key in wa:
        with safe_open(str(wa[key]), framework="pt") as fa, safe_open(str(wb[key]), framework="pt") as fb:
            if not torch.equal(fa.get_tensor(key), fb.get_tensor(key)):
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", choices=("ours", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scores", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.src, args.out, args.scores)
        return

    work = Path(tempfile.mkdtemp(prefix="prune-bench-", dir=args.workdir))
    try:
        arch = bench_arch(args.size_gb)
        src = work / "source"
        t0 = time.perf_counter()
        ckpt_bytes = write_random_checkpoint(arch, src)
        print(
            f"source: {arch.n_params:,} params, {ckpt_bytes / 1e9:.2f} GB bf16 in "
            f"{len(list(src.glob('*.safetensors')))} shards (written in {time.perf_counter() - t0:.0f} s)"
        )
        write_scores(arch, work / "scores.safetensors")
        results = {}
        for mode in ("ours", "naive"):
            out = work / mode
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    mode,
                    "--src",
                    str(src),
                    "--out",
                    str(out),
                    "--scores",
                    str(work / "scores.safetensors"),
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                sys.exit(f"{mode} failed:\n{proc.stderr[-3000:]}")
            results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            out_bytes = sum(p.stat().st_size for p in out.glob("*.safetensors"))
            results[mode]["out_bytes"] = out_bytes
        identical = same_tensors(work / "ours", work / "naive")

        gb = 1e9
        print(f"pruned: {results['ours']['out_bytes'] / gb:.2f} GB; outputs identical: {identical}")
        print(
            f"{'':7}{'process peak RSS':>18}{'/ ckpt':>8}{'RSS added by pruning':>22}{'/ ckpt':>8}{'time':>7}"
        )
        for mode in ("ours", "naive"):
            r = results[mode]
            added = r["work_peak_rss"] - r["start_rss"]
            print(
                f"{mode:7}{r['peak_rss'] / gb:>16.2f}GB{r['peak_rss'] / ckpt_bytes:>8.2f}"
                f"{added / gb:>20.2f}GB{added / ckpt_bytes:>8.2f}{r['seconds']:>6.0f}s"
            )
        ours, naive = results["ours"], results["naive"]
        added = {m: results[m]["work_peak_rss"] - results[m]["start_rss"] for m in results}
        print(
            f"ours / naive: process peak RSS {ours['peak_rss'] / naive['peak_rss']:.2f}x, "
            f"RSS added by pruning {added['ours'] / added['naive']:.3f}x, "
            f"time {ours['seconds'] / naive['seconds']:.2f}x"
        )
        if not identical:
            sys.exit("outputs differ")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
