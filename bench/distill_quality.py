"""KD vs CE on the shipped tiny teacher pruned like the 12B -> 9B, same steps and data (the Minitron finding).

    nice python bench/distill_quality.py [--steps 100] [--seq-len 128] [--batch-size 8] [--lr 1e-3]

Scores width importance on 16 calibration sequences, prunes the tiny teacher in memory to hidden 112,
FFN 392 and the 6 blocks the 9B drops, then trains two copies of that student with identical data,
schedule and seed: one on the teacher's logits (forward KL, tau 1), one on next-token CE. Prints the
held-out LM loss of teacher, pruned student, and both trained students, and the gap to the teacher.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from _common import nano2_target, parse_args


def main() -> None:
    args = parse_args(__doc__, steps=100, seq_len=128, batch_size=8, lr=1e-3, eval_batches=8, threads=1)

    from minitron.data import DataSpec
    from minitron.distill import TrainConfig, train
    from minitron.distill.kd import Distillation
    from minitron.distill.losses import KDLoss
    from minitron.importance.run import ScoreConfig
    from minitron.importance.run import run as score
    from minitron.model.load import load_model, load_tokenizer, resolve_model
    from minitron.prune.slicing import prune_to

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scores = score(ScoreConfig(model="tiny", samples=16, seq_len=128, batch_size=8, depth="none",
                                   device="cpu", out=tmp / "scores.safetensors", report=False))  # fmt: skip
        source = resolve_model("tiny")
        teacher, tokenizer = load_model(source, dtype="float32"), load_tokenizer(source)
        spec = nano2_target()
        n_teacher = sum(p.numel() for p in teacher.parameters())
        n_student = sum(p.numel() for p in prune_to(teacher, spec, scores).parameters())

        def config(name):
            return TrainConfig(data=DataSpec(seq_len=args.seq_len, batch_size=args.batch_size), out=str(tmp / name),
                               steps=args.steps, lr=args.lr, warmup_steps=max(1, args.steps // 20),
                               eval_every=args.steps, eval_batches=args.eval_batches, save_every=0)  # fmt: skip

        t0 = time.perf_counter()
        kd = train(config("kd"), objective=Distillation(teacher, KDLoss(), teacher.config.vocab_size),
                   model=prune_to(teacher, spec, scores), tokenizer=tokenizer)  # fmt: skip
        kd_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ce = train(config("ce"), model=prune_to(teacher, spec, scores), tokenizer=tokenizer)
        ce_s = time.perf_counter() - t0
        first = json.loads((tmp / "kd" / "metrics.jsonl").read_text().splitlines()[0])

    teacher_loss = first["eval_teacher_lm_loss"]
    rows = [("teacher", teacher_loss, None), ("pruned, before training", first["eval_lm_loss"], None),
            (f"CE, {args.steps} steps", ce.eval_loss, ce_s),
            (f"KD, {args.steps} steps", kd.eval_metrics["eval_lm_loss"], kd_s)]  # fmt: skip
    print(f"student {n_student:,} params = {n_student / n_teacher:.1%} of the teacher's {n_teacher:,}; "
          f"{args.steps} steps x {args.batch_size} x {args.seq_len} tokens, lr {args.lr}")  # fmt: skip
    print(f"{'model':<26}{'held-out LM loss':>18}{'gap to teacher':>16}{'time s':>9}")
    for name, loss, seconds in rows:
        print(
            f"{name:<26}{loss:>18.4f}{loss - teacher_loss:>16.4f}{'' if seconds is None else f'{seconds:.0f}':>9}"
        )
    gap_before, kd_gap, ce_gap = (first["eval_lm_loss"] - teacher_loss, kd.eval_metrics["eval_lm_loss"] - teacher_loss,
                                  ce.eval_loss - teacher_loss)  # fmt: skip
    print(f"gap closed by KD: {1 - kd_gap / gap_before:.0%}; by CE: {1 - ce_gap / gap_before:.0%}; "
          f"KD held-out KL to the teacher {first['eval_kd']:.4f} -> {kd.eval_metrics['eval_kd']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
