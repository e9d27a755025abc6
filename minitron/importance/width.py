"""Width importance: one calibration pass with forward hooks (Minitron activation-based scores).

For a channel c with activations a[b, t, c] (float32), the default `mean-l2` aggregation is

    score_c = sqrt( sum_b ( mean_t |a[b,t,c]| )^2 )        mean over the sequence, L2 over the batch

Padding tokens (attention_mask == 0) are left out of every mean; fully padded rows count as no sample.
What is observed, per block (where exactly is the family adapter's `width_hooks`):

    hidden        output of every pre-norm (what every mixer reads), scores summed over all of them
    ffn.{i}       input of the MLP's down projection (after the activation), per neuron
    attn_heads.{i} input of the attention output projection, (heads*head_dim) -> L2 over each head
    mamba.{i}     the x channels of the Mamba input projection's output, kept as s[head, head_dim]

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
from minitron.model.arch import ATTENTION, BLOCK_PARTS, MAMBA, MLP, Architecture
from minitron.parallel import all_reduce_sum_
from minitron.progress import Advance

# name -> (statistic over the sequence, aggregation over the batch)
AGGREGATIONS = {
    "mean-l2": ("mean", "l2"),
    "mean-mean": ("mean", "mean"),
    "l2-l2": ("l2", "l2"),
    "var-var": ("var", "var"),
}


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


class WidthScorer:
    """Forward hooks on every prunable axis of a model (where its family adapter says), feeding ChannelStats."""

    def __init__(self, model: nn.Module, aggregation: str = "mean-l2"):
        self.model = model
        self.adapter = adapter_for(model)
        self.arch = Architecture.from_hf_config(model.config)
        self.over_sequence, self.over_batch = AGGREGATIONS[aggregation]
        self.device = next(model.parameters()).device
        self.stats: dict[str, ChannelStats] = {}
        self._mask: torch.Tensor | None = None
        self._valid: torch.Tensor | None = None

    def _channels(self, score: str) -> int:
        a = self.arch
        return {"hidden": a.hidden, "ffn": a.ffn, "attn_heads": a.attn_heads * a.head_dim}.get(score, a.mamba_inner)

    def _observe(self, key: str, a: torch.Tensor) -> None:
        self.stats[key].add(sequence_statistic(a, self._mask, self.over_sequence), self._valid)

    @contextmanager
    def hooks(self):
        handles = []
        for i, block in enumerate(self.adapter.blocks(self.model)):
            for k, hook in enumerate(self.adapter.width_hooks(self.arch, self.arch.pattern[i], block)):
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
        mask = None if mask is None else mask.to(device)
        self._mask = None if mask is None or bool(mask.all()) else mask.float()
        self._valid = torch.ones(ids.shape[0], device=device) if mask is None else (mask.sum(1) > 0).float()
        ctx = self.adapter.start(self.model, ids, mask)
        hidden = ctx.hidden
        for block in self.adapter.blocks(self.model):
            hidden = self.adapter.run_block(block, hidden, ctx)

    def reduce(self) -> None:
        all_reduce_sum_([t for s in self.stats.values() for t in s.tensors()])

    def scores(self) -> dict[str, torch.Tensor]:
        """The scores-file tensors: hidden, ffn.{i}, attn_heads.{i}, mamba.{i} (see scores.py)."""
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
        return out


def score_width(
    model: nn.Module,
    batches: Iterable[torch.Tensor | Batch],
    aggregation: str = "mean-l2",
    advance: Advance | None = None,
) -> dict[str, torch.Tensor]:
    """Width scores of `model` over `batches` (this rank's share; sums are reduced across ranks)."""
    scorer = WidthScorer(model, aggregation)
    with eval_mode(model), torch.no_grad(), scorer.hooks():
        for ids, mask in as_batches(batches):
            scorer.observe_batch(ids, mask)
            if advance is not None:
                advance(1)
    scorer.reduce()
    return scorer.scores()
