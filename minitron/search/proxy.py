"""Weight-free ranking of candidates: the share of importance a candidate keeps (needs a scores file).

    proxy = hidden share x mean over kept blocks of the block's share x depth share

hidden share: sum of the kept hidden-channel scores over the sum of all of them; block share: the
same for the kept FFN neurons (MLP), query heads (attention), Mamba head x channel scores (Mamba)
or routed experts (x their kept neurons' share, averaged with the shared expert's neurons: MoE),
chosen with the same rankings pruning uses; depth share: 1 - the dropped blocks' share of the depth
scores (the kept-block fraction without a depth order). A heuristic for planning, not a loss: it
prefers candidates that keep what the scores call important.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch

from minitron.importance.ranking import rank_attention_heads, rank_experts, rank_mamba
from minitron.importance.scores import Scores
from minitron.model.arch import ATTENTION, BLOCK_PARTS, MAMBA, MLP, MOE
from minitron.model.axes import width_axes
from minitron.search.frontier import Point
from minitron.search.space import SearchSpace, representative_pattern


def _top_share(scores: torch.Tensor, k: int) -> float:
    s = scores.double().flatten()
    total = s.sum().item()
    return s.sort(descending=True).values[:k].sum().item() / total if total > 0 else k / s.numel()


def importance_proxy(space: SearchSpace, scores: Scores) -> Callable[[Point], float]:
    source = space.source
    depth_scores = scores.tensors.get("depth.scores")

    @cache
    def part_share(block: int, kind: str, size: tuple[int, ...]) -> float:
        if kind == MLP:
            return _top_share(scores.get(f"ffn.{block}"), size[0])
        if kind == ATTENTION:
            s = scores.get(f"attn_heads.{block}").double()
            kept = rank_attention_heads(s, size[0], source.kv_heads)
            return s[kept].sum().item() / max(s.sum().item(), 1e-30)
        if kind == MOE:
            experts, expert_ffn, shared_ffn = size  # the MoE axes in table order
            s = scores.get(f"experts.{block}").double()
            kept = rank_experts(s, experts, source.extra.get("n_group") or 1)
            share = s[kept].sum().item() / max(s.sum().item(), 1e-30)
            neurons = scores.get(f"expert_ffn.{block}")
            share *= sum(_top_share(neurons[e], expert_ffn) for e in kept.tolist()) / len(kept)
            if source.shared_ffn:
                share = (share + _top_share(scores.get(f"shared_ffn.{block}"), shared_ffn)) / 2
            return share
        s = scores.get(f"mamba.{block}").double()
        heads, channels = rank_mamba(s, size[0], size[1], source.mamba_groups)
        return s[heads][:, channels].sum().item() / max(s.sum().item(), 1e-30)

    @cache
    def hidden_share(hidden: int) -> float:
        return _top_share(scores.get("hidden"), hidden)

    def proxy(point: Point) -> float:
        pattern = representative_pattern(source, point.depth)
        if point.depth.dropped is not None:
            kept = [i for i in range(source.n_blocks) if i not in set(point.depth.dropped)]
        else:
            kept = _kept_indices(source.pattern, pattern)
        sizes = {
            part: tuple(getattr(point, a.name) for a in width_axes() if a.part == part)
            for part in (MLP, ATTENTION, MAMBA, MOE)
        }

        def block_share(i: int) -> float:  # a dense layer: the mean over its attention and its MLP
            parts = BLOCK_PARTS[source.pattern[i]]
            return sum(part_share(i, p, sizes[p]) for p in parts) / len(parts)

        blocks = sum(block_share(i) for i in kept) / len(kept)
        if depth_scores is not None and point.depth.dropped is not None:
            d = depth_scores.double().clamp(min=0)
            depth = 1 - d[list(point.depth.dropped)].sum().item() / max(d.sum().item(), 1e-30)
        else:
            depth = len(kept) / source.n_blocks
        return hidden_share(point.hidden) * blocks * depth

    return proxy


def _kept_indices(full: str, reduced: str) -> list[int]:
    """Source indices of `reduced` as a subsequence of `full` (greedy, leftmost)."""
    out, j = [], 0
    for i, c in enumerate(full):
        if j < len(reduced) and reduced[j] == c:
            out.append(i)
            j += 1
    return out
