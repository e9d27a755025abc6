"""Pruned logits equal exact references built on the unpruned model (METHOD.md section 6)."""

from __future__ import annotations

import random

import pytest
import torch
from prune_helpers import random_scores, randomize_, reference_model

from minitron.model.arch import Architecture
from minitron.model.load import build_model
from minitron.prune.select import select_units
from minitron.prune.slicing import prune_model, prune_to
from minitron.prune.target import TargetSpec, resolve_target


def _prune(model, arch: Architecture, spec: TargetSpec, seed: int = 0):
    scores = random_scores(arch, seed=seed)
    sel = select_units(arch, resolve_target(arch, spec, scores), scores)
    return prune_model(model, sel), sel


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def test_same_architecture_reproduces_logits_bit_exactly(tiny_model, tiny_arch, token_batch):
    pruned, _ = _prune(tiny_model, tiny_arch, TargetSpec())
    assert torch.equal(_logits(pruned, token_batch), _logits(tiny_model, token_batch))


def test_explicit_full_sizes_are_identity_too(tiny_model, tiny_arch, token_batch):
    full = TargetSpec(hidden=32, ffn=64, attn_heads=4, mamba_heads=8, mamba_head_dim=4, layers=8)
    pruned, _ = _prune(tiny_model, tiny_arch, full)
    assert torch.equal(_logits(pruned, token_batch), _logits(tiny_model, token_batch))


@pytest.mark.parametrize(
    "spec",
    [
        TargetSpec(ffn=37),
        TargetSpec(ffn=1),
        TargetSpec(attn_heads=2),
        TargetSpec(drop_blocks=(0, 5)),
        TargetSpec(drop_blocks=(2,)),
    ],
    ids=["ffn37", "ffn1", "attn2", "drop0,5", "drop-attn"],
)
def test_ffn_heads_and_depth_equal_zeroing_or_skipping(tiny_model, tiny_arch, token_batch, spec):
    pruned, sel = _prune(tiny_model, tiny_arch, spec)
    reference = reference_model(tiny_model, sel)  # zeroed up_proj rows / o_proj columns, skipped blocks
    got = _logits(pruned, token_batch)
    torch.testing.assert_close(got, _logits(reference, token_batch))
    assert not torch.allclose(got, _logits(tiny_model, token_batch), atol=1e-3)


@pytest.mark.parametrize(
    "spec",
    [TargetSpec(mamba_heads=4), TargetSpec(mamba_head_dim=3), TargetSpec(mamba_heads=6, mamba_head_dim=2)],
    ids=["heads4", "head_dim3", "heads6xdim2"],
)
def test_mamba_equals_mixer_with_norm_over_kept_channels(tiny_model, tiny_arch, token_batch, spec):
    pruned, sel = _prune(tiny_model, tiny_arch, spec)
    got = _logits(pruned, token_batch)
    torch.testing.assert_close(got, _logits(reference_model(tiny_model, sel), token_batch))
    # Negative control: plain zeroing keeps the removed channels in the gated norm's mean -> different.
    zeroed = _logits(reference_model(tiny_model, sel, zero_only=True), token_batch)
    assert not torch.allclose(got, zeroed, atol=1e-4)


def test_hidden_equals_every_rmsnorm_over_kept_channels(tiny_model, tiny_arch, token_batch):
    pruned, sel = _prune(tiny_model, tiny_arch, TargetSpec(hidden=21))
    torch.testing.assert_close(
        _logits(pruned, token_batch), _logits(reference_model(tiny_model, sel), token_batch)
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_targets_on_every_axis_at_once(tiny_model, tiny_arch, token_batch, seed):
    rng = random.Random(seed)
    a = tiny_arch
    spec = TargetSpec(
        hidden=rng.randint(4, a.hidden),
        ffn=rng.randint(1, a.ffn),
        attn_heads=a.kv_heads * rng.randint(1, a.attn_heads // a.kv_heads),
        mamba_heads=a.mamba_groups * rng.randint(1, a.mamba_heads // a.mamba_groups),
        mamba_head_dim=rng.randint(1, a.mamba_head_dim),
        drop_blocks=tuple(rng.sample(range(a.n_blocks), rng.randint(0, 3))),
    )
    pruned, sel = _prune(tiny_model, a, spec, seed=seed)
    torch.testing.assert_close(
        _logits(pruned, token_batch), _logits(reference_model(tiny_model, sel), token_batch)
    )
    assert sum(p.numel() for p in pruned.parameters()) == sel.target.n_params


def test_random_tiny_models_of_other_shapes(token_batch):
    # Three Mamba groups, 3 KV heads, MLP-free start: the group-aware rules on other group counts.
    arch = Architecture(
        pattern="*M-M*-",
        hidden=24,
        ffn=30,
        attn_heads=6,
        kv_heads=3,
        head_dim=4,
        mamba_heads=9,
        mamba_head_dim=5,
        mamba_groups=3,
        ssm_state=4,
        conv_kernel=3,
        vocab=97,
        extra={"chunk_size": 8, "layer_norm_epsilon": 1e-5},
    )
    model = randomize_(build_model(arch, seed=5), seed=5)
    spec = TargetSpec(hidden=17, ffn=11, attn_heads=3, mamba_heads=6, mamba_head_dim=3, drop_blocks=(2,))
    pruned, sel = _prune(model, arch, spec, seed=7)
    torch.testing.assert_close(
        _logits(pruned, token_batch), _logits(reference_model(model, sel), token_batch)
    )
    assert sum(p.numel() for p in pruned.parameters()) == sel.target.n_params


def test_kept_heads_are_balanced_per_group(tiny_arch):
    scores = random_scores(tiny_arch, seed=11)
    spec = TargetSpec(attn_heads=2, mamba_heads=4, mamba_head_dim=2)
    sel = select_units(tiny_arch, resolve_target(tiny_arch, spec, scores), scores)
    for heads in sel.attn_heads.values():  # 4 query heads, 2 KV groups of 2
        assert sorted((heads // 2).tolist()) == [0, 1]
    for heads in sel.mamba_heads.values():  # 8 heads, 2 groups of 4
        assert sorted((heads // 4).tolist()) == [0, 0, 1, 1]
        assert torch.equal(heads, heads.sort().values)


def test_prune_to_is_the_one_call_in_memory_path(tiny_model, tiny_arch, token_batch):
    spec = TargetSpec(hidden=20, ffn=30, mamba_heads=4, drop_blocks=(3,))
    scores = random_scores(tiny_arch, seed=2)
    expected, _ = _prune(tiny_model, tiny_arch, spec, seed=2)
    got = prune_to(tiny_model, spec, scores)
    assert torch.equal(_logits(got, token_batch), _logits(expected, token_batch))
