"""Targets: the Nano 2 9B is reachable from the 12B description; shapes planned on the meta device."""

from __future__ import annotations

import pytest
from prune_helpers import random_scores

from minitron.errors import MinitronError
from minitron.model.load import build_model, resolve_model
from minitron.prune.select import select_units
from minitron.prune.slicing import plan_tensor, pruned_shape
from minitron.prune.target import TargetSpec, parse_block_list, resolve_target

NANO_12B, NANO_9B = "nemotron-nano-12b-v2-base", "nemotron-nano-9b-v2"


def _blocks_removed(big: str, small: str) -> tuple[int, ...]:
    """Indices of `big` left out when `small` is matched into it greedily as a subsequence."""
    removed, j = [], 0
    for i, c in enumerate(big):
        if j < len(small) and c == small[j]:
            j += 1
        else:
            removed.append(i)
    assert j == len(small), "not a subsequence"
    return tuple(removed)


def _nano2_spec() -> TargetSpec:
    big = resolve_model(NANO_12B).architecture
    small = resolve_model(NANO_9B).architecture
    return TargetSpec(
        hidden=4480,
        ffn=15680,
        mamba_heads=128,
        mamba_head_dim=80,
        attn_heads=40,
        drop_blocks=_blocks_removed(big.pattern, small.pattern),
    )


def test_nano2_9b_is_reachable_from_the_12b_description():
    big = resolve_model(NANO_12B).architecture
    nano9 = resolve_model(NANO_9B).architecture
    spec = _nano2_spec()
    assert len(spec.drop_blocks) == 6
    target = resolve_target(big, spec, random_scores(big))
    assert target.arch.pattern == nano9.pattern and target.arch.n_blocks == 56
    assert target.arch.n_params == nano9.n_params == 8_888_227_328
    assert target.arch.summary() == nano9.summary()


def test_nano2_planned_shapes_equal_a_meta_model_of_the_target():
    big = resolve_model(NANO_12B).architecture
    scores = random_scores(big)
    target = resolve_target(big, _nano2_spec(), scores)
    sel = select_units(big, target, scores)
    source = build_model(big, device="meta").state_dict()
    expected = {k: tuple(v.shape) for k, v in build_model(target.arch, device="meta").state_dict().items()}
    planned = {}
    for key, t in source.items():
        new_key, index = plan_tensor(key, t.ndim, sel)
        if new_key is not None:
            planned[new_key] = pruned_shape(index, tuple(t.shape))
    assert planned == expected
    assert sum(_numel(s) for s in planned.values()) == target.arch.n_params


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def test_target_rules_name_the_nearest_legal_values():
    big = resolve_model(NANO_12B).architecture
    with pytest.raises(
        MinitronError,
        match="Mamba heads \\(100\\) must be a multiple of Mamba groups \\(8\\); nearest legal: 96 or 104",
    ):
        resolve_target(big, TargetSpec(mamba_heads=100), None)
    with pytest.raises(MinitronError, match="nearest legal: 32 or 40"):
        resolve_target(big, TargetSpec(attn_heads=36), None)
    with pytest.raises(MinitronError, match="hidden 6000 > source 5120"):
        resolve_target(big, TargetSpec(hidden=6000), None)


def test_any_integer_width_is_allowed():
    big = resolve_model(NANO_12B).architecture
    target = resolve_target(big, TargetSpec(hidden=4477, ffn=15679, mamba_head_dim=79), None)
    assert (target.arch.hidden, target.arch.ffn, target.arch.mamba_head_dim) == (4477, 15679, 79)


def test_block_lists_and_flag_errors():
    assert parse_block_list("3, 17,20") == (3, 17, 20)
    with pytest.raises(MinitronError, match="--drop-blocks takes comma-separated"):
        parse_block_list("3;17")
    with pytest.raises(MinitronError, match="--hidden must be a positive integer"):
        TargetSpec(hidden=0)
    with pytest.raises(MinitronError, match="either --layers or --drop-blocks"):
        TargetSpec(layers=4, drop_blocks=(1,))
