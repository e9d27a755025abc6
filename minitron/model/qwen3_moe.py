"""The Qwen3-MoE family (Qwen3MoeForCausalLM): decoder layers whose MLP is a mixture of experts.

model.model.layers[i] = Qwen3MoeDecoderLayer(input_layernorm, self_attn, post_attention_layernorm,
mlp). Layer i is sparse (pattern `S`: attention then a mixture of experts) unless it is listed in
`mlp_only_layers` or `(i + 1) % decoder_sparse_step != 0`, which makes it dense (`D`: attention then
a SwiGLU MLP of `intermediate_size`, as in Qwen3). The attention half and the dense MLP are Qwen3's
(minitron.model.llama). A sparse layer's mlp (H = hidden, E = experts, I = expert FFN width):

    gate.weight          (E, H)       softmax router, top `num_experts_per_tok` (renormalised when
                                      norm_topk_prob)
    experts.gate_up_proj (E, 2I, H)   per expert [gate | up] rows (SwiGLU)
    experts.down_proj    (E, H, I)

Checkpoints on disk hold the experts unfused (experts.<e>.gate_proj / up_proj (I, H), down_proj (H, I));
transformers fuses them on load. No shared expert, no biases in the experts or the router.
"""

from __future__ import annotations

from typing import Any

from minitron.errors import MinitronError
from minitron.model.adapters import Axis, WidthHook
from minitron.model.arch import COMMON_CONFIG_KEYS, DENSE, MOE, SPARSE, Architecture, decode_special_floats
from minitron.model.llama import (
    _LAYER_AXES,
    LlamaFamily,
    attention_params,
    decoder_architecture,
    decoder_config,
)

# transformers 5.x Qwen3MoeConfig defaults for the fields read below (tests check them against it).
CONFIG_DEFAULTS: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 24,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": None,  # hidden // heads
    "tie_word_embeddings": False,
    "attention_bias": False,
    "decoder_sparse_step": 1,
    "moe_intermediate_size": 768,
    "num_experts_per_tok": 8,
    "num_experts": 128,
    "mlp_only_layers": [],
}


class Qwen3MoeFamily(LlamaFamily):
    """Qwen3's layers with sparse MLPs; runtime (embeddings, rotary, masks, final norm) as Llama's."""

    name = "Qwen3-MoE"
    model_types = ("qwen3_moe",)
    block_kinds = DENSE + SPARSE

    # ---- config -------------------------------------------------------------------------------
    def read_config(self, d: dict[str, Any]) -> Architecture:
        if d.get("use_sliding_window"):
            raise MinitronError(
                f"qwen3_moe: sliding-window attention (sliding_window={d.get('sliding_window')}) is not "
                "supported yet; only models whose every layer attends to the full context"
            )
        c = {**CONFIG_DEFAULTS, **{k: v for k, v in d.items() if v is not None}}
        experts = c.get("num_local_experts", c["num_experts"])
        dense = set(c["mlp_only_layers"])
        step = c["decoder_sparse_step"]
        pattern = "".join(
            SPARSE if i not in dense and experts > 0 and (i + 1) % step == 0 else DENSE
            for i in range(c["num_hidden_layers"])
        )
        moe = SPARSE in pattern
        owned = OWNED_CONFIG_KEYS | (MOE_CONFIG_KEYS if moe else frozenset())
        extra = {k: decode_special_floats(v) for k, v in d.items() if k not in owned}
        return decoder_architecture(
            c,
            pattern=pattern,
            attn_qkv_bias=bool(c["attention_bias"]),
            attn_out_bias=bool(c["attention_bias"]),
            qk_norm=True,
            experts=experts if moe else 0,
            experts_per_token=c["num_experts_per_tok"] if moe else 0,
            expert_ffn=c["moe_intermediate_size"] if moe else 0,
            model_type="qwen3_moe",
            extra=extra,
        )

    def write_config(self, arch: Architecture) -> dict[str, Any]:
        d = decoder_config(arch, "Qwen3MoeForCausalLM")
        d.update(
            attention_bias=arch.attn_out_bias,
            use_sliding_window=False,
            # Which layers are sparse, said explicitly: after dropping layers the step rule no longer holds.
            decoder_sparse_step=1,
            mlp_only_layers=arch.block_indices(DENSE),
        )
        if arch.has_part(MOE):
            d.update(
                num_experts=arch.experts,
                num_experts_per_tok=arch.experts_per_token,
                moe_intermediate_size=arch.expert_ffn,
            )
        return d

    def check(self, arch: Architecture) -> None:
        """Qwen3MoeConfig has no hidden/heads rule (head_dim is explicit) and no router groups."""

    def expert_params(self, arch: Architecture) -> int:
        return 3 * arch.hidden * arch.expert_ffn  # gate and up rows (2I, H) + down (H, I)

    def block_params(self, arch: Architecture, kind: str) -> int:
        if kind == DENSE:
            return super().block_params(arch, kind)
        if kind != SPARSE:
            raise MinitronError(f"Qwen3-MoE models have no {kind!r} blocks")
        # post_attention_layernorm, router, routed experts
        moe = arch.hidden + arch.experts * arch.hidden + arch.experts * self.expert_params(arch)
        return attention_params(arch) + moe

    # ---- tensor layout ------------------------------------------------------------------------
    def block_axes(self, arch: Architecture, kind: str, name: str) -> tuple[Axis, ...] | None:
        if kind == SPARSE and name.startswith("mlp."):
            return _SPARSE_MLP_AXES.get(name)
        return _LAYER_AXES.get(name)

    # ---- runtime ------------------------------------------------------------------------------
    def pattern(self, model):
        return "".join(SPARSE if hasattr(layer.mlp, "experts") else DENSE for layer in model.model.layers)

    def width_hooks(self, arch, kind, block):
        if kind == DENSE:
            return super().width_hooks(arch, kind, block)
        return [
            WidthHook("hidden", block.input_layernorm, "output"),
            WidthHook("attn_heads", block.self_attn.o_proj, "input"),
            WidthHook("hidden", block.post_attention_layernorm, "output"),
            WidthHook("experts", block.mlp.experts, "input"),
        ]

    def expert_forward(self, experts, expert, x):
        import torch.nn.functional as F

        gate, up = F.linear(x, experts.gate_up_proj[expert]).chunk(2, dim=-1)  # rows [gate | up]
        act = experts.act_fn(gate) * up
        return act, F.linear(act, experts.down_proj[expert])

    def start(self, model, input_ids, attention_mask=None):
        ctx = super().start(model, input_ids, attention_mask)
        ctx.block_kwargs[SPARSE] = ctx.block_kwargs[DENSE]
        return ctx

    def run_block(self, block, hidden, ctx):
        return block(hidden, **ctx.block_kwargs[DENSE])


_SPARSE_MLP_AXES: dict[str, tuple[Axis, ...]] = {
    "mlp.gate.weight": ("experts", "hidden"),
    "mlp.experts.gate_up_proj": ("experts", "expert_gate_up", "hidden"),
    "mlp.experts.down_proj": ("experts", "hidden", "expert_ffn"),
    # one expert's tensors, as checkpoints store them (experts.<e>.gate_proj.weight, ...)
    "mlp.experts.*.gate_proj.weight": ("expert_ffn", "hidden"),
    "mlp.experts.*.up_proj.weight": ("expert_ffn", "hidden"),
    "mlp.experts.*.down_proj.weight": ("hidden", "expert_ffn"),
}

# Config keys the Qwen3-MoE adapter owns (and rewrites); the rest ride along in `extra`.
OWNED_CONFIG_KEYS = COMMON_CONFIG_KEYS | {
    "attention_bias",
    "use_sliding_window",
    "decoder_sparse_step",
    "mlp_only_layers",
}
# ... and these when the model has sparse layers (num_local_experts: the alias transformers writes).
MOE_CONFIG_KEYS = frozenset(
    {"num_experts", "num_local_experts", "num_experts_per_tok", "moe_intermediate_size"}
)
