"""Which units to keep, given their scores: pure functions shared by scoring reports and pruning.

All functions return kept indices sorted ascending (the order the weights keep them in), and break
ties towards the lower index so a ranking is reproducible.
"""

from __future__ import annotations

import torch

from minitron.errors import MinitronError


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the `k` highest scores, sorted ascending."""
    if not 0 < k <= scores.numel():
        raise MinitronError(f"cannot keep {k} of {scores.numel()} units; keep between 1 and {scores.numel()}")
    order = torch.sort(scores.flatten(), descending=True, stable=True).indices
    return torch.sort(order[:k]).values


def _top_k_per_group(scores: torch.Tensor, keep: int, groups: int, what: str) -> torch.Tensor:
    """Keep the same number of units in each of `groups` consecutive equal groups."""
    n = scores.numel()
    if n % groups:
        raise MinitronError(f"{n} {what} do not split into {groups} equal groups")
    if keep % groups:
        raise MinitronError(
            f"keeping {keep} {what} cannot keep the same count in each of {groups} groups; "
            f"use a multiple of {groups}"
        )
    size = n // groups
    kept = [g * size + top_k(scores[g * size : (g + 1) * size], keep // groups) for g in range(groups)]
    return torch.cat(kept)


def rank_attention_heads(scores: torch.Tensor, keep_heads: int, kv_heads: int) -> torch.Tensor:
    """Kept query heads, the same count per KV group (query head h reads KV head h // (heads / kv_heads))."""
    return _top_k_per_group(scores, keep_heads, kv_heads, "attention heads")


def rank_mamba(
    s: torch.Tensor, keep_heads: int, keep_head_dim: int, groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nested, group-aware Mamba ranking (Minitron-SSM) from s[head, head_dim] -> (head_idx, channel_idx).

    Head channels first (one set shared by every head), then heads scored on the kept channels only,
    the same number of heads kept in every group (B, C and the gated norm are per group).
    """
    if s.ndim != 2:
        raise MinitronError(f"Mamba scores must be (heads, head_dim), got shape {tuple(s.shape)}")
    s = s.double()
    channel_idx = top_k(s.norm(dim=0), keep_head_dim)  # s_d: L2 over heads
    head_scores = s[:, channel_idx].norm(dim=1)  # f_h: L2 over the kept channels
    head_idx = _top_k_per_group(head_scores, keep_heads, groups, "Mamba heads")
    return head_idx, channel_idx


def rank_experts(scores: torch.Tensor, keep: int, groups: int) -> torch.Tensor:
    """Kept routed experts, the same count in each of the router's `groups` (n_group; 1 = ungrouped)."""
    return _top_k_per_group(scores, keep, groups, "routed experts")
