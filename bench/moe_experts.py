"""Which routed experts to keep: REAP saliency vs routing frequency vs random, on the tiny-moe teacher.

    nice python bench/moe_experts.py [--distill-steps 30] [--distill-lr 1e-4] [--calib-samples 16] [--heldout 32]

Every MoE block of tiny-moe (16 routed experts, top 4) keeps 8, chosen per block by
1. REAP saliency (`minitron score`'s default: mean over routed tokens of gate weight x ||output||),
2. routing frequency (`--expert-score frequency`),
3. random choices (3 seeds),
all scored on the same calibration batches (train split). Every student is evaluated on the same
held-out batches, then distilled from the teacher by `minitron distill` with identical settings and
seed, and evaluated again. Results go to --out (JSON); the table prints held-out loss (nats/token).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "scripts"))

SEQ_LEN, BATCH_SIZE = 256, 4


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", default=str(ROOT / "minitron" / "assets" / "tiny-moe"))
    parser.add_argument("--keep", type=int, default=8, help="routed experts kept per MoE block")
    parser.add_argument("--calib-samples", type=int, default=16)
    parser.add_argument("--heldout", type=int, default=32, help="held-out sequences of 256 tokens")
    parser.add_argument("--distill-steps", type=int, default=30)
    parser.add_argument("--distill-lr", type=float, default=1e-4, help="minitron distill's default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default=str(HERE / ".cache" / "moe_experts"))
    parser.add_argument("--out", default=str(HERE / ".cache" / "moe_experts.json"))
    args = parser.parse_args()

    import torch
    from make_tiny import heldout_loss

    from minitron.data import DataSpec, token_batches
    from minitron.importance.scores import Scores
    from minitron.importance.width import score_width
    from minitron.model.load import load_model, load_tokenizer, resolve_model
    from minitron.prune.slicing import prune_to
    from minitron.prune.target import TargetSpec

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    source = resolve_model(args.teacher)
    arch = source.architecture
    tokenizer = load_tokenizer(source)
    teacher = load_model(source)
    data = DataSpec(seq_len=SEQ_LEN, batch_size=BATCH_SIZE)
    calib = list(token_batches(dataclasses.replace(data, samples=args.calib_samples), tokenizer))
    heldout = list(token_batches(dataclasses.replace(data, split="heldout", samples=args.heldout), tokenizer))

    start = time.perf_counter()
    reap = score_width(teacher, calib, expert_score="reap")
    frequency = score_width(teacher, calib, expert_score="frequency")
    score_s = time.perf_counter() - start
    moe_blocks = [i for i, c in enumerate(arch.pattern) if c == "E"]

    def with_experts(base: dict, experts: dict) -> Scores:
        return Scores(tensors={**base, **experts}, header={"architecture": arch.summary()})

    methods = {
        "reap": with_experts(reap, {}),
        "frequency": with_experts(reap, {k: v for k, v in frequency.items() if k.startswith("experts.")}),
    }
    for seed in args.seeds:
        g = torch.Generator().manual_seed(seed)
        methods[f"random-{seed}"] = with_experts(
            reap, {f"experts.{i}": torch.rand(arch.experts, generator=g) for i in moe_blocks}
        )

    results = {"teacher": {"heldout_loss": heldout_loss(teacher, heldout)}}
    for name, scores in methods.items():
        student = prune_to(teacher, TargetSpec(experts=args.keep), scores)
        path = work / name
        student.save_pretrained(path)
        tokenizer.save_pretrained(path)
        row = {"pruned_loss": heldout_loss(student, heldout)}
        run = work / f"{name}-kd"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
        command = [
            sys.executable, "-m", "minitron", "distill", str(args.teacher), str(path), "--data", "builtin",
            "--steps", str(args.distill_steps), "--seq-len", str(SEQ_LEN), "--batch-size", str(BATCH_SIZE),
            "--lr", str(args.distill_lr), "--warmup-steps", str(max(1, args.distill_steps // 10)),
            "--eval-every", "0", "--eval-batches", "1", "--save-every", "0", "--seed", "0",
            "--device", "cpu", "--out", str(run),
        ]  # fmt: skip
        t = time.perf_counter()
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        row["distill_s"] = time.perf_counter() - t
        row["distilled_loss"] = heldout_loss(load_model(resolve_model(str(run / "final"))), heldout)
        results[name] = row
        print(name, json.dumps(row), flush=True)

    randoms = [results[f"random-{s}"] for s in args.seeds]
    summary = {
        "keep": f"{args.keep} of {arch.experts} routed experts per MoE block (top {arch.experts_per_token})",
        "calibration": f"{args.calib_samples} x {SEQ_LEN} tokens (train split)",
        "heldout": f"{args.heldout} x {SEQ_LEN} tokens",
        "distill": {"steps": args.distill_steps, "lr": args.distill_lr, "batch": f"{BATCH_SIZE} x {SEQ_LEN}"},
        "score_s": score_s,
        "results": results,
        "random_mean": {
            k: sum(r[k] for r in randoms) / len(randoms) for k in ("pruned_loss", "distilled_loss")
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{'method':<12} {'pruned':>8} {'after KD':>9}")
    print(f"{'teacher':<12} {results['teacher']['heldout_loss']:>8.4f}")
    for name in methods:
        print(f"{name:<12} {results[name]['pruned_loss']:>8.4f} {results[name]['distilled_loss']:>9.4f}")


if __name__ == "__main__":
    main()
