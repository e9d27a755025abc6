"""Training objectives: what the loop minimises, as small callables on (model, input_ids).

An objective returns the mean loss per predicted token as a scalar tensor. The loop knows nothing
else about it, so knowledge distillation plugs in by holding a teacher and returning a KL loss.
"""

from __future__ import annotations

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
