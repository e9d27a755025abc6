"""Regenerate the built-in `tiny` teacher at minitron/assets/tiny/ (deterministic for fixed arguments).

The tiny model keeps the exact 62-block pattern of Nemotron-Nano-12B-v2-Base (28 Mamba, 28 MLP,
6 attention, same order) at toy widths, with a 4096-token byte-level BPE tokenizer trained on the
train split of the built-in corpus, and is trained from scratch on that split with next-token
cross-entropy by minitron's own training loop. The checkpoint is stored in bfloat16 to stay small.

    nice python scripts/make_tiny.py --steps 800 --run runs/make-tiny

The run directory keeps resumable checkpoints: rerun with --resume after an interruption. The
schedule is WSD, so a run resumed inside its stable phase with a different --steps ends exactly as
a fresh run of that length would.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from minitron.data import DataSpec, documents, token_batches, train_bpe_tokenizer
from minitron.distill.objectives import heldout_loss
from minitron.distill.trainer import TrainConfig, train
from minitron.model.arch import Architecture
from minitron.model.load import ASSETS_DIR, PRESET_DIR, build_model

PRESET = "nemotron-nano-12b-v2-base"
VOCAB = 4096
# The Mamba-2 chunk size changes speed, not results (up to float rounding): 16 is fastest for this
# model on a CPU with minitron's scan (bench/train_step.py).
CHUNK_SIZE = 16
HELDOUT_SEQUENCES = 64  # 64 x 256 tokens of held-out text for the figures in the README


def tiny_architecture() -> Architecture:
    """The 12B architecture with every width scaled down; the block pattern is untouched."""
    big = Architecture.from_hf_config(json.loads((PRESET_DIR / f"{PRESET}.json").read_text()))
    extra = {k: v for k, v in big.extra.items() if not k.startswith("_")}
    extra.update(chunk_size=CHUNK_SIZE, pad_token_id=0, bos_token_id=1, eos_token_id=2, dtype="bfloat16")
    # Non-prunable axes first: 10 query heads are only legal once there are 2 KV heads.
    small = dataclasses.replace(
        big, kv_heads=2, head_dim=16, mamba_groups=8, ssm_state=16, vocab=VOCAB, extra=extra
    )
    small = small.with_sizes(hidden=128, ffn=512, attn_heads=10, mamba_heads=32, mamba_head_dim=8)
    assert small.pattern == big.pattern and small.n_blocks == 62
    return small


def parse_args(doc: str, asset: str, steps: int, lr: float) -> argparse.Namespace:
    """The options of a script that makes the toy teacher `asset` (torch's threads set already)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--run", default=f"runs/make-{asset}", help="run directory (checkpoints, metrics)")
    parser.add_argument("--out", default=str(ASSETS_DIR / asset))
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--batch-size", type=int, default=8)
    # One thread by default: on a shared 2-core machine, OpenMP threads that get descheduled make
    # every small op wait (measured 20 tok/s with 2 threads under load vs 240 tok/s with 1).
    parser.add_argument("--threads", type=int, default=1)
    # bf16 autocast (float32 master weights) is faster on CPUs with native bf16 (AVX512-BF16, AMX).
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args


def pretrain_config(
    model: str, out: str, steps: int, lr: float, batch_size: int, precision: str, resume: bool, **settings
) -> TrainConfig:
    """How the toy teachers are trained: 256-token sequences, a WSD schedule (the last quarter of the
    steps decays to 5% of `lr`, so a run resumed in the stable phase may change its length), held-out
    loss every 100 steps, a checkpoint every 25. `settings` are other TrainConfig fields."""
    recipe = {"schedule": "wsd", "decay_fraction": 0.25, "min_lr_ratio": 0.05, "eval_every": 100,
              "eval_batches": 8, "save_every": 25}  # fmt: skip
    return TrainConfig(
        model=model,
        data=DataSpec(seq_len=256, batch_size=batch_size),
        out=out,
        steps=steps,
        lr=lr,
        precision=precision,
        resume=resume,
        **(recipe | settings),
    )


def unigram_entropy(batches: list[torch.Tensor]) -> float:
    """Entropy (nats/token) of the empirical token distribution of the predicted positions.

    This is the loss of the best possible context-free model of exactly this text, fitted to it.
    """
    counts = Counter()
    for batch in batches:
        counts.update(batch[:, 1:].reshape(-1).tolist())
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


@torch.no_grad()
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} CPU cores (1 torch thread), torch {torch.__version__}"


def main() -> None:
    args = parse_args(__doc__, "tiny", steps=800, lr=2e-3)
    tokenizer = train_bpe_tokenizer(documents(DataSpec(split="train")), VOCAB)
    arch = tiny_architecture()
    model = build_model(arch, seed=0)
    config = pretrain_config(
        "tiny", args.run, args.steps, args.lr, args.batch_size, args.precision, args.resume, warmup_steps=50
    )
    result = train(config, model=model, tokenizer=tokenizer, provenance={"script": "scripts/make_tiny.py"})

    heldout = list(
        token_batches(dataclasses.replace(config.data, split="heldout", samples=HELDOUT_SEQUENCES), tokenizer)
    )
    model.to(torch.bfloat16).float()  # the figures are those of the shipped (bfloat16) weights
    start = time.perf_counter()
    loss = heldout_loss(model, heldout)
    eval_s = time.perf_counter() - start
    entropy = unigram_entropy(heldout)
    stats = {
        "steps": result.step,
        "tokens": result.tokens,
        "train_seconds": round(result.elapsed_s),
        "machine": machine(),
        "heldout_tokens": sum(b[:, 1:].numel() for b in heldout),
        "heldout_loss_nats": round(loss, 4),
        "heldout_unigram_entropy_nats": round(entropy, 4),
        "heldout_eval_seconds": round(eval_s),
        "params": arch.n_params,
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("resume", "progress")},
    }
    write_asset(Path(args.out), model, tokenizer, stats, Path(args.run) / "metrics.jsonl")
    print(json.dumps({k: v for k, v in stats.items() if k != "config"}, indent=2))


def write_asset(
    out: Path, model, tokenizer, stats: dict, metrics: Path, readme_text: str | None = None
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the asset is package data
    model.to(torch.bfloat16).save_pretrained(tmp)
    # transformers writes the default time_step_limit (0, inf) as {"__float__": "Infinity"}, which
    # plain-JSON readers (Architecture.from_hf_config -> to_hf_config) cannot round-trip; the
    # default is what the model uses anyway, so leave it out.
    config = json.loads((tmp / "config.json").read_text())
    assert config.pop("time_step_limit", None) in (None, [0.0, {"__float__": "Infinity"}])
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer.save_pretrained(tmp)
    (tmp / "training.json").write_text(json.dumps(stats, indent=2) + "\n")
    shutil.copyfile(metrics, tmp / "metrics.jsonl")  # the learning curve, for plots
    (tmp / "README.md").write_text(readme_text or readme(stats))
    old = out.with_name(out.name + ".old")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def readme(s: dict) -> str:
    c = s["config"]
    minutes = s["train_seconds"] / 60
    return f"""# tiny: a toy Nemotron-H teacher trained on Python's standard library

`minitron` ships this checkpoint so every command runs on a laptop with no GPU and no downloads.
It is a `NemotronHForCausalLM` with the exact 62-block pattern of Nemotron-Nano-12B-v2-Base
(28 Mamba-2, 28 MLP, 6 attention blocks, same order) and toy widths: hidden 128, FFN 512,
attention 10 query / 2 KV heads of dim 16, Mamba 32 heads x 8 (8 groups, state 16, conv 4,
chunk_size 32), untied embeddings, {s["params"]:,} parameters, stored in bfloat16.
The tokenizer is a 4096-token byte-level BPE trained on the train split of the built-in corpus
(Python 3.11.7 standard-library sources, PSF licence: minitron/assets/corpus/LICENSE-PSF.txt).

Regenerate with `python scripts/make_tiny.py --steps {s["steps"]}`. `training.json` holds these
figures and the full training config; `metrics.jsonl` the learning curve (train loss every 10
steps, held-out loss every 100).

| | |
|---|---|
| training | {s["steps"]} steps x {c["data"]["batch_size"]} x {c["data"]["seq_len"]} tokens = {s["tokens"]:,} tokens, next-token cross-entropy |
| optimizer | AdamW lr {c["lr"]}, {c["warmup_steps"]} warm-up steps, WSD schedule (last {c["decay_fraction"]:.0%} decays to {c["min_lr_ratio"]} x lr), clip {c["grad_clip"]}, {"bfloat16 autocast (float32 master weights)" if c["precision"] == "bf16" else "float32"} |
| time | {minutes:.0f} min ({s["tokens"] / s["train_seconds"]:.0f} tokens/s) on {s["machine"]}, shared with other jobs |
| held-out text | {s["heldout_tokens"]:,} predicted tokens: the held-out split of the built-in corpus (documents chosen by SHA-256 of their text) |
| held-out loss | **{s["heldout_loss_nats"]:.3f} nats/token** |
| unigram entropy of the same text | {s["heldout_unigram_entropy_nats"]:.3f} nats/token (the best context-free model, fitted to the held-out text itself) |

It is a toy: it has learned the surface form of Python source (indentation, `def`/`class`,
docstrings, common names), not to program.
"""


if __name__ == "__main__":
    main()
