"""Per-family adapters: where a family keeps its blocks, norms and projections.

The algorithms (importance, pruning, depth scoring) speak only this Protocol, so a new family
(dense Llama: each decoder layer is the block pair `*-`) slots in by adding one adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from minitron.errors import MinitronError
from minitron.model.arch import _FROM_HF_BLOCK_TYPE, Architecture


@dataclass
class ForwardContext:
    """What every block needs besides the hidden states, computed once per batch."""

    hidden: torch.Tensor  # (B, T, hidden): the embeddings, i.e. the input of block 0
    block_kwargs: dict[str, dict[str, Any]]  # per block pattern character


class FamilyAdapter(Protocol):
    model_type: str

    def blocks(self, model: nn.Module) -> nn.ModuleList: ...
    def pattern(self, model: nn.Module) -> str: ...
    def pre_norm(self, block: nn.Module) -> nn.Module: ...
    def mixer(self, block: nn.Module) -> nn.Module: ...
    def embeddings(self, model: nn.Module) -> nn.Embedding: ...
    def final_norm(self, model: nn.Module) -> nn.Module: ...
    def lm_head(self, model: nn.Module) -> nn.Linear: ...
    def start(
        self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> ForwardContext: ...
    def run_block(self, block: nn.Module, hidden: torch.Tensor, ctx: ForwardContext) -> torch.Tensor: ...
    def logits(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor: ...


class NemotronHAdapter:
    """NemotronHForCausalLM: model.model.layers[i] = NemotronHBlock(norm, mixer)."""

    model_type = "nemotron_h"

    def blocks(self, model):
        return model.model.layers

    def pattern(self, model):
        return "".join(_FROM_HF_BLOCK_TYPE[b.block_type] for b in model.model.layers)

    def pre_norm(self, block):
        return block.norm

    def mixer(self, block):
        return block.mixer

    def embeddings(self, model):
        return model.model.embeddings

    def final_norm(self, model):
        return model.model.norm_f

    def lm_head(self, model):
        return model.lm_head

    def start(self, model, input_ids, attention_mask=None):
        from transformers.masking_utils import create_causal_mask, create_recurrent_attention_mask

        inner = model.model
        hidden = inner.embeddings(input_ids)
        position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        mask_kwargs = dict(
            config=inner.config,
            inputs_embeds=hidden,
            attention_mask=attention_mask,
            cache=None,
            position_ids=position_ids,
        )
        # The same masks NemotronHModel.forward builds, so a block run alone matches the full forward.
        causal = create_causal_mask(**mask_kwargs)
        recurrent = create_recurrent_attention_mask(**mask_kwargs)
        return ForwardContext(
            hidden=hidden,
            block_kwargs={
                "*": {"attention_mask": causal, "position_ids": position_ids},
                "M": {"attention_mask": recurrent},
                "-": {},
            },
        )

    def run_block(self, block, hidden, ctx):
        kind = _FROM_HF_BLOCK_TYPE[block.block_type]
        return block(hidden, **ctx.block_kwargs[kind])

    def logits(self, model, hidden):
        return model.lm_head(model.model.norm_f(hidden)).float()


ADAPTERS: dict[str, FamilyAdapter] = {"nemotron_h": NemotronHAdapter()}


def adapter_for(model_or_arch: nn.Module | Architecture) -> FamilyAdapter:
    model_type = (
        model_or_arch.model_type
        if isinstance(model_or_arch, Architecture)
        else model_or_arch.config.model_type
    )
    try:
        return ADAPTERS[model_type]
    except KeyError:
        raise MinitronError(
            f"unsupported architecture {model_type!r}; supported: {', '.join(ADAPTERS)}"
        ) from None
