"""Calibration batches as the scorers take them: (input_ids, attention_mask or None) pairs."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager

import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor | None]  # (B, T) token ids, (B, T) 1 = real token, 0 = padding


def as_batches(batches: Iterable[torch.Tensor | Batch]) -> list[Batch]:
    """Accept bare (B, T) id tensors or (ids, mask) pairs."""
    return [(b, None) if isinstance(b, torch.Tensor) else (b[0], b[1]) for b in batches]


def n_samples(batches: Iterable[torch.Tensor | Batch]) -> int:
    """Rows that hold at least one real token (fully padded rows score nothing)."""
    return sum(
        ids.shape[0] if mask is None else int((mask.sum(1) > 0).sum()) for ids, mask in as_batches(batches)
    )


def valid_token_index(ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
    """Flat (B*T) positions of real tokens, or None when every token is real."""
    if mask is None or bool(mask.all()):
        return None
    return mask.reshape(-1).nonzero().squeeze(1)


@contextmanager
def eval_mode(model: nn.Module):
    """Score in eval mode (no dropout, the unfused Mamba path); restore the caller's mode afterwards.

    The hooks would also work in training mode: mamba-ssm's fused kernel (conv..out_proj in one
    call) starts from in_proj's output, which is exactly what the Mamba hook reads.
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
