"""Time of one KD step against its floor: one teacher forward plus one CE training step of the student.

    nice python bench/distill_step.py [--seq-len 256] [--batch-size 4] [--rounds 7]

Teacher: the shipped tiny teacher. Student: the teacher pruned in memory like the 12B -> 9B (hidden
112, FFN 392, the 6 blocks the 9B drops; the width ranking does not change the cost, so the scores
are random). Both paths run forward + backward of the student on the same batch (no optimizer step,
which is the same in both), one intra-op thread, interleaved over several rounds; medians reported.

    baseline  teacher(ids) under no_grad, then student(ids).logits -> next-token CE -> backward
    KD        Distillation.sums: teacher and student forwards keeping one position of logits, the
              final hidden states projected 256 tokens at a time with recomputation in backward
"""

from __future__ import annotations

from _common import interleaved, nano2_target, parse_args, print_medians, print_ranges, tiny_teacher


def main() -> None:
    args = parse_args(__doc__, seq_len=256, batch_size=4, rounds=7, chunk=256, threads=1)

    import torch

    from minitron.distill.kd import Distillation
    from minitron.distill.losses import KDLoss
    from minitron.distill.objectives import next_token_ce
    from minitron.importance.scores import Scores
    from minitron.prune.slicing import prune_to

    source, teacher, _ = tiny_teacher()
    teacher.requires_grad_(False)
    arch = source.architecture
    g = torch.Generator().manual_seed(0)
    tensors = {"hidden": torch.rand(arch.hidden, generator=g)}
    for i, kind in enumerate(arch.pattern):
        if kind == "-":
            tensors[f"ffn.{i}"] = torch.rand(arch.ffn, generator=g)
    scores = Scores(tensors=tensors, header={})
    student = prune_to(teacher, nano2_target(), scores).train()
    student.requires_grad_(True)
    objective = Distillation(teacher, KDLoss(), arch.vocab, chunk_tokens=args.chunk)
    objective.setup(torch.device("cpu"))
    ids = torch.randint(3, arch.vocab, (args.batch_size, args.seq_len), generator=g)

    # Each step starts from no gradients, as a training step after the optimizer's zero_grad does.
    def baseline():
        student.zero_grad(set_to_none=True)
        with torch.no_grad():
            teacher(input_ids=ids)
        next_token_ce(student(input_ids=ids).logits, ids).backward()

    def kd():
        student.zero_grad(set_to_none=True)
        sums = objective.sums(student, ids)
        (sums["loss"] / sums["count"]).backward()

    runs = {"teacher forward + student CE step (baseline)": baseline, "KD step (chunked forward KL)": kd}
    times = interleaved(runs, args.rounds)
    n_t = sum(p.numel() for p in teacher.parameters())
    n_s = sum(p.numel() for p in student.parameters())
    print(f"teacher {n_t:,} params, student {n_s:,} ({n_s / n_t:.0%}), vocab {arch.vocab}, "
          f"{args.batch_size} x {args.seq_len} tokens, {args.threads} thread(s), {args.rounds} rounds")  # fmt: skip
    print_medians(times, "step")
    print_ranges(times)


if __name__ == "__main__":
    main()
