"""Tiny models and batches for the importance tests (copied from tests/conftest.py, with a larger vocab)."""

from __future__ import annotations

import torch

from minitron.model.arch import Architecture
from minitron.model.load import build_model

# tests/conftest.py's TINY with a vocabulary large enough for a byte-level BPE tokenizer.
VOCAB = 300
TINY = Architecture(
    pattern="M-*M-*-M",
    hidden=32,
    ffn=64,
    attn_heads=4,
    kv_heads=2,
    head_dim=8,
    mamba_heads=8,
    mamba_head_dim=4,
    mamba_groups=2,
    ssm_state=8,
    conv_kernel=4,
    vocab=VOCAB,
    extra={
        "chunk_size": 8,
        "layer_norm_epsilon": 1e-5,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
    },
)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter random values so no unit is trivially zero or one (norm weights, D, ...)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("A_log"):
                p.copy_(torch.rand(p.shape, generator=g) * 2 - 1)
            elif p.ndim == 1:
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
    return model


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
