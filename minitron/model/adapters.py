"""Model families as adapters: everything that differs between NemotronH, Llama, Qwen, ... in one place.

A family adapter owns:

- its config: `read_config` (config.json dict -> Architecture) and `write_config` (the reverse);
- parameter counts per block type (`block_params`, `lm_head_params`);
- tensor layouts: which rows and columns of each tensor every prunable unit owns (`global_axes`,
  `block_axes`), packed layouts written once as `Segment` tuples (NemotronH's in_proj) and read by
  both scoring and slicing;
- where width importance is read (`width_hooks`) and how a block runs alone (`start`, `run_block`,
  `logits`) for depth scoring, search and distillation.

Algorithm modules (importance, search, prune, distill, memory) talk only to this interface, so a
family is added by writing one adapter module and listing it in `FAMILIES`. Importing this module
(or the family modules) does not import torch: `estimate` and weight-free `search` stay light.

Axis names of a tensor dimension (resolved against a prune Selection, per block):

    hidden       the residual-stream channels
    ffn          MLP neurons
    attn_q       query rows (kept heads x head_dim)
    mamba_x      Mamba d_inner channels (kept heads x kept head channels, head-major)
    mamba_heads  Mamba heads
    None         the dimension is kept whole
    (Segment, ...)  a packed dimension: the segments in order, each indexed by its own axis
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from minitron.errors import MinitronError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from minitron.model.arch import Architecture


@dataclass(frozen=True)
class Segment:
    """One part of a packed dimension: `size` entries, indexed by `axis` (None: kept whole)."""

    name: str
    size: int
    axis: str | None


Axis = str | None | tuple[Segment, ...]


def segment_slice(layout: tuple[Segment, ...], name: str) -> slice:
    """Where segment `name` sits in a packed dimension."""
    offset = 0
    for seg in layout:
        if seg.name == name:
            return slice(offset, offset + seg.size)
        offset += seg.size
    raise KeyError(name)


@dataclass(frozen=True)
class WidthHook:
    """Where a width score is read: `module`'s input (or output), optionally one slice of its last dim.

    `score` is the scores-file family of the unit: hidden, ffn, attn_heads, mamba, shared_ffn, or
    experts (the module is a fused experts module, its inputs the routing; see importance.width).
    """

    score: str
    module: Any
    read: str  # "input" or "output"
    channels: slice | None = None


@dataclass
class ForwardContext:
    """What every block needs besides the hidden states, computed once per batch."""

    hidden: Any  # (B, T, hidden) tensor: the embeddings, i.e. the input of block 0
    block_kwargs: dict[str, dict[str, Any]]  # per block pattern character


class Family:
    """The interface every family adapter implements (see the module docstring)."""

    name: str = ""
    model_types: tuple[str, ...] = ()
    block_kinds: str = ""  # pattern characters this family's models are made of
    vocab_tensors: tuple[str, ...] = ()  # names (suffixes) of the (vocab, hidden) tensors outside the blocks
    final_norm: str = ""  # name (suffix) of the final norm's weight

    # ---- config (torch-free) ------------------------------------------------------------------
    def read_config(self, d: dict[str, Any]) -> Architecture:
        raise NotImplementedError

    def write_config(self, arch: Architecture) -> dict[str, Any]:
        raise NotImplementedError

    def check(self, arch: Architecture) -> None:
        """Raise MinitronError for sizes this family's config class refuses (beyond the generic rules)."""

    def block_params(self, arch: Architecture, kind: str) -> int:
        raise NotImplementedError

    def buffer_elements(self, arch: Architecture) -> int:
        """Elements of the persistent buffers a checkpoint holds beside the parameters."""
        return 0

    def extra_weight_bytes(self, arch: Architecture, itemsize: int) -> int:
        """Checkpoint bytes beyond n_params x itemsize: persistent buffers and tensors transformers keeps
        in float32 whatever the model's dtype."""
        return 0

    def expert_params(self, arch: Architecture) -> int:
        """Parameters of one routed expert (what a token leaves out per expert it is not routed to)."""
        raise MinitronError(f"{self.name} models have no mixture-of-experts blocks")

    def ffn_unit_params(self, arch: Architecture) -> int:
        """Parameters one FFN neuron holds over all MLPs (n_params is linear in ffn with this slope)."""
        raise NotImplementedError

    def lm_head_params(self, arch: Architecture) -> int:
        """lm_head parameters: 0 when transformers ties it to the embeddings."""
        return 0 if arch.tied_embeddings else arch.vocab * arch.hidden

    # ---- tensor layout (torch-free) -----------------------------------------------------------
    def global_axes(self, arch: Architecture, key: str) -> tuple[Axis, ...] | None:
        """Axes of a tensor outside the blocks (embeddings, final norm, lm_head); None: unknown."""
        if key.endswith(self.vocab_tensors):
            return (None, "hidden")
        if self.final_norm and key.endswith(self.final_norm):
            return ("hidden",)
        return None

    def block_axes(self, arch: Architecture, kind: str, name: str) -> tuple[Axis, ...] | None:
        """Axes of tensor `name` (relative to its block) of a `kind` block; None: unknown."""
        raise NotImplementedError

    # ---- runtime (imports torch) --------------------------------------------------------------
    def blocks(self, model: nn.Module) -> nn.ModuleList:
        raise NotImplementedError

    def pattern(self, model: nn.Module) -> str:
        """The block pattern of a loaded model, read from its modules."""
        raise NotImplementedError

    def width_hooks(self, arch: Architecture, kind: str, block: nn.Module) -> list[WidthHook]:
        raise NotImplementedError

    def expert_forward(
        self, experts: nn.Module, expert: int, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One routed expert of a fused experts module on tokens x (n, H): (its down projection's input
        (n, expert_ffn), its output (n, H)), before the router's weight."""
        raise NotImplementedError

    def start(
        self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> ForwardContext:
        raise NotImplementedError

    def run_block(self, block: nn.Module, hidden: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        raise NotImplementedError

    def logits(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def after_load(self, model: nn.Module) -> None:
        """Called on every model minitron loads or builds (NemotronH: the fast Mamba scan on CPU)."""


FamilyAdapter = Family  # the name the algorithm modules use


def mask_arguments(config: Any, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> dict[str, Any]:
    """The arguments transformers' mask builders (create_causal_mask, ...) take for a cache-free forward
    from position 0: the same ones the models' own forward passes them, so a block run alone matches."""
    import torch

    position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
    return dict(
        config=config,
        inputs_embeds=hidden,
        attention_mask=attention_mask,
        cache=None,
        position_ids=position_ids,
    )


def _families() -> tuple[Family, ...]:
    from minitron.model.llama import LlamaFamily
    from minitron.model.nemotron_h import NemotronHFamily
    from minitron.model.qwen3_moe import Qwen3MoeFamily

    return (NemotronHFamily(), LlamaFamily(), Qwen3MoeFamily())


_REGISTRY: dict[str, Family] = {}


def _registry() -> dict[str, Family]:
    if not _REGISTRY:
        for family in _families():
            for t in family.model_types:
                _REGISTRY[t] = family
    return _REGISTRY


def family_for(model_type: str | None) -> Family:
    """The adapter of a config's `model_type`; one clear error for an unsupported one."""
    _registry()
    try:
        return _REGISTRY[model_type]  # type: ignore[index]
    except KeyError:
        raise MinitronError(
            f"unsupported architecture {model_type!r}; supported: {', '.join(supported_model_types())}"
        ) from None


def supported_model_types() -> list[str]:
    return list(_registry())


def adapter_for(model_or_arch: Any) -> Family:
    """The adapter of a transformers model or an Architecture."""
    from minitron.model.arch import Architecture

    if isinstance(model_or_arch, Architecture):
        return family_for(model_or_arch.model_type)
    return family_for(model_or_arch.config.model_type)
