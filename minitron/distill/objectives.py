"""Training objectives: what the loop minimises, as small callables on (model, input_ids).

An objective returns the mean loss per predicted token as a scalar tensor. The loop knows nothing
else about it, so knowledge distillation plugs in by holding a teacher and returning a KL loss.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

import torch
import torch.nn.functional as F


class Objective(Protocol):
    name: str

    def __call__(self, model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        """Mean loss per predicted token of `model` on `input_ids` (batch, seq); a scalar."""
        ...


def next_token_ce(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting token t+1 from logits at t.

    logits (batch, seq, vocab), input_ids (batch, seq) -> scalar over batch x (seq - 1) predictions.
    """
    vocab = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, vocab).float(), input_ids[:, 1:].reshape(-1))


class NextTokenCE:
    """Language-model pre-training loss: next-token cross-entropy on the data itself."""

    name = "next_token_ce"

    def __call__(self, model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        return next_token_ce(model(input_ids=input_ids).logits, input_ids)


def predicted_tokens(input_ids: torch.Tensor) -> int:
    """Positions with a next token to predict in a packed (batch, seq) batch."""
    return input_ids.shape[0] * (input_ids.shape[1] - 1)


def loss_sums(
    objective: Objective, model: torch.nn.Module, input_ids: torch.Tensor
) -> dict[str, torch.Tensor]:
    """{"loss": summed loss (with gradient), "count": real predicted tokens, other sums for reporting}.

    Objectives with a `sums` method return this themselves; for the others the mean is scaled back to
    a sum, so the trainer can normalise every objective by the real tokens of the global batch.
    """
    sums = getattr(objective, "sums", None)
    if sums is not None:
        return sums(model, input_ids)
    count = predicted_tokens(input_ids)
    return {"loss": objective(model, input_ids) * count, "count": torch.tensor(float(count))}


@torch.no_grad()
def heldout_losses(
    model: torch.nn.Module,
    objective: Objective,
    batches: list[torch.Tensor],
    autocast: AbstractContextManager | None = None,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Every sum `objective` reports, per predicted token over the held-out `batches`: {"eval_loss": ...,
    "eval_<name>": ...}, the one held-out loop of training, distillation, the run report and make_tiny.

    Under torchrun each rank evaluates its share and the sums are added over ranks; all ranks run the
    same number of forwards (FSDP2 gathers weights in each), a rank with a shorter share repeating a
    batch it then leaves out.
    """
    from minitron.parallel import rank_and_world, sum_over_ranks

    rank, world = rank_and_world()
    device = device if device is not None else next(model.parameters()).device
    model.eval()
    mine = batches[rank::world]
    totals: dict[str, torch.Tensor] = {}
    for i in range(-(-len(batches) // world)):
        batch = mine[i] if i < len(mine) else batches[0]
        with autocast or nullcontext():
            sums = loss_sums(objective, model, batch.to(device))
        weight = 1.0 if i < len(mine) else 0.0
        for key, value in sums.items():
            totals[key] = totals.get(key, 0) + weight * value.detach().float().reshape(())
    reduced = sum_over_ranks(totals)
    count = reduced.pop("count")
    return {"eval_loss": reduced.pop("loss") / count, **{f"eval_{k}": v / count for k, v in reduced.items()}}


def heldout_loss(model: torch.nn.Module, batches: list[torch.Tensor]) -> float:
    """Mean next-token cross-entropy per predicted token over `batches` (nats / token)."""
    return heldout_losses(model, NextTokenCE(), batches)["eval_loss"]
