"""The dense Llama family: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM.

model.model.layers[i] = DecoderLayer(input_layernorm, self_attn, post_attention_layernorm, mlp); a
layer is one `D` block (attention then MLP), the unit of depth pruning. Tensor layouts (H = hidden):

    model.embed_tokens.weight, lm_head.weight (vocab, H)     lm_head absent when tied
    model.norm.weight, layers.i.{input,post_attention}_layernorm.weight (H,)
    self_attn  q_proj (heads*head_dim, H) [+ bias], k_proj/v_proj (kv*head_dim, H) [+ bias],
               o_proj (H, heads*head_dim) [+ bias], q_norm/k_norm (head_dim,) (Qwen3)
    mlp        gate_proj, up_proj (ffn, H) [+ bias], down_proj (H, ffn) [+ bias]   (SwiGLU)

Which biases exist: Llama's `attention_bias` puts them on q, k, v and o, its `mlp_bias` on the MLP;
Qwen2 always has q/k/v biases and never an o bias; Qwen3's `attention_bias` covers q, k, v and o;
Mistral has none. Query heads are pruned inside their KV groups; KV heads and head_dim stay.
Sliding-window attention is refused: its KV cache is bounded by the window, which the memory model
does not count yet.
"""

from __future__ import annotations

from typing import Any

from minitron.errors import MinitronError
from minitron.model.adapters import Axis, Family, ForwardContext, WidthHook, mask_arguments
from minitron.model.arch import COMMON_CONFIG_KEYS, DENSE, Architecture, decode_special_floats

HF_CLASSES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "mistral": "MistralForCausalLM",
}

# transformers 5.x config defaults for the fields read below (tests check them against the classes).
# None for num_key_value_heads / head_dim means "as many as query heads" / "hidden // heads".
_COMMON = {
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "head_dim": None,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "mlp_bias": False,
}
CONFIG_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {**_COMMON, "vocab_size": 32000, "intermediate_size": 11008, "num_key_value_heads": None},
    "qwen2": {**_COMMON, "vocab_size": 151936, "intermediate_size": 22016, "num_key_value_heads": 32},
    "qwen3": {
        **_COMMON,
        "vocab_size": 151936,
        "intermediate_size": 22016,
        "num_key_value_heads": 32,
        "head_dim": 128,
    },
    "mistral": {**_COMMON, "vocab_size": 32000, "intermediate_size": 14336, "num_key_value_heads": 8},
}
# Mistral's config slides its window unless config.json says `"sliding_window": null`.
MISTRAL_DEFAULT_SLIDING_WINDOW = 4096


class LlamaFamily(Family):
    name = "Llama"
    model_types = tuple(HF_CLASSES)
    vocab_tensors = ("embed_tokens.weight", "lm_head.weight")
    final_norm = "norm.weight"
    block_kinds = DENSE

    # ---- config -------------------------------------------------------------------------------
    def read_config(self, d: dict[str, Any]) -> Architecture:
        model_type = d["model_type"]
        _refuse_sliding_window(d, model_type)
        extra = {k: decode_special_floats(v) for k, v in d.items() if k not in OWNED_CONFIG_KEYS}
        explicit = {k: v for k, v in d.items() if v is not None}
        c = {**CONFIG_DEFAULTS[model_type], **explicit}
        bias = bool(c["attention_bias"])
        return decoder_architecture(
            c,
            pattern=DENSE * c["num_hidden_layers"],
            mlp_bias=bool(c["mlp_bias"]) if model_type == "llama" else False,
            attn_qkv_bias=True if model_type == "qwen2" else bias and model_type in ("llama", "qwen3"),
            attn_out_bias=bias and model_type in ("llama", "qwen3"),
            qk_norm=model_type == "qwen3",
            model_type=model_type,
            extra=extra,
        )

    def write_config(self, arch: Architecture) -> dict[str, Any]:
        d = decoder_config(arch, HF_CLASSES[arch.model_type])
        if arch.model_type in ("llama", "qwen3"):
            d["attention_bias"] = arch.attn_out_bias
        if arch.model_type == "llama":
            d["mlp_bias"] = arch.mlp_bias
        if arch.model_type in ("qwen2", "qwen3"):
            d["layer_types"] = ["full_attention"] * arch.n_blocks
            d["use_sliding_window"] = False
        if arch.model_type == "mistral":
            d["sliding_window"] = None
        return d

    def check(self, arch: Architecture) -> None:
        if arch.model_type == "llama" and arch.hidden % arch.attn_heads:
            # LlamaConfig refuses such configs (validate_architecture), though head_dim is explicit.
            raise MinitronError(
                f"hidden ({arch.hidden}) must be a multiple of the attention heads ({arch.attn_heads}) "
                "for a Llama config"
            )

    def block_params(self, arch: Architecture, kind: str) -> int:
        if kind != DENSE:
            raise MinitronError(f"Llama-family models have no {kind!r} blocks")
        mlp = arch.hidden + 3 * arch.hidden * arch.ffn  # post_attention_layernorm, gate, up, down
        mlp += (2 * arch.ffn + arch.hidden) if arch.mlp_bias else 0
        return attention_params(arch) + mlp

    def ffn_unit_params(self, arch: Architecture) -> int:
        # gate and up rows + down column (+ gate and up biases) in every layer
        return arch.n_blocks * (3 * arch.hidden + (2 if arch.mlp_bias else 0))

    # ---- tensor layout ------------------------------------------------------------------------
    def block_axes(self, arch: Architecture, kind: str, name: str) -> tuple[Axis, ...] | None:
        return _LAYER_AXES.get(name)

    # ---- runtime ------------------------------------------------------------------------------
    def blocks(self, model):
        return model.model.layers

    def pattern(self, model):
        return DENSE * len(model.model.layers)

    def width_hooks(self, arch, kind, block):
        return [
            WidthHook("hidden", block.input_layernorm, "output"),
            WidthHook("attn_heads", block.self_attn.o_proj, "input"),
            WidthHook("hidden", block.post_attention_layernorm, "output"),
            WidthHook("ffn", block.mlp.down_proj, "input"),  # act(gate) * up
        ]

    def start(self, model, input_ids, attention_mask=None):
        from transformers.masking_utils import create_causal_mask

        inner = model.model
        hidden = inner.embed_tokens(input_ids)
        args = mask_arguments(inner.config, hidden, attention_mask)
        return ForwardContext(
            hidden=hidden,
            block_kwargs={
                DENSE: {
                    "attention_mask": create_causal_mask(**args),
                    "position_ids": args["position_ids"],
                    "position_embeddings": inner.rotary_emb(hidden, position_ids=args["position_ids"]),
                }
            },
        )

    def run_block(self, block, hidden, ctx):
        return block(hidden, **ctx.block_kwargs[DENSE])

    def logits(self, model, hidden):
        return model.lm_head(model.model.norm(hidden)).float()


def decoder_architecture(c: dict[str, Any], **fields: Any) -> Architecture:
    """The Architecture of a decoder-layer config `c` (defaults filled in): attention and FFN sizes
    read from the keys every Llama-style config shares, no Mamba; `fields` add the rest."""
    heads = c["num_attention_heads"]
    return Architecture(
        hidden=c["hidden_size"],
        ffn=c["intermediate_size"],
        attn_heads=heads,
        kv_heads=c["num_key_value_heads"] or heads,
        head_dim=c["head_dim"] or c["hidden_size"] // heads,
        mamba_heads=0,
        mamba_head_dim=0,
        mamba_groups=0,
        ssm_state=0,
        conv_kernel=0,
        vocab=c["vocab_size"],
        tied_embeddings=bool(c["tie_word_embeddings"]),
        conv_bias=False,
        **fields,
    )


def decoder_config(arch: Architecture, hf_class: str) -> dict[str, Any]:
    """The config keys every Llama-style config shares, written from `arch` over its `extra` (the
    inverse of `decoder_architecture`)."""
    d = dict(arch.extra)
    d.update(
        model_type=arch.model_type,
        architectures=[hf_class],
        num_hidden_layers=arch.n_blocks,
        hidden_size=arch.hidden,
        intermediate_size=arch.ffn,
        num_attention_heads=arch.attn_heads,
        num_key_value_heads=arch.kv_heads,
        head_dim=arch.head_dim,  # always explicit: hidden // heads no longer holds once either is pruned
        vocab_size=arch.vocab,
        tie_word_embeddings=arch.tied_embeddings,
    )
    return d


def attention_params(arch: Architecture) -> int:
    """A decoder layer's attention half: input_layernorm, q, k, v, o (+ biases, + QK norms)."""
    h, q, kv = arch.hidden, arch.attn_heads * arch.head_dim, arch.kv_heads * arch.head_dim
    attention = h + h * q + 2 * h * kv + q * h
    attention += (q + 2 * kv) if arch.attn_qkv_bias else 0
    attention += h if arch.attn_out_bias else 0
    attention += 2 * arch.head_dim if arch.qk_norm else 0
    return attention


_LAYER_AXES: dict[str, tuple[Axis, ...]] = {
    "input_layernorm.weight": ("hidden",),
    "post_attention_layernorm.weight": ("hidden",),
    "self_attn.q_proj.weight": ("attn_q", "hidden"),
    "self_attn.q_proj.bias": ("attn_q",),
    "self_attn.k_proj.weight": (None, "hidden"),  # KV heads are never removed
    "self_attn.k_proj.bias": (None,),
    "self_attn.v_proj.weight": (None, "hidden"),
    "self_attn.v_proj.bias": (None,),
    "self_attn.o_proj.weight": ("hidden", "attn_q"),
    "self_attn.o_proj.bias": ("hidden",),
    "self_attn.q_norm.weight": (None,),  # per head_dim, shared by every head
    "self_attn.k_norm.weight": (None,),
    "mlp.gate_proj.weight": ("ffn", "hidden"),
    "mlp.gate_proj.bias": ("ffn",),
    "mlp.up_proj.weight": ("ffn", "hidden"),
    "mlp.up_proj.bias": ("ffn",),
    "mlp.down_proj.weight": ("hidden", "ffn"),
    "mlp.down_proj.bias": ("hidden",),
}


def _refuse_sliding_window(d: dict[str, Any], model_type: str) -> None:
    if model_type == "mistral":
        window = d.get("sliding_window", MISTRAL_DEFAULT_SLIDING_WINDOW)
    elif model_type in ("qwen2", "qwen3"):
        # Which layers slide, the way Qwen2Config/Qwen3Config decide it.
        types = d.get("layer_types")
        window = d.get("sliding_window", 4096) if d.get("use_sliding_window") else None
        if types:
            sliding = any(t != "full_attention" for t in types)
        else:
            sliding = window is not None and d.get("num_hidden_layers", 32) > d.get("max_window_layers", 28)
        window = (window or d.get("sliding_window") or "set by layer_types") if sliding else None
    else:
        window = None
    if window is not None:
        raise MinitronError(
            f"{model_type}: sliding-window attention (sliding_window={window}) is not supported yet; "
            "only models whose every layer attends to the full context"
        )


# Config keys the Llama adapter owns (and rewrites); the rest ride along in `extra`.
OWNED_CONFIG_KEYS = COMMON_CONFIG_KEYS | {
    "attention_bias",
    "mlp_bias",
    "layer_types",
    "use_sliding_window",
}
