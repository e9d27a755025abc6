"""Tiny models and batches for the importance tests (tests/conftest.py's, with a larger vocab)."""

from __future__ import annotations

import dataclasses

import tiny_models
import torch
from tiny_models import randomize_

from minitron.model.arch import Architecture
from minitron.model.load import build_model

# tests/conftest.py's TINY with a vocabulary large enough for a byte-level BPE tokenizer.
VOCAB = 300
TINY = dataclasses.replace(tiny_models.TINY, vocab=VOCAB)


def random_tiny_model(seed: int = 0, arch: Architecture = TINY):
    return randomize_(build_model(arch, seed=seed), seed=seed)


def calibration_batches(n: int = 3, batch: int = 2, seq: int = 16, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, VOCAB, (batch, seq), generator=g) for _ in range(n)]


def padded_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Left padding of different lengths, and one fully padded row."""
    out = []
    for i, ids in enumerate(calibration_batches(n=2, batch=3, seq=16, seed=2)):
        mask = torch.ones_like(ids)
        mask[0, : 3 + i] = 0
        mask[1, :7] = 0
        if i == 1:
            mask[2] = 0
        out.append((ids.masked_fill(mask == 0, 0), mask))
    return out
