"""Which units of the source a target keeps: kept blocks, hidden channels, and per-block units.

Units are ranked by importance (minitron.importance.ranking) and kept in their ORIGINAL order
(ascending indices), so pruning to the same architecture twice gives bit-identical weights and
pruning to the source architecture reproduces the source exactly. An axis whose size does not
change keeps every unit and needs no scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from minitron.errors import MinitronError
from minitron.importance.ranking import rank_attention_heads, rank_experts, rank_mamba, top_k
from minitron.importance.scores import Scores
from minitron.model.arch import ATTENTION, BLOCK_PARTS, MAMBA, MLP, MOE, Architecture
from minitron.model.axes import width_axes
from minitron.prune.target import Target
from minitron.runs import digest


@dataclass
class Selection:
    """Kept indices per axis, in source numbering; per-block entries are keyed by SOURCE block index."""

    source: Architecture
    target: Architecture
    kept_blocks: tuple[int, ...]
    hidden: torch.Tensor  # (target.hidden,)
    ffn: dict[int, torch.Tensor] = field(default_factory=dict)  # (target.ffn,)
    attn_heads: dict[int, torch.Tensor] = field(default_factory=dict)  # (target.attn_heads,)
    mamba_heads: dict[int, torch.Tensor] = field(default_factory=dict)  # (target.mamba_heads,)
    mamba_channels: dict[int, torch.Tensor] = field(default_factory=dict)  # (target.mamba_head_dim,)
    experts: dict[int, torch.Tensor] = field(default_factory=dict)  # (target.experts,)
    # Each kept expert keeps its own neurons: row r belongs to expert experts[block][r].
    expert_ffn: dict[int, torch.Tensor] = field(default_factory=dict)  # (target.experts, target.expert_ffn)
    shared_ffn: dict[int, torch.Tensor] = field(default_factory=dict)  # (target.shared_ffn,)

    @property
    def new_block_index(self) -> dict[int, int]:
        return {old: new for new, old in enumerate(self.kept_blocks)}

    def attn_q_rows(self, block: int) -> torch.Tensor:
        """q_proj rows / o_proj columns of the kept query heads: (kept heads * head_dim,)."""
        head_dim = self.source.head_dim
        heads = self.attn_heads[block]
        return (heads[:, None] * head_dim + torch.arange(head_dim)).flatten()

    def mamba_x_channels(self, block: int) -> torch.Tensor:
        """Kept channels of d_inner (z, x, gated norm, out_proj columns), head-major like .view(heads, head_dim)."""
        head_dim = self.source.mamba_head_dim
        heads, channels = self.mamba_heads[block], self.mamba_channels[block]
        return (heads[:, None] * head_dim + channels[None, :]).flatten()

    def expert_gate_up_rows(self, block: int) -> torch.Tensor:
        """Kept rows of each kept expert's packed [gate | up] projection (2 x expert_ffn rows):
        (target.experts, 2 * target.expert_ffn), the gate rows then the same neurons' up rows."""
        neurons = self.expert_ffn[block]
        return torch.cat([neurons, neurons + self.source.expert_ffn], dim=1)

    def summary(self) -> dict[str, object]:
        """Kept indices in a compact JSON form (for the provenance record)."""
        per_block = {}
        for i in self.kept_blocks:
            entry: dict[str, object] = {"new_index": self.new_block_index[i], "type": self.source.pattern[i]}
            if i in self.ffn:
                entry["ffn_kept"] = _compact(self.ffn[i], self.source.ffn)
            if i in self.attn_heads:
                entry["attn_heads_kept"] = self.attn_heads[i].tolist()
            if i in self.mamba_heads:
                entry["mamba_heads_kept"] = self.mamba_heads[i].tolist()
                entry["mamba_head_channels_kept"] = self.mamba_channels[i].tolist()
            if i in self.experts:
                entry["experts_kept"] = self.experts[i].tolist()
                per_expert = self.expert_ffn[i]
                if per_expert.shape[1] != self.source.expert_ffn:
                    entry["expert_ffn_kept"] = [_compact(row, self.source.expert_ffn) for row in per_expert]
            if i in self.shared_ffn:
                entry["shared_ffn_kept"] = _compact(self.shared_ffn[i], self.source.shared_ffn)
            per_block[str(i)] = entry
        return {
            "kept_blocks": list(self.kept_blocks),
            "hidden_kept": _compact(self.hidden, self.source.hidden),
            "blocks": per_block,
        }


def _compact(idx: torch.Tensor, total: int) -> object:
    """'all' when nothing was removed; else the count, a digest of the kept indices, and the removed
    indices themselves when there are few (the full lists follow from the scores file anyway)."""
    if idx.numel() == total:
        return "all"
    entry: dict[str, object] = {
        "count": idx.numel(),
        "of": total,
        "sha256": digest(idx.tolist(), 16),
    }
    if total - idx.numel() <= 64:
        entry["removed"] = sorted(set(range(total)) - set(idx.tolist()))
    return entry


def select_units(source: Architecture, target: Target, scores: Scores | None) -> Selection:
    """Rank every axis the target narrows and keep its top units (same count per group where grouped)."""
    arch = target.arch
    needs = [a.flag for a in width_axes() if getattr(arch, a.name) != getattr(source, a.name)]
    if needs and scores is None:
        raise MinitronError(f"width pruning ({', '.join(needs)}) needs --scores (run `minitron score` first)")

    def keep(key: str, total: int, k: int) -> torch.Tensor:
        if k == total:
            return torch.arange(total)
        return top_k(_scores_of(scores, key, (total,)), k)

    sel = Selection(
        source=source,
        target=arch,
        kept_blocks=target.kept_blocks,
        hidden=keep("hidden", source.hidden, arch.hidden),
    )
    for i in target.kept_blocks:
        for part in BLOCK_PARTS[source.pattern[i]]:
            if part == MLP:
                sel.ffn[i] = keep(f"ffn.{i}", source.ffn, arch.ffn)
            elif part == ATTENTION:
                if arch.attn_heads == source.attn_heads:
                    sel.attn_heads[i] = torch.arange(source.attn_heads)
                else:
                    s = _scores_of(scores, f"attn_heads.{i}", (source.attn_heads,))
                    sel.attn_heads[i] = (
                        rank_attention_heads(s, arch.attn_heads, source.kv_heads).sort().values
                    )
            elif part == MAMBA:
                if (arch.mamba_heads, arch.mamba_head_dim) == (source.mamba_heads, source.mamba_head_dim):
                    sel.mamba_heads[i] = torch.arange(source.mamba_heads)
                    sel.mamba_channels[i] = torch.arange(source.mamba_head_dim)
                else:
                    s = _scores_of(scores, f"mamba.{i}", (source.mamba_heads, source.mamba_head_dim))
                    heads, channels = rank_mamba(
                        s, arch.mamba_heads, arch.mamba_head_dim, source.mamba_groups
                    )
                    sel.mamba_heads[i], sel.mamba_channels[i] = heads.sort().values, channels.sort().values
            elif part == MOE:
                _select_experts(sel, i, scores)
    return sel


def _select_experts(sel: Selection, i: int, scores: Scores | None) -> None:
    """Block i's kept routed experts (the same count per router group), each expert's own top neurons,
    and the shared expert's neurons."""
    source, arch = sel.source, sel.target
    if arch.experts == source.experts:
        sel.experts[i] = torch.arange(source.experts)
    else:
        s = _scores_of(scores, f"experts.{i}", (source.experts,))
        groups = source.extra.get("n_group") or 1
        sel.experts[i] = rank_experts(s, arch.experts, groups).sort().values
    if arch.expert_ffn == source.expert_ffn:
        sel.expert_ffn[i] = torch.arange(source.expert_ffn).expand(arch.experts, -1)
    else:
        s = _scores_of(scores, f"expert_ffn.{i}", (source.experts, source.expert_ffn))
        sel.expert_ffn[i] = torch.stack([top_k(s[e], arch.expert_ffn) for e in sel.experts[i].tolist()])
    if source.shared_ffn:
        if arch.shared_ffn == source.shared_ffn:
            sel.shared_ffn[i] = torch.arange(source.shared_ffn)
        else:
            sel.shared_ffn[i] = top_k(
                _scores_of(scores, f"shared_ffn.{i}", (source.shared_ffn,)), arch.shared_ffn
            )


def _scores_of(scores: Scores | None, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    assert scores is not None  # select_units refuses width pruning without scores first
    s = scores.get(key)
    if tuple(s.shape) != shape:
        raise MinitronError(f"scores '{key}' have shape {tuple(s.shape)}, the model needs {shape}")
    return s.float()
