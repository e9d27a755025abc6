"""Which rows and columns of every weight a Selection keeps, and slicing in memory.

`plan_tensor` maps one source tensor name to its pruned name (layer index renumbered) and one
index per dimension (`None` = keep the whole dimension). The streaming writer and the in-memory
`prune_state_dict` / `prune_model` both use it, so they cannot disagree.

Which unit owns which rows and columns is the model family's layout (its adapter's `global_axes`
and `block_axes`, minitron.model.adapters); this module only resolves those axis names against the
Selection of one block.
"""

from __future__ import annotations

import re

import torch

from minitron.errors import MinitronError
from minitron.importance.scores import Scores
from minitron.model.adapters import Axis
from minitron.model.arch import Architecture
from minitron.prune.select import Selection, select_units
from minitron.prune.target import TargetSpec, resolve_target

Index = tuple[torch.Tensor | None, ...]

_LAYER_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?layers\.)(?P<idx>\d+)\.(?P<rest>.+)$")


def plan_tensor(key: str, ndim: int, sel: Selection) -> tuple[str | None, Index]:
    """(pruned key, per-dim indices) of source tensor `key`; the key is None when its block is dropped."""
    family = sel.source.family
    m = _LAYER_KEY.match(key)
    if m is None:
        axes = family.global_axes(sel.source, key)
        if axes is None:
            raise MinitronError(f"don't know how to prune tensor '{key}' (not a {family.name} weight)")
        return key, _resolve(axes, ndim, key, sel, None)
    block = int(m["idx"])
    if block not in sel.new_block_index:
        if block >= sel.source.n_blocks:
            raise MinitronError(
                f"tensor '{key}' belongs to block {block}, the config has {sel.source.n_blocks}"
            )
        return None, ()
    new_key = f"{m['prefix']}{sel.new_block_index[block]}.{m['rest']}"
    kind = sel.source.pattern[block]
    axes = family.block_axes(sel.source, kind, m["rest"])
    if axes is None:
        raise MinitronError(f"don't know how to prune tensor '{key}' of a {kind!r} block")
    return new_key, _resolve(axes, ndim, key, sel, block)


def _resolve(axes: tuple[Axis, ...], ndim: int, key: str, sel: Selection, block: int | None) -> Index:
    if len(axes) != ndim:
        raise MinitronError(f"tensor '{key}' has {ndim} dimensions, expected {len(axes)}")
    return tuple(_axis_index(axis, sel, block) for axis in axes)


def _axis_index(axis: Axis, sel: Selection, block: int | None) -> torch.Tensor | None:
    if axis is None:
        return None
    if isinstance(axis, tuple):  # a packed dimension: each segment indexed on its own, offsets added
        parts, offset = [], 0
        for seg in axis:
            kept = _axis_index(seg.axis, sel, block)
            parts.append(offset + (torch.arange(seg.size) if kept is None else kept))
            offset += seg.size
        return torch.cat(parts)
    if axis == "hidden":
        return sel.hidden
    assert block is not None, f"axis {axis!r} outside a block"
    if axis == "ffn":
        return sel.ffn[block]
    if axis == "attn_q":
        return sel.attn_q_rows(block)
    if axis == "mamba_x":
        return sel.mamba_x_channels(block)
    if axis == "mamba_heads":
        return sel.mamba_heads[block]
    raise MinitronError(f"unknown tensor axis {axis!r}")


def pruned_shape(index: Index, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(n if i is None else i.numel() for i, n in zip(index, shape, strict=True))


def slice_tensor(t: torch.Tensor, index: Index) -> torch.Tensor:
    """`t` with each dimension restricted to its kept indices (a new contiguous tensor)."""
    for dim, i in enumerate(index):
        if i is not None and not (
            i.numel() == t.shape[dim] and bool((i == torch.arange(t.shape[dim])).all())
        ):
            t = t.index_select(dim, i)
    return t.contiguous()


def prune_state_dict(state: dict[str, torch.Tensor], sel: Selection) -> dict[str, torch.Tensor]:
    """The pruned state dict (new tensors; the source is left untouched)."""
    out = {}
    for key, t in state.items():
        new_key, index = plan_tensor(key, t.ndim, sel)
        if new_key is not None:
            sliced = slice_tensor(t, index)
            out[new_key] = sliced.clone() if sliced.data_ptr() == t.data_ptr() else sliced
    return out


def prune_model(model: torch.nn.Module, sel: Selection) -> torch.nn.Module:
    """A new in-memory model of `sel.target` holding the kept weights (the source is untouched).

    The model is built from the target config on the meta device and the pruned tensors are assigned
    to it, so its blocks carry fresh layer indices (caching works) and nothing is initialised twice.
    """
    return assemble(model, sel, prune_state_dict(model.state_dict(), sel))


def assemble(model: torch.nn.Module, sel: Selection, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A model of `sel.target` built on the meta device with `state` (pruned tensors) assigned to it."""
    from transformers import AutoModelForCausalLM

    config = sel.target.to_hf_config()
    config._attn_implementation = model.config._attn_implementation
    with torch.device("meta"):
        pruned = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    pruned.load_state_dict(state, strict=True, assign=True)
    _fill_meta_buffers(pruned, model)
    if sel.target.tied_embeddings and sel.target.family.lm_head_params(sel.target) == 0:
        pruned.tie_weights()  # assign=True replaced the shared tensor with two copies
    return pruned.eval()


def _fill_meta_buffers(pruned: torch.nn.Module, source: torch.nn.Module) -> None:
    """Non-persistent buffers (rotary inv_freq) are not in any state dict: the meta-built model gets the
    source's, which pruning never changes (they depend on head_dim and the rope settings only)."""
    have = dict(source.named_buffers())
    for name, buf in list(pruned.named_buffers()):
        if not buf.is_meta:
            continue
        src = have.get(name)
        if src is None or src.shape != buf.shape:
            raise MinitronError(f"cannot build the pruned model: buffer '{name}' has no source to copy")
        owner, _, attr = name.rpartition(".")
        pruned.get_submodule(owner).register_buffer(attr, src, persistent=False)


def prune_to(model: torch.nn.Module, spec: TargetSpec, scores: Scores | None) -> torch.nn.Module:
    """In-memory pruning in one call (for search and compare): `model` pruned to `spec`, ranked by `scores`."""
    source = Architecture.from_hf_config(model.config)
    return prune_model(model, select_units(source, resolve_target(source, spec, scores), scores))
