"""Training and distillation: one loop, a pluggable objective.

    from minitron.distill import TrainConfig, train
    result = train(TrainConfig(model="tiny", data=DataSpec(...), out="runs/x", steps=1000))

`train(config, objective=None, model=None, tokenizer=None, provenance=None)` runs AdamW with
warm-up + cosine or WSD decay, gradient clipping and accumulation, bf16 autocast on CUDA, periodic
held-out evaluation, metrics in `<out>/metrics.jsonl`, atomic resumable checkpoints and the final
model in `<out>/final/` (see trainer.py for the layout).

The objective is any callable `objective(model, input_ids) -> scalar loss` with a `name`
(`objectives.Objective`); the default is next-token cross-entropy (`NextTokenCE`). Distillation
passes an objective that holds the frozen teacher and returns the KL between teacher and student
logits; held-out evaluation reports the same objective. Pass `model` and `tokenizer` to train an
in-memory model (e.g. a freshly built or just-pruned one); otherwise `config.model` is loaded.
"""

from minitron.distill.objectives import NextTokenCE, Objective, next_token_ce
from minitron.distill.trainer import TrainConfig, TrainResult, result_table, train

__all__ = ["NextTokenCE", "Objective", "TrainConfig", "TrainResult", "next_token_ce", "result_table", "train"]
