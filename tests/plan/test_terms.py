"""The activation terms against what autograd really keeps: saved tensors of single blocks, counted."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_models import TINY, dense_arch, moe_arch

from minitron.model.adapters import adapter_for
from minitron.model.arch import Architecture
from minitron.model.load import build_model
from minitron.plan import terms


def saved_elements(arch: Architecture, tokens: tuple[int, int] = (2, 64)) -> dict[str, float]:
    """Float32 elements each block kind keeps for its backward, per token (parameters left out)."""
    model = build_model(arch, seed=0).train()
    adapter = adapter_for(model)
    ids = torch.randint(0, arch.vocab, tokens, generator=torch.Generator().manual_seed(0))
    ctx = adapter.start(model, ids, None)
    out = {}
    for block, kind in zip(adapter.blocks(model), arch.pattern, strict=True):
        if kind in out:
            continue
        storages: dict[int, int] = {}

        def pack(t, storages=storages):
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
            return t

        x = ctx.hidden.detach().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            adapter.run_block(block, x, ctx)
        params = {p.untyped_storage().data_ptr() for p in block.parameters()}
        out[kind] = sum(n for ptr, n in storages.items() if ptr not in params) / 4 / ids.numel()
    return out


def nemotron(hidden: int, heads: int, head_dim: int, groups: int, state: int, chunk: int) -> Architecture:
    return dataclasses.replace(
        TINY, pattern="M-*", hidden=hidden, ffn=4 * hidden, attn_heads=hidden // 32, kv_heads=1, head_dim=32,
        mamba_heads=heads, mamba_head_dim=head_dim, mamba_groups=groups, ssm_state=state,
        extra={**TINY.extra, "chunk_size": chunk},
    )  # fmt: skip


@pytest.mark.parametrize(
    "arch",
    [nemotron(64, 8, 16, 2, 16, 16), nemotron(128, 8, 32, 4, 32, 32), nemotron(96, 12, 16, 4, 64, 16)],
    ids=["h64", "h128", "h96-state64"],
)
def test_saved_elements_per_token_match_autograd(arch):
    measured = saved_elements(arch)
    for kind, elements in measured.items():
        planned = terms.saved_elements_per_token(arch, kind)
        assert planned == pytest.approx(elements, rel=0.08), kind


def test_dense_layer_counts_a_gated_mlp():
    arch = dense_arch("llama")
    assert terms.mlp_matrices(arch) == 3
    measured = saved_elements(arch, (2, 32))
    # Llama's rotary embedding keeps rotated copies of q and k the count leaves out: within 25%.
    assert terms.saved_elements_per_token(arch, "D") == pytest.approx(measured["D"], rel=0.25)


def test_checkpointing_keeps_block_inputs_and_one_block():
    arch = nemotron(128, 8, 32, 4, 32, 32)
    full = terms.activation_bytes(arch, 1000, "fp32", checkpointing=False)
    ckpt = terms.activation_bytes(arch, 1000, "fp32", checkpointing=True)
    per_block = [terms.block_activation_bytes(arch, k, 1000, "fp32") for k in arch.pattern]
    assert full == pytest.approx(sum(per_block))
    assert ckpt == pytest.approx(arch.n_blocks * 1000 * arch.hidden * 4 + max(per_block))
    assert terms.activation_bytes(arch, 1000, "bf16", False) < full  # bf16 halves all but the Mamba scan


def test_narrowed_params_are_what_prune_shared_copies():
    source = TINY
    assert terms.narrowed_params(source, source.drop_blocks([1])) == 0  # depth only: every tensor is a view
    ffn_only = source.with_sizes(ffn=32)
    assert terms.narrowed_params(source, ffn_only) == ffn_only.count("-") * ffn_only.block_params("-")
    assert (
        terms.narrowed_params(source, source.with_sizes(hidden=16)) == source.with_sizes(hidden=16).n_params
    )
    # Every axis of the table counts: fewer routed experts copy the MoE blocks (and only them).
    moe = moe_arch("nemotron_h")
    fewer = moe.with_sizes(experts=4)
    assert terms.narrowed_params(moe, fewer) == fewer.count("E") * fewer.block_params("E") > 0
