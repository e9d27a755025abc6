"""Depth importance: how much the model's output changes when one block is removed.

Metrics (higher = more important):

    mse     s_j = sum_{B,T,V} (M_full - M_{-j})^2 / sum_{B,T,V} M_full^2     (Nano 2 default)
    kl      mean over tokens of KL(softmax(M_full) || softmax(M_{-j}))      (Minitron-SSM)
    cosine  mean over tokens of 1 - cos(block input, block output)          (Block Influence, ShortGPT)

M are logits over real tokens (padding left out). `one-shot` scores every block of the full model;
`iterative` removes the least important block, rescores the rest on the reduced model (always
against the ORIGINAL model's logits) and repeats, which gives a full removal order. Then
`depth.scores[j]` is block j's score at the step it was removed and `depth.order` is authoritative.
`iterations=N` stops the iterative removal after N blocks and orders the rest one-shot by their
scores on the model reduced by those N (N + 1 steps instead of n; N = 0 is one-shot).

Removing block j changes only what comes after it, so one forward of the (reduced) model caches the
hidden states entering every block, and each candidate reruns only its suffix: sum_j (n - 1 - j)
block runs instead of n * (n - 1). Memory per batch: (n_blocks + 1) hidden-state tensors plus the
full model's logits over the batch's real tokens (float32, B*T*vocab*4 bytes; candidates' logits
are computed LOGIT_CHUNK_TOKENS at a time): size --batch-size for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from minitron.errors import MinitronError, check_choice
from minitron.importance.batches import Batch, as_batches, eval_mode, valid_token_index
from minitron.model.adapters import FamilyAdapter, ForwardContext, adapter_for
from minitron.parallel import all_reduce_sum_
from minitron.progress import Advance

DEPTH_METRICS = ("mse", "kl", "cosine")
# Candidate logits are computed this many tokens at a time: with a 131072 vocabulary a chunk is 0.5 GiB.
LOGIT_CHUNK_TOKENS = 1024
DEPTH_MODES = ("iterative", "one-shot")


def _run(adapter: FamilyAdapter, blocks: Sequence[nn.Module], hidden: torch.Tensor, ctx: ForwardContext):
    for block in blocks:
        hidden = adapter.run_block(block, hidden, ctx)
    return hidden


def _flat_real(hidden: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """(B, T, H) -> (N, H) hidden states of the real tokens."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    return flat if index is None else flat.index_select(0, index)


class _Reference:
    """The original model's outputs over one batch's real tokens, compared against candidates."""

    def __init__(self, logits: torch.Tensor, metric: str):
        self.metric = metric
        # mse compares logits, kl compares log-probabilities: keep only the one needed.
        self.target = logits if metric == "mse" else torch.log_softmax(logits, dim=-1)
        self.norm_sq = _sum_of_squares(logits)

    def distance(self, logits: torch.Tensor, tokens: slice) -> torch.Tensor:
        """Summed over these tokens (and vocab): float64 scalar; `logits` are the candidate's for `tokens`."""
        target = self.target[tokens]
        if self.metric == "mse":
            return _sum_of_squares(target - logits)
        kl_per_token = (target.exp() * (target - torch.log_softmax(logits, dim=-1))).sum(-1)
        return kl_per_token.double().sum()


def _sum_of_squares(x: torch.Tensor) -> torch.Tensor:
    """sum(x^2) over (tokens, vocab) as float64 without a float64 copy of the logits: per-token float32
    norms (accurate to ~1e-6 over a 131072 vocabulary, unlike one flat float32 dot), then float64."""
    return torch.linalg.vector_norm(x.float(), dim=-1).double().square().sum()


def _block_influence(inp: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Summed over tokens of 1 - cos(in, out): float64 scalar; inputs (N, H)."""
    return (1 - torch.nn.functional.cosine_similarity(inp.float(), out.float(), dim=-1)).double().sum()


def _step_sums(
    model: nn.Module,
    adapter: FamilyAdapter,
    batches: list[Batch],
    kept: list[int],
    metric: str,
    advance: Advance | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed distances per kept block (n_blocks,) and the normaliser (scalar), over this rank's batches."""
    blocks = adapter.blocks(model)
    device = next(model.parameters()).device
    sums = torch.zeros(len(blocks), dtype=torch.float64, device=device)
    normaliser = torch.zeros((), dtype=torch.float64, device=device)
    kept_blocks = [blocks[j] for j in kept]
    n = len(blocks)
    for ids, mask in batches:
        ids = ids.to(device)
        mask = None if mask is None else mask.to(device)
        index = valid_token_index(ids, mask)
        ctx = adapter.start(model, ids, mask)
        # inputs[k] = hidden state entering kept[k]; inputs[-1] = output of the reduced model
        inputs = [ctx.hidden]
        for block in kept_blocks:
            inputs.append(adapter.run_block(block, inputs[-1], ctx))
        if metric == "cosine":
            for k, j in enumerate(kept):
                sums[j] += _block_influence(_flat_real(inputs[k], index), _flat_real(inputs[k + 1], index))
            normaliser += inputs[0].shape[0] * inputs[0].shape[1] if index is None else index.numel()
        else:
            full = inputs[-1] if len(kept) == len(blocks) else _run(adapter, blocks, ctx.hidden, ctx)
            reference = _Reference(adapter.logits(model, _flat_real(full, index)), metric)
            normaliser += reference.norm_sq if metric == "mse" else reference.target.shape[0]
            for k, j in enumerate(kept):
                out = _flat_real(_run(adapter, kept_blocks[k + 1 :], inputs[k], ctx), index)
                for start in range(0, out.shape[0], LOGIT_CHUNK_TOKENS):
                    chunk = slice(start, start + LOGIT_CHUNK_TOKENS)
                    sums[j] += reference.distance(adapter.logits(model, out[chunk]), chunk)
        if advance is not None:
            advance(step_block_runs(n, len(kept), metric))
    return sums, normaliser


def score_depth(
    model: nn.Module,
    batches: Iterable[torch.Tensor | Batch],
    metric: str = "mse",
    mode: str = "iterative",
    advance: Advance | None = None,
    iterations: int | None = None,
) -> dict[str, torch.Tensor]:
    """{"depth.scores": (n_blocks,), "depth.order": (n_blocks,) least important first}.

    `batches` is this rank's share; sums are reduced across ranks at every step, so every rank picks
    the same block. `advance(k)` is called once per batch per step with the k block runs it took.
    """
    check_choice("--depth", metric, DEPTH_METRICS)
    check_choice("--depth-mode", mode, DEPTH_MODES)
    if iterations is not None and iterations < 0:
        raise MinitronError(f"--depth-iterations must be 0 or more, got {iterations}")
    adapter = adapter_for(model)
    batches = as_batches(batches)
    n = len(adapter.blocks(model))
    scores = torch.zeros(n, dtype=torch.float64)
    kept, order = list(range(n)), []
    with eval_mode(model), torch.no_grad():
        while kept:
            sums, normaliser = _step_sums(model, adapter, batches, kept, metric, advance)
            all_reduce_sum_([sums, normaliser])
            step = (sums / normaliser.clamp(min=torch.finfo(torch.float64).tiny)).cpu()
            if mode == "one-shot":
                scores = step
                order = torch.sort(scores, stable=True).indices.tolist()
                break
            if iterations is not None and len(order) >= iterations:
                # the rest, one-shot on the reduced model: ascending score, ties by index
                rest = sorted(kept, key=lambda j: (step[j].item(), j))
                for j in rest:
                    scores[j] = step[j]
                order.extend(rest)
                break
            least = min(kept, key=lambda j: (step[j].item(), j))
            scores[least] = step[least]
            order.append(least)
            kept.remove(least)
    return {"depth.scores": scores.float(), "depth.order": torch.tensor(order, dtype=torch.int64)}


def depth_steps(n_blocks: int, mode: str, iterations: int | None = None) -> int:
    """How many passes over the calibration batches `score_depth` makes."""
    if mode == "one-shot":
        return 1
    return n_blocks if iterations is None else min(n_blocks, iterations + 1)


def step_block_runs(n_blocks: int, kept: int, metric: str) -> int:
    """Block runs of one step over one batch with `kept` blocks left: the reduced model once, the full
    model once more when reduced (the reference logits), and the suffix after each kept block."""
    runs = kept
    if metric != "cosine":
        runs += (n_blocks if kept < n_blocks else 0) + kept * (kept - 1) // 2
    return runs


def depth_block_runs(n_blocks: int, mode: str, metric: str, iterations: int | None = None) -> int:
    """Block runs per calibration batch of a whole `score_depth` (what its progress bar counts)."""
    steps = depth_steps(n_blocks, mode, iterations)
    return sum(step_block_runs(n_blocks, n_blocks - s, metric) for s in range(steps))
