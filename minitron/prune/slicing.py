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
_EXPERT_KEY = re.compile(r"^(?P<head>(?:.*\.)?experts\.)(?P<idx>\d+)\.(?P<rest>.+)$")


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
    rest, row = m["rest"], None
    # One routed expert's own tensor (checkpoints on disk keep experts unfused: experts.<e>.up_proj...):
    # gone with its expert, renumbered among the kept ones; its layout is the family's `experts.*.` entry.
    e = _EXPERT_KEY.match(rest)
    if e is not None and block in sel.experts:
        kept = sel.experts[block].tolist()
        expert = int(e["idx"])
        if expert not in kept:
            return None, ()
        row = kept.index(expert)
        rest = f"{e['head']}*.{e['rest']}"
        new_key = f"{m['prefix']}{sel.new_block_index[block]}.{e['head']}{row}.{e['rest']}"
    axes = family.block_axes(sel.source, kind, rest)
    if axes is None:
        raise MinitronError(f"don't know how to prune tensor '{key}' of a {kind!r} block")
    return new_key, _resolve(axes, ndim, key, sel, block, row)


def _resolve(
    axes: tuple[Axis, ...], ndim: int, key: str, sel: Selection, block: int | None, row: int | None = None
) -> Index:
    if len(axes) != ndim:
        raise MinitronError(f"tensor '{key}' has {ndim} dimensions, expected {len(axes)}")
    return tuple(_axis_index(axis, sel, block, row) for axis in axes)


def _axis_index(axis: Axis, sel: Selection, block: int | None, row: int | None = None) -> torch.Tensor | None:
    """`row`: the kept position of the one routed expert a tensor belongs to (None: all experts fused)."""
    if axis is None:
        return None
    if isinstance(axis, tuple):  # a packed dimension: each segment indexed on its own, offsets added
        parts, offset = [], 0
        for seg in axis:
            kept = _axis_index(seg.axis, sel, block, row)
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
    if axis == "experts":
        return sel.experts[block]
    if axis == "expert_ffn":
        if row is not None:
            return sel.expert_ffn[block][row]
        return sel.expert_ffn[block]  # 2-D: per kept expert (dim 0 of the tensor), its own neurons
    if axis == "expert_gate_up":
        return sel.expert_gate_up_rows(block)
    if axis == "shared_ffn":
        return sel.shared_ffn[block]
    raise MinitronError(f"unknown tensor axis {axis!r}")


def pruned_shape(index: Index, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(n if i is None else i.shape[-1] for i, n in zip(index, shape, strict=True))


def take(t: torch.Tensor, dim: int, i: torch.Tensor) -> torch.Tensor:
    """`t` restricted to indices `i` along `dim`: the same indices for every row (1-D `i`), or per row
    of dim 0 (2-D `i`, one row per row of `t`: each routed expert keeps its own neurons)."""
    if i.shape[-1] == t.shape[dim] and bool((i == torch.arange(t.shape[dim])).all()):
        return t
    if i.ndim == 1:
        return t.index_select(dim, i)
    # (rows, k) -> (rows, 1, .., k, .., 1) expanded to t's shape with dim `dim` of size k
    view = [i.shape[0]] + [1] * (t.ndim - 1)
    view[dim] = i.shape[1]
    size = list(t.shape)
    size[dim] = i.shape[1]
    return t.gather(dim, i.view(view).expand(size))


def slice_tensor(t: torch.Tensor, index: Index) -> torch.Tensor:
    """`t` with each dimension restricted to its kept indices (a new contiguous tensor); dim 0 first, so
    a 2-D index of a later dim lines up with the kept rows."""
    for dim, i in enumerate(index):
        if i is not None:
            t = take(t, dim, i)
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
