"""Helpers for the prune tests: random scores, and exact masked references of a pruned model."""

from __future__ import annotations

import copy

import torch
from tiny_models import MaskedRMSNorm, mask_of, random_scores, randomize_  # noqa: F401  (re-exported)
from torch import nn

from minitron.model.arch import ATTENTION, MAMBA, MLP


class MaskedGatedNorm(nn.Module):
    """NemotronH's gated group RMSNorm with the per-group mean taken over kept channels only."""

    def __init__(self, norm: nn.Module, keep: torch.Tensor):
        super().__init__()
        self.weight, self.eps, self.group_size, self.mask = (
            norm.weight,
            norm.variance_epsilon,
            norm.group_size,
            keep.float(),
        )

    def forward(self, x, gate=None):
        dtype = x.dtype
        x = x.float() * nn.functional.silu(gate.float())
        *prefix, width = x.shape
        groups = width // self.group_size
        xg = x.view(*prefix, groups, self.group_size)  # (B, T, groups, group_size)
        mg = self.mask.view(groups, self.group_size)
        variance = (xg.pow(2) * mg).sum(-1, keepdim=True) / mg.sum(-1, keepdim=True)
        x = (xg * torch.rsqrt(variance + self.eps)).view(*prefix, width) * self.mask
        return self.weight * x.to(dtype)


def reference_model(model: nn.Module, sel, zero_only: bool = False) -> nn.Module:
    """The source model computing exactly what the pruned model computes (no cache; for logits).

    FFN neurons: zero up_proj rows; attention heads: zero o_proj columns; blocks: skipped; hidden
    channels: every RMSNorm masked; Mamba heads/channels: gated norm masked (zero_only=True instead
    only zeros out_proj columns -- the inexact reference, for the negative control).
    """
    ref = copy.deepcopy(model)
    src = sel.source
    layers = ref.model.layers
    with torch.no_grad():
        for i, block in enumerate(layers):
            kind = src.pattern[i]
            if i not in sel.new_block_index:
                continue
            if kind == MLP:
                ref_rows = ~mask_of(sel.ffn[i], src.ffn)
                block.mixer.up_proj.weight[ref_rows] = 0
            elif kind == ATTENTION:
                cols = ~mask_of(sel.attn_q_rows(i), src.attn_heads * src.head_dim)
                block.mixer.o_proj.weight[:, cols] = 0
            elif kind == MAMBA:
                keep = mask_of(sel.mamba_x_channels(i), src.mamba_inner)
                if zero_only:
                    block.mixer.out_proj.weight[:, ~keep] = 0
                else:
                    block.mixer.norm = MaskedGatedNorm(block.mixer.norm, keep)
        if sel.hidden.numel() != src.hidden:
            keep_h = mask_of(sel.hidden, src.hidden)
            ref.model.embeddings.weight[:, ~keep_h] = 0
            for block in layers:
                block.norm = MaskedRMSNorm(block.norm, keep_h)
            ref.model.norm_f = MaskedRMSNorm(ref.model.norm_f, keep_h)
    ref.model.layers = nn.ModuleList([layers[i] for i in sel.kept_blocks])
    return ref.eval()
