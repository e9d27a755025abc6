"""The search objective: a candidate pruned in memory, scored against the cached teacher.

A candidate shares every tensor it does not narrow with the teacher (an untouched axis is a view of
the same storage, not a copy), so building one costs the slices it changes plus an empty module
tree on the meta device. It then runs once over the cached evaluation batches:

    kl       mean over evaluation tokens of KL(teacher || candidate), the teacher known by its
             top-k (+ the rest mass), `minitron.distill.losses.topk_kl`
    lm-loss  mean next-token cross-entropy on the same tokens

Candidate logits are computed LOGIT_CHUNK_TOKENS tokens at a time.
"""

from __future__ import annotations

import torch
from torch import nn

from minitron.distill.losses import topk_kl
from minitron.importance.depth import LOGIT_CHUNK_TOKENS
from minitron.importance.scores import Scores
from minitron.model.adapters import adapter_for
from minitron.model.arch import Architecture
from minitron.prune.select import select_units
from minitron.prune.slicing import assemble, plan_tensor, slice_tensor
from minitron.prune.target import TargetSpec, resolve_target
from minitron.search.teacher_cache import TeacherCache

OBJECTIVES = ("kl", "lm-loss")


def prune_shared(model: nn.Module, spec: TargetSpec, scores: Scores | None) -> nn.Module:
    """`model` pruned to `spec` in memory; tensors the pruning leaves whole are shared, not copied.

    The result must not be trained or modified in place (it would change the teacher).
    """
    source = Architecture.from_hf_config(model.config)
    sel = select_units(source, resolve_target(source, spec, scores), scores)
    state = {}
    for key, tensor in model.state_dict().items():
        new_key, index = plan_tensor(key, tensor.ndim, sel)
        if new_key is not None:
            state[new_key] = slice_tensor(tensor, index)  # the same tensor when nothing is removed
    return assemble(model, sel, state)


@torch.no_grad()
def evaluate(candidate: nn.Module, cache: TeacherCache, objective: str = "kl") -> float:
    """Mean per-token `objective` of `candidate` over the cached batches (lower is better)."""
    adapter = adapter_for(candidate)
    device = next(candidate.parameters()).device
    total, count = torch.zeros((), dtype=torch.float64), 0
    for b, ids in enumerate(cache.ids):
        ids = ids.to(device)
        ctx = adapter.start(candidate, ids, None)
        hidden = ctx.hidden
        for block in adapter.blocks(candidate):
            hidden = adapter.run_block(block, hidden, ctx)
        if objective == "kl":
            flat = hidden.reshape(-1, hidden.shape[-1])  # (B*T, H)
            logprobs = cache.logprobs[b].reshape(flat.shape[0], -1).to(device)
            index = cache.index[b].reshape(flat.shape[0], -1).to(device)
            for start in range(0, flat.shape[0], LOGIT_CHUNK_TOKENS):
                chunk = slice(start, start + LOGIT_CHUNK_TOKENS)
                logits = adapter.logits(candidate, flat[chunk])
                total += topk_kl(logits, logprobs[chunk], index[chunk]).double().sum().cpu()
            count += flat.shape[0]
        else:
            flat = hidden[:, :-1].reshape(-1, hidden.shape[-1])  # position t predicts token t + 1
            labels = ids[:, 1:].reshape(-1)
            for start in range(0, flat.shape[0], LOGIT_CHUNK_TOKENS):
                chunk = slice(start, start + LOGIT_CHUNK_TOKENS)
                logits = adapter.logits(candidate, flat[chunk])
                loss = torch.nn.functional.cross_entropy(logits, labels[chunk], reduction="sum")
                total += loss.double().cpu()
            count += flat.shape[0]
    return float(total / max(count, 1))
