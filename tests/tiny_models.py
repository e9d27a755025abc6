"""Tiny random NemotronH models shared by every test area (imported by the conftest files and helpers)."""

from __future__ import annotations

import torch

from minitron.model.arch import Architecture

# One of every block type, twice, with group structure in both attention (GQA) and Mamba.
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
    vocab=97,
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
