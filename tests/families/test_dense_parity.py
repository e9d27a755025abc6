"""Pruned Llama-family models equal exact references built on the unpruned model (METHOD.md section 6):
identity, masking equals removal on every axis, depth equals skipping layers."""

from __future__ import annotations

import random

import pytest
import torch
from tiny_models import dense_reference, logits_of, prune_randomly

from minitron.importance.depth import score_depth
from minitron.importance.width import score_width
from minitron.prune.target import TargetSpec


def test_same_architecture_reproduces_logits_bit_exactly(dense, ids):
    arch, model = dense
    pruned, _ = prune_randomly(model, arch, TargetSpec())
    assert torch.equal(logits_of(pruned, ids), logits_of(model, ids))


@pytest.mark.parametrize(
    "spec",
    [
        TargetSpec(ffn=17),
        TargetSpec(attn_heads=2),
        TargetSpec(drop_blocks=(0, 2)),
        TargetSpec(hidden=20),
        TargetSpec(hidden=24, ffn=30, attn_heads=2, drop_blocks=(3,)),
    ],
    ids=["ffn17", "attn2", "drop0,2", "hidden20", "all"],
)
def test_masking_equals_removal(dense, ids, spec):
    arch, model = dense
    pruned, sel = prune_randomly(model, arch, spec)
    got = logits_of(pruned, ids)
    torch.testing.assert_close(got, logits_of(dense_reference(model, sel), ids))
    assert not torch.allclose(got, logits_of(model, ids), atol=1e-3)
    assert sum(p.numel() for p in pruned.parameters()) == sel.target.n_params
    if arch.tied_embeddings:
        assert pruned.lm_head.weight.data_ptr() == pruned.model.embed_tokens.weight.data_ptr()


@pytest.mark.parametrize("seed", [0, 1])
def test_random_targets(dense, ids, seed):
    arch, model = dense
    rng = random.Random(seed)
    heads = arch.kv_heads * rng.randint(1, arch.attn_heads // arch.kv_heads)
    spec = TargetSpec(
        hidden=heads * rng.randint(1, arch.hidden // heads),  # LlamaConfig wants a multiple of the heads
        ffn=rng.randint(1, arch.ffn),
        attn_heads=heads,
        drop_blocks=tuple(rng.sample(range(arch.n_blocks), rng.randint(0, 2))),
    )
    pruned, sel = prune_randomly(model, arch, spec, seed=seed)
    torch.testing.assert_close(logits_of(pruned, ids), logits_of(dense_reference(model, sel), ids))


def test_width_scores_read_the_right_activations(dense, ids):
    """ffn scores are the mean |act(gate) * up| per neuron, head scores the L2 of o_proj's input per head,
    hidden the sum over both pre-norms of every layer (batch of one: mean-l2 = the mean)."""
    arch, model = dense
    seen: dict[str, torch.Tensor] = {}

    def keep(name):
        return lambda m, args, out=None: seen.__setitem__(name, (args[0] if out is None else out).detach())

    handles = []
    for i, layer in enumerate(model.model.layers):
        handles.append(layer.mlp.down_proj.register_forward_pre_hook(keep(f"ffn.{i}")))
        handles.append(layer.self_attn.o_proj.register_forward_pre_hook(keep(f"attn.{i}")))
        handles.append(layer.input_layernorm.register_forward_hook(keep(f"h1.{i}")))
        handles.append(layer.post_attention_layernorm.register_forward_hook(keep(f"h2.{i}")))
    batch = ids[:1]
    with torch.no_grad():
        model(batch)
    for h in handles:
        h.remove()
    scores = score_width(model, [batch])
    for i in range(arch.n_blocks):
        torch.testing.assert_close(scores[f"ffn.{i}"], seen[f"ffn.{i}"].abs().mean(1)[0])
        per_head = seen[f"attn.{i}"].abs().mean(1)[0].view(arch.attn_heads, arch.head_dim).norm(dim=1)
        torch.testing.assert_close(scores[f"attn_heads.{i}"], per_head)
    hidden = sum(seen[f"{n}.{i}"].abs().mean(1)[0] for i in range(arch.n_blocks) for n in ("h1", "h2"))
    torch.testing.assert_close(scores["hidden"], hidden)
    assert set(scores) == {
        "hidden",
        *(f"{k}.{i}" for i in range(arch.n_blocks) for k in ("ffn", "attn_heads")),
    }


def test_depth_scores_are_whole_layers(dense, ids):
    """Depth scores one entry per layer; removing the least important one changes the logits least."""
    arch, model = dense
    out = score_depth(model, [ids], metric="mse", mode="one-shot")
    assert out["depth.scores"].shape == (arch.n_blocks,)
    full = logits_of(model, ids)
    errors = []
    for j in range(arch.n_blocks):
        pruned, _ = prune_randomly(model, arch, TargetSpec(drop_blocks=(j,)))
        errors.append(((logits_of(pruned, ids) - full) ** 2).sum().item() / (full**2).sum().item())
    torch.testing.assert_close(
        out["depth.scores"].double(), torch.tensor(errors, dtype=torch.float64), rtol=1e-4, atol=1e-7
    )
