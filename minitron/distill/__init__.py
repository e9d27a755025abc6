"""Training and distillation: one loop, a pluggable objective.

    from minitron.distill import TrainConfig, train
    result = train(TrainConfig(model="tiny", data=DataSpec(...), out="runs/x", steps=1000))

`train(config, objective=None, model=None, tokenizer=None, provenance=None)` runs AdamW with
warm-up + cosine or WSD decay, gradient clipping and accumulation, bf16 autocast on CUDA, periodic
held-out evaluation, metrics in `<out>/metrics.jsonl`, atomic resumable checkpoints and the final
model in `<out>/final/` (see rundir.py for the layout).

`minitron distill` is `run.distill(DistillConfig)`: the `kd.Distillation` objective (frozen teacher,
chunked KD losses from `losses.py`) in this loop. `minitron compare` is `compare.compare`: prune the
search's top candidates and distil each the same way.

The objective is any callable `objective(model, input_ids) -> scalar loss` with a `name`
(`objectives.Objective`); the default is next-token cross-entropy (`NextTokenCE`). An objective
may also offer `sums(model, input_ids)` (the loss summed over real tokens, the token count and other
sums to report), which the loop divides by the real tokens of the global batch; held-out evaluation
reports every sum. Pass `model` and `tokenizer` to train an
in-memory model (e.g. a freshly built or just-pruned one); otherwise `config.model` is loaded.
"""

from minitron.distill.objectives import NextTokenCE, Objective, next_token_ce
from minitron.distill.trainer import TrainConfig, TrainResult, result_table, train

__all__ = ["NextTokenCE", "Objective", "TrainConfig", "TrainResult", "next_token_ce", "result_table", "train"]
