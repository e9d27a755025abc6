"""Which rows and columns of every weight a Selection keeps, and slicing in memory.

`plan_tensor` maps one source tensor name to its pruned name (layer index renumbered) and one
index per dimension (`None` = keep the whole dimension). The streaming writer and the in-memory
`prune_state_dict` / `prune_model` both use it, so they cannot disagree.

NemotronH layouts (source sizes; H = hidden):
    embeddings.weight, lm_head.weight   (vocab, H)
    norm_f.weight, layers.i.norm.weight (H,)
    MLP        up_proj (ffn, H), down_proj (H, ffn)
    attention  q_proj (heads*head_dim, H), k_proj/v_proj (kv*head_dim, H), o_proj (H, heads*head_dim)
    Mamba      in_proj (rows, H) with rows ordered [z | x | B | C | dt] = [d_in | d_in | g*N | g*N | heads],
               conv1d.weight (d_in + 2*g*N, 1, kernel) ordered [x | B | C], A_log/D/dt_bias (heads,),
               norm.weight (d_in,), out_proj (H, d_in)             (d_in = heads * head_dim)
"""

from __future__ import annotations

import re

import torch

from minitron.errors import MinitronError
from minitron.importance.scores import Scores
from minitron.model.arch import ATTENTION, MAMBA, MLP, Architecture
from minitron.prune.select import Selection, select_units
from minitron.prune.target import TargetSpec, resolve_target

Index = tuple[torch.Tensor | None, ...]

_LAYER_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?layers\.)(?P<idx>\d+)\.(?P<rest>.+)$")


def plan_tensor(key: str, ndim: int, sel: Selection) -> tuple[str | None, Index]:
    """(pruned key, per-dim indices) of source tensor `key`; the key is None when its block is dropped."""
    h = sel.hidden
    m = _LAYER_KEY.match(key)
    if m is None:
        if key.endswith(("embeddings.weight", "lm_head.weight")):
            return key, (None, h)
        if key.endswith("norm_f.weight"):
            return key, (h,)
        raise MinitronError(f"don't know how to prune tensor '{key}' (not a NemotronH weight)")
    block = int(m["idx"])
    if block not in sel.new_block_index:
        if block >= sel.source.n_blocks:
            raise MinitronError(
                f"tensor '{key}' belongs to block {block}, the config has {sel.source.n_blocks}"
            )
        return None, ()
    new_key = f"{m['prefix']}{sel.new_block_index[block]}.{m['rest']}"
    rest, kind = m["rest"], sel.source.pattern[block]
    index = _block_index(rest, kind, block, sel)
    if index is None:
        raise MinitronError(f"don't know how to prune tensor '{key}' of a {kind!r} block")
    if len(index) != ndim:
        raise MinitronError(f"tensor '{key}' has {ndim} dimensions, expected {len(index)}")
    return new_key, index


def _block_index(rest: str, kind: str, block: int, sel: Selection) -> Index | None:
    h = sel.hidden
    if rest == "norm.weight":
        return (h,)
    if kind == MLP:
        f = sel.ffn[block]
        return {
            "mixer.up_proj.weight": (f, h),
            "mixer.up_proj.bias": (f,),
            "mixer.down_proj.weight": (h, f),
            "mixer.down_proj.bias": (h,),
        }.get(rest)
    if kind == ATTENTION:
        q = sel.attn_q_rows(block)
        return {
            "mixer.q_proj.weight": (q, h),
            "mixer.k_proj.weight": (None, h),  # KV heads are never removed
            "mixer.v_proj.weight": (None, h),
            "mixer.o_proj.weight": (h, q),
        }.get(rest)
    if kind == MAMBA:
        src = sel.source
        x = sel.mamba_x_channels(block)
        heads = sel.mamba_heads[block]
        d_in, bc = src.mamba_inner, 2 * src.mamba_groups * src.ssm_state
        bc_rows = torch.arange(bc)
        # in_proj rows: [z | x | B | C | dt]; B and C are shared per group and stay whole.
        in_rows = torch.cat([x, d_in + x, 2 * d_in + bc_rows, 2 * d_in + bc + heads])
        # conv1d channels: [x | B | C]
        conv = torch.cat([x, d_in + bc_rows])
        return {
            "mixer.in_proj.weight": (in_rows, h),
            "mixer.in_proj.bias": (in_rows,),
            "mixer.conv1d.weight": (conv, None, None),
            "mixer.conv1d.bias": (conv,),
            "mixer.A_log": (heads,),
            "mixer.D": (heads,),
            "mixer.dt_bias": (heads,),
            "mixer.norm.weight": (x,),
            "mixer.out_proj.weight": (h, x),
            "mixer.out_proj.bias": (h,),
        }.get(rest)
    return None


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
    """A new in-memory NemotronH model of `sel.target` holding the kept weights (the source is untouched).

    The model is built from the target config on the meta device and the pruned tensors are assigned
    to it, so its blocks carry fresh layer indices (caching works) and nothing is initialised twice.
    """
    from transformers import AutoModelForCausalLM

    config = sel.target.to_hf_config()
    config._attn_implementation = model.config._attn_implementation
    with torch.device("meta"):
        pruned = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    pruned.load_state_dict(prune_state_dict(model.state_dict(), sel), strict=True, assign=True)
    return pruned.eval()


def prune_to(model: torch.nn.Module, spec: TargetSpec, scores: Scores | None) -> torch.nn.Module:
    """In-memory pruning in one call (for search and compare): `model` pruned to `spec`, ranked by `scores`."""
    source = Architecture.from_hf_config(model.config)
    return prune_model(model, select_units(source, resolve_target(source, spec, scores), scores))
