"""Width importance: one calibration pass with forward hooks (Minitron activation-based scores).

For a channel c with activations a[b, t, c] (float32), the default `mean-l2` aggregation is

    score_c = sqrt( sum_b ( mean_t |a[b,t,c]| )^2 )        mean over the sequence, L2 over the batch

Padding tokens (attention_mask == 0) are left out of every mean; fully padded rows count as no sample.
What is observed, per block (where exactly is the family adapter's `width_hooks`):

    hidden        output of every pre-norm (what every mixer reads), scores summed over all of them
    ffn.{i}       input of the MLP's down projection (after the activation), per neuron
    attn_heads.{i} input of the attention output projection, (heads*head_dim) -> L2 over each head
    mamba.{i}     the x channels of the Mamba input projection's output, kept as s[head, head_dim]
    shared_ffn.{i} input of the shared expert's down projection, per neuron (like an MLP's)
    experts.{i}   per routed expert, from the routing the experts module receives (the router's
                  top-k indices and weights): `reap` (default, REAP's saliency) = mean over the tokens
                  routed to the expert of gate weight x ||expert output||; `frequency` = share of
                  tokens routed to it; `norm` = mean ||expert output|| over its tokens. An expert no
                  token was routed to scores 0, the lowest.
    expert_ffn.{i} (experts, expert_ffn): each expert's neurons (its down projection's input) over
                  the tokens routed to it, aggregated like every other channel score

Expert outputs are recomputed from the fused expert weights for the routed tokens (the experts
module runs them in one fused loop that no hook can see into).

Scoring runs in eval mode (see `eval_mode`).

Each score is built from running sums over samples of one per-sample statistic (sum, sum of squares,
count), which is what ranks add up under torchrun.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager

import torch
from torch import nn

from minitron.importance.batches import Batch, as_batches, eval_mode
from minitron.model.adapters import adapter_for
from minitron.model.arch import ATTENTION, BLOCK_PARTS, MAMBA, MLP, MOE, Architecture
from minitron.parallel import all_reduce_sum_
from minitron.progress import Advance

# name -> (statistic over the sequence, aggregation over the batch)
AGGREGATIONS = {
    "mean-l2": ("mean", "l2"),
    "mean-mean": ("mean", "mean"),
    "l2-l2": ("l2", "l2"),
    "var-var": ("var", "var"),
}

EXPERT_SCORES = ("reap", "frequency", "norm")


def sequence_statistic(a: torch.Tensor, mask: torch.Tensor | None, kind: str) -> torch.Tensor:
    """(B, T, C) activations -> (B, C) per-sample statistic over the real tokens, in float32."""
    a = a.float()
    if mask is None:
        if kind == "mean":
            return a.abs().mean(1)
        if kind == "l2":
            return torch.linalg.vector_norm(a, dim=1)
        return a.var(1, correction=0)
    # mask: (B, T) float; (B, 1, T) @ (B, T, C) -> (B, 1, C) sums over real tokens in one bmm
    weights = mask[:, None, :]
    count = mask.sum(1).clamp(min=1)[:, None]  # (B, 1); fully padded rows give 0 and are dropped later
    if kind == "mean":
        return torch.bmm(weights, a.abs()).squeeze(1) / count
    if kind == "l2":
        return torch.bmm(weights, a.square()).squeeze(1).sqrt()
    mean = torch.bmm(weights, a).squeeze(1) / count
    return torch.bmm(weights, (a - mean[:, None, :]).square()).squeeze(1) / count


class ChannelStats:
    """Running sums over samples of a per-sample (C,) statistic, in float64."""

    def __init__(self, channels: int, device: torch.device):
        self.sum = torch.zeros(channels, dtype=torch.float64, device=device)
        self.sumsq = torch.zeros(channels, dtype=torch.float64, device=device)
        self.count = torch.zeros(1, dtype=torch.float64, device=device)

    def add(self, stat: torch.Tensor, valid: torch.Tensor) -> None:
        """stat: (B, C); valid: (B,) 1.0 for rows with at least one real token."""
        stat = stat.double() * valid[:, None]
        self.sum += stat.sum(0)
        self.sumsq += stat.square().sum(0)
        self.count += valid.sum()

    def tensors(self) -> list[torch.Tensor]:
        return [self.sum, self.sumsq, self.count]

    def score(self, over_batch: str) -> torch.Tensor:
        if over_batch == "l2":
            return self.sumsq.sqrt().float()
        n = self.count.clamp(min=1)
        mean = self.sum / n
        if over_batch == "mean":
            return mean.float()
        return (self.sumsq / n - mean.square()).clamp(min=0).float()


class ExpertStats:
    """Running sums over tokens for the routed experts of one MoE block, in float64."""

    def __init__(self, experts: int, channels: int, device: torch.device):
        self.routed = torch.zeros(experts, dtype=torch.float64, device=device)  # tokens routed to each
        self.gated_norm = torch.zeros(experts, dtype=torch.float64, device=device)  # sum gate x ||out||
        self.norm = torch.zeros(experts, dtype=torch.float64, device=device)  # sum ||out||
        self.tokens = torch.zeros(1, dtype=torch.float64, device=device)  # tokens the router saw
        self.channels = [ChannelStats(channels, device) for _ in range(experts)]

    def tensors(self) -> list[torch.Tensor]:
        return [
            self.routed,
            self.gated_norm,
            self.norm,
            self.tokens,
            *(t for c in self.channels for t in c.tensors()),
        ]

    def score(self, how: str) -> torch.Tensor:
        if how == "frequency":
            return (self.routed / self.tokens.clamp(min=1)).float()
        total = self.gated_norm if how == "reap" else self.norm
        return torch.where(self.routed > 0, total / self.routed.clamp(min=1), 0.0).float()


class WidthScorer:
    """Forward hooks on every prunable axis of a model (where its family adapter says), feeding ChannelStats."""

    def __init__(self, model: nn.Module, aggregation: str = "mean-l2", expert_score: str = "reap"):
        self.model = model
        self.expert_score = expert_score
        self.experts: dict[int, ExpertStats] = {}
        self._shape: tuple[int, int] = (0, 0)
        self.adapter = adapter_for(model)
        self.arch = Architecture.from_hf_config(model.config)
        self.over_sequence, self.over_batch = AGGREGATIONS[aggregation]
        self.device = next(model.parameters()).device
        self.stats: dict[str, ChannelStats] = {}
        self._mask: torch.Tensor | None = None
        self._valid: torch.Tensor | None = None

    def _channels(self, score: str) -> int:
        a = self.arch
        channels = {
            "hidden": a.hidden,
            "ffn": a.ffn,
            "attn_heads": a.attn_heads * a.head_dim,
            "shared_ffn": a.shared_ffn,
        }
        return channels.get(score, a.mamba_inner)

    def _observe(self, key: str, a: torch.Tensor) -> None:
        self.stats[key].add(sequence_statistic(a, self._mask, self.over_sequence), self._valid)

    def _observe_experts(self, block: int, experts: nn.Module, args: tuple) -> None:
        """The experts module's inputs: tokens (B*T, H), top-k expert indices and weights (B*T, k)."""
        x, index, weights = args[0], args[1], args[2]
        stats, (b, t) = self.experts[block], self._shape
        real = None if self._mask is None else self._mask.flatten() > 0  # (B*T,) padding left out
        stats.tokens += x.shape[0] if real is None else real.sum()
        for e in range(stats.routed.numel()):
            pos, slot = (index == e).nonzero(as_tuple=True)  # tokens routed to e, and which of their k picks
            if real is not None:
                keep = real[pos]
                pos, slot = pos[keep], slot[keep]
            stats.routed[e] += pos.numel()
            if not pos.numel():
                continue
            act, out = self.adapter.expert_forward(experts, e, x[pos])  # (n, expert_ffn), (n, H)
            norm = out.float().norm(dim=-1)
            stats.gated_norm[e] += (weights[pos, slot].float() * norm).sum()
            stats.norm[e] += norm.sum()
            # Channel statistics over the routed tokens of each sample: the others masked out.
            dense = act.new_zeros(b * t, act.shape[-1], dtype=torch.float32).index_copy_(0, pos, act.float())
            routed = torch.zeros(b * t, device=x.device).index_fill_(0, pos, 1.0).view(b, t)
            stat = sequence_statistic(dense.view(b, t, -1), routed, self.over_sequence)
            stats.channels[e].add(stat, (routed.sum(1) > 0).float())

    @contextmanager
    def hooks(self):
        handles = []
        for i, block in enumerate(self.adapter.blocks(self.model)):
            for k, hook in enumerate(self.adapter.width_hooks(self.arch, self.arch.pattern[i], block)):
                if hook.score == "experts":
                    self.experts.setdefault(
                        i, ExpertStats(self.arch.experts, self.arch.expert_ffn, self.device)
                    )
                    handles.append(
                        hook.module.register_forward_pre_hook(
                            lambda m, args, i=i: self._observe_experts(i, m, args)
                        )
                    )
                    continue
                # Each pre-norm keeps its own statistics (summed as scores); a unit score is per block.
                key = f"hidden.{i}.{k}" if hook.score == "hidden" else f"{hook.score}.{i}"
                # created in registration order: the same on every rank, so `reduce` lines up
                self.stats.setdefault(key, ChannelStats(self._channels(hook.score), self.device))
                part = hook.channels if hook.channels is not None else slice(None)
                if hook.read == "input":
                    handle = hook.module.register_forward_pre_hook(
                        lambda m, args, key=key, part=part: self._observe(key, args[0][..., part])
                    )
                else:
                    handle = hook.module.register_forward_hook(
                        lambda m, args, out, key=key, part=part: self._observe(key, out[..., part])
                    )
                handles.append(handle)
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def observe_batch(self, ids: torch.Tensor, mask: torch.Tensor | None) -> None:
        """Run the blocks (not the LM head: no score needs logits) with the hooks recording."""
        device = next(self.model.parameters()).device
        ids = ids.to(device)
        self._shape = tuple(ids.shape)
        mask = None if mask is None else mask.to(device)
        self._mask = None if mask is None or bool(mask.all()) else mask.float()
        self._valid = torch.ones(ids.shape[0], device=device) if mask is None else (mask.sum(1) > 0).float()
        ctx = self.adapter.start(self.model, ids, mask)
        hidden = ctx.hidden
        for block in self.adapter.blocks(self.model):
            hidden = self.adapter.run_block(block, hidden, ctx)

    def reduce(self) -> None:
        all_reduce_sum_(
            [t for s in self.stats.values() for t in s.tensors()]
            + [t for s in self.experts.values() for t in s.tensors()]
        )

    def scores(self) -> dict[str, torch.Tensor]:
        """The scores-file tensors: hidden, ffn.{i}, attn_heads.{i}, mamba.{i}, experts.{i},
        expert_ffn.{i}, shared_ffn.{i} (see scores.py)."""
        arch, out = self.arch, {}
        hidden = [s.score(self.over_batch) for key, s in self.stats.items() if key.startswith("hidden.")]
        out["hidden"] = torch.stack(hidden).sum(0)
        for i, kind in enumerate(arch.pattern):
            for part in BLOCK_PARTS[kind]:
                if part == MLP:
                    out[f"ffn.{i}"] = self.stats[f"ffn.{i}"].score(self.over_batch)
                elif part == ATTENTION:
                    s = self.stats[f"attn_heads.{i}"].score(self.over_batch)
                    out[f"attn_heads.{i}"] = s.view(arch.attn_heads, arch.head_dim).norm(dim=1)
                elif part == MAMBA:
                    s = self.stats[f"mamba.{i}"].score(self.over_batch)
                    out[f"mamba.{i}"] = s.view(arch.mamba_heads, arch.mamba_head_dim)
                elif part == MOE:
                    stats = self.experts[i]
                    out[f"experts.{i}"] = stats.score(self.expert_score)
                    out[f"expert_ffn.{i}"] = torch.stack([c.score(self.over_batch) for c in stats.channels])
                    if arch.shared_ffn:
                        out[f"shared_ffn.{i}"] = self.stats[f"shared_ffn.{i}"].score(self.over_batch)
        return out


def score_width(
    model: nn.Module,
    batches: Iterable[torch.Tensor | Batch],
    aggregation: str = "mean-l2",
    advance: Advance | None = None,
    expert_score: str = "reap",
) -> dict[str, torch.Tensor]:
    """Width scores of `model` over `batches` (this rank's share; sums are reduced across ranks)."""
    scorer = WidthScorer(model, aggregation, expert_score)
    with eval_mode(model), torch.no_grad(), scorer.hooks():
        for ids, mask in as_batches(batches):
            scorer.observe_batch(ids, mask)
            if advance is not None:
                advance(1)
    scorer.reduce()
    return scorer.scores()
