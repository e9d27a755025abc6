"""One search trial against one plain forward of the same candidate over the same batches.

Target: a trial costs at most 1.3x the forward. Teacher: the shipped tiny teacher (float32). The
candidate is the 12B -> 9B compression applied to it (hidden 128 -> 112, FFN 512 -> 392, the 6 blocks
the 9B drops), ranked by width scores of the teacher on a few calibration batches. The evaluation
batches are the search defaults (16 held-out samples x 256 tokens in batches of 4, teacher top-64),
cached once before timing as a study does.

    trial     `objective.prune_shared` (in-memory prune, untouched tensors shared with the teacher)
              + `objective.evaluate` (KL against the cached teacher top-k, logits in chunks)
    baseline  `candidate(input_ids=ids, use_cache=False)` for every cached batch, the candidate
              already built (the cost the objective cannot avoid: one forward over the batches)

Interleaved over --rounds rounds after one warm-up of each, one intra-op thread, medians reported.

    nice python bench/search_trial.py [--rounds 7] [--threads 1]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import (
    builtin_batches,
    interleaved,
    nano2_target,
    parse_args,
    print_medians,
    print_ranges,
    tiny_teacher,
)


def main() -> None:
    args = parse_args(__doc__, rounds=7, threads=1, eval_samples=16, seq_len=256, batch_size=4, top_k=64)

    import torch

    from minitron.importance.scores import Scores
    from minitron.importance.width import score_width
    from minitron.search.objective import evaluate, prune_shared
    from minitron.search.teacher_cache import build_cache, load_cache

    _, teacher, tokenizer = tiny_teacher()

    def batches(samples: int, split: str) -> list[torch.Tensor]:
        return builtin_batches(tokenizer, args.seq_len, args.batch_size, samples, split)

    scores = Scores(tensors=score_width(teacher, batches(8, "train")), header={})
    spec = nano2_target()
    with tempfile.TemporaryDirectory() as tmp:
        path = build_cache(teacher, batches(args.eval_samples, "heldout"), args.top_k, Path(tmp) / "c.safetensors",
                           {"key": "bench"})  # fmt: skip
        cache = load_cache(path)
    candidate = prune_shared(teacher, spec, scores)
    result: dict[str, float] = {}

    @torch.no_grad()
    def plain_forward():
        for ids in cache.ids:
            candidate(input_ids=ids, use_cache=False)

    def prune_only():
        prune_shared(teacher, spec, scores)

    def trial():
        result["kl"] = evaluate(prune_shared(teacher, spec, scores), cache, "kl")

    runs = {
        "plain forward of the candidate (baseline)": plain_forward,
        "in-memory prune only": prune_only,
        "trial: prune + KL vs cached top-k": trial,
    }
    times = interleaved(runs, args.rounds)
    n_t = sum(p.numel() for p in teacher.parameters())
    n_c = sum(p.numel() for p in candidate.parameters())
    print(
        f"teacher {n_t:,} params, candidate {n_c:,} ({n_c / n_t:.1%}), {len(cache.ids)} batches x "
        f"{args.batch_size} x {args.seq_len} tokens, top-{cache.top_k}, {args.threads} thread(s), "
        f"{args.rounds} rounds; candidate KL {result['kl']:.4f}"
    )
    print_medians(times, "pass")
    print_ranges(times)


if __name__ == "__main__":
    main()
