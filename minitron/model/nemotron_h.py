"""The NemotronH family (NemotronHForCausalLM): hybrid Mamba-2 / MLP / attention / MoE blocks.

model.model.layers[i] = NemotronHBlock(norm, mixer); block i is pattern character i. Tensor layouts
(source sizes; H = hidden):

    embeddings.weight, lm_head.weight   (vocab, H)
    norm_f.weight, layers.i.norm.weight (H,)
    MLP        up_proj (ffn, H), down_proj (H, ffn)              (ungated, relu2)
    attention  q_proj (heads*head_dim, H), k_proj/v_proj (kv*head_dim, H), o_proj (H, heads*head_dim)
    Mamba      in_proj (rows, H) with rows packed as IN_PROJ_LAYOUT [z | x | B | C | dt],
               conv1d.weight (d_in + 2*g*N, 1, kernel) packed as CONV_LAYOUT [x | B | C],
               A_log/D/dt_bias (heads,), norm.weight (d_in,), out_proj (H, d_in)   (d_in = heads * head_dim)
    MoE        gate.weight (E, H) and gate.e_score_correction_bias (E,), both float32 (a sigmoid router
               with DeepSeek-V3's grouped top-k); experts.up_proj (E, I, H), experts.down_proj (E, H, I)
               (fused routed experts, relu2, no gate projection; checkpoints on disk hold them unfused as
               experts.<e>.up_proj.weight (I, H) / down_proj.weight (H, I)); shared_experts.up_proj (S, H),
               shared_experts.down_proj (H, S) (one ungated MLP every token passes)
"""

from __future__ import annotations

from typing import Any

from minitron.errors import MinitronError
from minitron.model.adapters import (
    Axis,
    Family,
    ForwardContext,
    Segment,
    WidthHook,
    mask_arguments,
    segment_slice,
)
from minitron.model.arch import (
    ATTENTION,
    COMMON_CONFIG_KEYS,
    MAMBA,
    MLP,
    MOE,
    Architecture,
    decode_special_floats,
    nearest_multiples,
)

# NemotronH's `layers_block_type` vocabulary, one entry per pattern character; older files say
# `mamba` and `attention`.
HF_BLOCK_TYPES = {MAMBA: "linear_attention", MLP: "mlp", ATTENTION: "full_attention", MOE: "moe"}
FROM_HF_BLOCK_TYPE = {**{v: k for k, v in HF_BLOCK_TYPES.items()}, "mamba": MAMBA, "attention": ATTENTION}


def in_proj_layout(arch: Architecture) -> tuple[Segment, ...]:
    """Mamba in_proj output rows: [z | x | B | C | dt]; B and C are shared per group and stay whole."""
    d_in, gn = arch.mamba_inner, arch.mamba_groups * arch.ssm_state
    return (
        Segment("z", d_in, "mamba_x"),
        Segment("x", d_in, "mamba_x"),
        Segment("B", gn, None),
        Segment("C", gn, None),
        Segment("dt", arch.mamba_heads, "mamba_heads"),
    )


def conv_layout(arch: Architecture) -> tuple[Segment, ...]:
    """conv1d channels: [x | B | C]."""
    return (
        Segment("x", arch.mamba_inner, "mamba_x"),
        Segment("BC", 2 * arch.mamba_groups * arch.ssm_state, None),
    )


class NemotronHFamily(Family):
    name = "NemotronH"
    model_types = ("nemotron_h",)
    vocab_tensors = ("embeddings.weight", "lm_head.weight")
    final_norm = "norm_f.weight"
    block_kinds = MAMBA + MLP + ATTENTION + MOE

    # ---- config -------------------------------------------------------------------------------
    def read_config(self, d: dict[str, Any]) -> Architecture:
        pattern = _pattern_from_config(d)
        _refuse_unsupported_moe(d)
        moe = MOE in pattern
        # config.json spells inf/nan as {"__float__": "Infinity"} (transformers' encoding); hold real floats.
        # A model without MoE blocks carries the MoE keys (transformers writes its defaults) untouched.
        owned = OWNED_CONFIG_KEYS | (MOE_CONFIG_KEYS if moe else frozenset())
        extra = {k: decode_special_floats(v) for k, v in d.items() if k not in owned}
        # Read a sparse config.json the way transformers does: its defaults fill missing fields, and
        # the legacy names (mamba_n_groups, ...) win over the new ones when both are present.
        # An explicit null KV-head count means "as many as query heads" (NemotronHConfig.__post_init__).
        kv_heads = d.get("num_key_value_heads", NEMOTRON_H_DEFAULTS["num_key_value_heads"])
        d = {**NEMOTRON_H_DEFAULTS, **{k: v for k, v in d.items() if v is not None}}
        for legacy, name in LEGACY_CONFIG_NAMES.items():
            if legacy in d:
                d[name] = d[legacy]
        return Architecture(
            pattern=pattern,
            hidden=d["hidden_size"],
            ffn=d["intermediate_size"],
            attn_heads=d["num_attention_heads"],
            kv_heads=kv_heads or d["num_attention_heads"],
            head_dim=d["head_dim"],
            mamba_heads=d["mamba_num_heads"],
            mamba_head_dim=d["mamba_head_dim"],
            mamba_groups=d["n_groups"],
            ssm_state=d["ssm_state_size"],
            conv_kernel=d["conv_kernel"],
            vocab=d["vocab_size"],
            tied_embeddings=bool(d["tie_word_embeddings"]),
            # The mixer's in_proj/out_proj biases follow `use_bias`; transformers ignores `mamba_proj_bias`.
            mamba_proj_bias=bool(d["use_bias"]),
            conv_bias=bool(d["use_conv_bias"]),
            mlp_bias=bool(d["mlp_bias"]),
            experts=d.get("num_local_experts", d["n_routed_experts"]) if moe else 0,
            experts_per_token=d["num_experts_per_tok"] if moe else 0,
            expert_ffn=d["moe_intermediate_size"] if moe else 0,
            shared_ffn=d["moe_shared_expert_intermediate_size"] if moe else 0,
            model_type="nemotron_h",
            extra=extra,
        )

    def write_config(self, arch: Architecture) -> dict[str, Any]:
        d = dict(arch.extra)
        d.update(
            model_type=arch.model_type,
            architectures=["NemotronHForCausalLM"],
            layers_block_type=[HF_BLOCK_TYPES[c] for c in arch.pattern],
            hidden_size=arch.hidden,
            intermediate_size=arch.ffn,
            num_attention_heads=arch.attn_heads,
            num_key_value_heads=arch.kv_heads,
            head_dim=arch.head_dim,
            mamba_num_heads=arch.mamba_heads,
            mamba_head_dim=arch.mamba_head_dim,
            n_groups=arch.mamba_groups,
            ssm_state_size=arch.ssm_state,
            conv_kernel=arch.conv_kernel,
            vocab_size=arch.vocab,
            tie_word_embeddings=arch.tied_embeddings,
            use_bias=arch.mamba_proj_bias,
            use_conv_bias=arch.conv_bias,
            mlp_bias=arch.mlp_bias,
        )
        if arch.has_part(MOE):
            d.update(
                n_routed_experts=arch.experts,
                num_experts_per_tok=arch.experts_per_token,
                moe_intermediate_size=arch.expert_ffn,
                moe_shared_expert_intermediate_size=arch.shared_ffn,
            )
        # Mamba's `expand` is informational in NemotronH (d_inner = heads x head_dim); keep it honest.
        d["expand"] = max(1, arch.mamba_inner // arch.hidden) if arch.mamba_inner else d.get("expand", 2)
        return d

    def check(self, arch: Architecture) -> None:
        if not arch.has_part(MOE):
            return
        positive_shared = isinstance(arch.shared_ffn, int) and arch.shared_ffn > 0
        if not positive_shared:
            raise MinitronError(f"shared_ffn must be a positive integer, got {arch.shared_ffn!r}")
        # DeepSeek-V3's router: experts split evenly into n_group groups, each group scored by its best two.
        groups = arch.extra.get("n_group") or 1
        if arch.experts % groups:
            raise MinitronError(
                f"experts ({arch.experts}) must split evenly into the router's {groups} groups (n_group); "
                f"nearest legal: {nearest_multiples(arch.experts, groups)}"
            )
        if groups > 1 and arch.experts // groups < 2:
            raise MinitronError(
                f"the router scores each of its {groups} groups by its best two experts; "
                f"{arch.experts} experts leave fewer than two per group"
            )
        reachable = (arch.extra.get("topk_group") or 1) * arch.experts // groups
        if arch.experts_per_token > reachable:
            raise MinitronError(
                f"{arch.experts} experts in {groups} groups of which topk_group are chosen leave {reachable} "
                f"experts to route to; every token needs {arch.experts_per_token} (num_experts_per_tok)"
            )

    def buffer_elements(self, arch: Architecture) -> int:
        return arch.count(MOE) * arch.experts  # every router's e_score_correction_bias (E,)

    def extra_weight_bytes(self, arch: Architecture, itemsize: int) -> int:
        # Every MoE router keeps gate.weight (E, H) and the e_score_correction_bias buffer in float32.
        return arch.count(MOE) * arch.experts * arch.hidden * (4 - itemsize) + self.buffer_elements(arch) * 4

    def expert_params(self, arch: Architecture) -> int:
        return 2 * arch.hidden * arch.expert_ffn  # up_proj (I, H) + down_proj (H, I), no biases

    def block_params(self, arch: Architecture, kind: str) -> int:
        h = arch.hidden
        norm = h
        if kind == MOE:
            # e_score_correction_bias is a buffer, not a parameter: it is in weight bytes, not in counts.
            router = arch.experts * h
            shared = 2 * h * arch.shared_ffn + ((arch.shared_ffn + h) if arch.mlp_bias else 0)
            return norm + router + arch.experts * self.expert_params(arch) + shared
        if kind == MAMBA:
            rows = (
                2 * arch.mamba_inner + 2 * arch.mamba_groups * arch.ssm_state + arch.mamba_heads
            )  # in_proj_layout
            in_proj = h * rows + (rows if arch.mamba_proj_bias else 0)
            conv = arch.mamba_conv_dim * arch.conv_kernel + (arch.mamba_conv_dim if arch.conv_bias else 0)
            per_head = 3 * arch.mamba_heads  # dt_bias, A_log, D
            gated_norm = arch.mamba_inner
            out_proj = arch.mamba_inner * h + (h if arch.mamba_proj_bias else 0)
            return norm + in_proj + conv + per_head + gated_norm + out_proj
        if kind == MLP:
            bias = (arch.ffn + h) if arch.mlp_bias else 0
            return norm + 2 * h * arch.ffn + bias
        if kind == ATTENTION:
            # NemotronH attention has no biases and no QK norm.
            q_width, kv_width = arch.attn_heads * arch.head_dim, arch.kv_heads * arch.head_dim
            return norm + h * q_width + 2 * h * kv_width + q_width * h
        raise MinitronError(f"NemotronH has no {kind!r} blocks")

    def ffn_unit_params(self, arch: Architecture) -> int:
        # up_proj row + down_proj column (+ up bias) in every MLP block
        return arch.count(MLP) * (2 * arch.hidden + (1 if arch.mlp_bias else 0))

    def lm_head_params(self, arch: Architecture) -> int:
        # transformers' NemotronHForCausalLM declares no tied weights (`_tied_weights_keys = {}`), so
        # lm_head is its own parameter even when the config says tie_word_embeddings=true.
        return arch.vocab * arch.hidden

    # ---- tensor layout ------------------------------------------------------------------------
    def block_axes(self, arch: Architecture, kind: str, name: str) -> tuple[Axis, ...] | None:
        if name == "norm.weight":
            return ("hidden",)
        if kind == MLP:
            return {
                "mixer.up_proj.weight": ("ffn", "hidden"),
                "mixer.up_proj.bias": ("ffn",),
                "mixer.down_proj.weight": ("hidden", "ffn"),
                "mixer.down_proj.bias": ("hidden",),
            }.get(name)
        if kind == ATTENTION:
            return {
                "mixer.q_proj.weight": ("attn_q", "hidden"),
                "mixer.k_proj.weight": (None, "hidden"),  # KV heads are never removed
                "mixer.v_proj.weight": (None, "hidden"),
                "mixer.o_proj.weight": ("hidden", "attn_q"),
            }.get(name)
        if kind == MOE:
            return {
                "mixer.gate.weight": ("experts", "hidden"),
                "mixer.gate.e_score_correction_bias": ("experts",),
                "mixer.experts.up_proj": ("experts", "expert_ffn", "hidden"),
                "mixer.experts.down_proj": ("experts", "hidden", "expert_ffn"),
                # one expert's tensors, as checkpoints store them (experts.<e>.up_proj.weight, ...)
                "mixer.experts.*.up_proj.weight": ("expert_ffn", "hidden"),
                "mixer.experts.*.down_proj.weight": ("hidden", "expert_ffn"),
                "mixer.shared_experts.up_proj.weight": ("shared_ffn", "hidden"),
                "mixer.shared_experts.up_proj.bias": ("shared_ffn",),
                "mixer.shared_experts.down_proj.weight": ("hidden", "shared_ffn"),
                "mixer.shared_experts.down_proj.bias": ("hidden",),
            }.get(name)
        if kind == MAMBA:
            rows, conv = in_proj_layout(arch), conv_layout(arch)
            return {
                "mixer.in_proj.weight": (rows, "hidden"),
                "mixer.in_proj.bias": (rows,),
                "mixer.conv1d.weight": (conv, None, None),
                "mixer.conv1d.bias": (conv,),
                "mixer.A_log": ("mamba_heads",),
                "mixer.D": ("mamba_heads",),
                "mixer.dt_bias": ("mamba_heads",),
                "mixer.norm.weight": ("mamba_x",),
                "mixer.out_proj.weight": ("hidden", "mamba_x"),
                "mixer.out_proj.bias": ("hidden",),
            }.get(name)
        return None

    # ---- runtime ------------------------------------------------------------------------------
    def blocks(self, model):
        return model.model.layers

    def pattern(self, model):
        return "".join(FROM_HF_BLOCK_TYPE[b.block_type] for b in model.model.layers)

    def width_hooks(self, arch, kind, block):
        mixer = block.mixer
        hooks = [WidthHook("hidden", block.norm, "output")]
        if kind == MLP:
            hooks.append(WidthHook("ffn", mixer.down_proj, "input"))  # after relu2
        elif kind == ATTENTION:
            hooks.append(WidthHook("attn_heads", mixer.o_proj, "input"))
        elif kind == MOE:
            hooks.append(WidthHook("experts", mixer.experts, "input"))
            hooks.append(WidthHook("shared_ffn", mixer.shared_experts.down_proj, "input"))  # after relu2
        elif kind == MAMBA:
            # The x slice of in_proj's output: both Mamba code paths (and mamba-ssm's fused kernel in
            # training mode) start from it.
            hooks.append(
                WidthHook("mamba", mixer.in_proj, "output", segment_slice(in_proj_layout(arch), "x"))
            )
        return hooks

    def expert_forward(self, experts, expert, x):
        import torch.nn.functional as F

        act = experts.act_fn(F.linear(x, experts.up_proj[expert]))  # relu2, no gate projection
        return act, F.linear(act, experts.down_proj[expert])

    def start(self, model, input_ids, attention_mask=None):
        from transformers.masking_utils import create_causal_mask, create_recurrent_attention_mask

        hidden = model.model.embeddings(input_ids)
        args = mask_arguments(model.model.config, hidden, attention_mask)
        # The same masks NemotronHModel.forward builds, so a block run alone matches the full forward.
        causal = create_causal_mask(**args)
        recurrent = create_recurrent_attention_mask(**args)
        return ForwardContext(
            hidden=hidden,
            block_kwargs={
                ATTENTION: {"attention_mask": causal, "position_ids": args["position_ids"]},
                MAMBA: {"attention_mask": recurrent},
                MLP: {},
                MOE: {},
            },
        )

    def run_block(self, block, hidden, ctx):
        return block(hidden, **ctx.block_kwargs[FROM_HF_BLOCK_TYPE[block.block_type]])

    def logits(self, model, hidden):
        return model.lm_head(model.model.norm_f(hidden)).float()

    def after_load(self, model) -> None:
        from minitron.model import mamba_fallback

        mamba_fallback.enable()


# Config keys that the NemotronH adapter owns (and rewrites); the rest ride along in `extra`.
OWNED_CONFIG_KEYS = COMMON_CONFIG_KEYS | {
    "layers_block_type",
    "layer_types",
    "hybrid_override_pattern",
    "mamba_num_heads",
    "mamba_head_dim",
    "n_groups",
    "mamba_n_groups",
    "ssm_state_size",
    "conv_kernel",
    "mamba_d_conv",
    "use_bias",
    "use_conv_bias",
    "mamba_conv_bias",
    "mlp_bias",
    "expand",
    "mamba_expand",
}

# The MoE keys the adapter owns when the model has MoE blocks (num_local_experts: an alias).
MOE_CONFIG_KEYS = frozenset(
    {"n_routed_experts", "num_local_experts", "num_experts_per_tok", "moe_intermediate_size",
     "moe_shared_expert_intermediate_size"}
)  # fmt: skip

# transformers 5.x NemotronHConfig defaults for the fields read above (tests check them against it).
NEMOTRON_H_DEFAULTS: dict[str, Any] = {
    "vocab_size": 131072,
    "hidden_size": 4096,
    "intermediate_size": 21504,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "mamba_num_heads": 128,
    "mamba_head_dim": 64,
    "n_groups": 8,
    "ssm_state_size": 128,
    "conv_kernel": 4,
    "tie_word_embeddings": False,
    "use_bias": False,
    "use_conv_bias": True,
    "mlp_bias": False,
    "n_routed_experts": 8,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 7688,
    "moe_shared_expert_intermediate_size": 7688,
}
# Legacy config names NemotronHConfig still accepts; when present they override the new name.
LEGACY_CONFIG_NAMES = {
    "mamba_n_groups": "n_groups",
    "mamba_d_conv": "conv_kernel",
    "mamba_conv_bias": "use_conv_bias",
}


def _pattern_from_config(d: dict[str, Any]) -> str:
    types = d.get("layers_block_type") or d.get("layer_types")
    if types:
        unknown = sorted(set(types) - set(FROM_HF_BLOCK_TYPE))
        if unknown:
            raise MinitronError(
                f"unsupported block types {unknown}; supported: " + ", ".join(sorted(FROM_HF_BLOCK_TYPE))
            )
        return "".join(FROM_HF_BLOCK_TYPE[t] for t in types)
    pattern = d.get("hybrid_override_pattern")
    if pattern:
        unknown = sorted(set(pattern) - set(HF_BLOCK_TYPES))
        if unknown:
            raise MinitronError(
                f"hybrid_override_pattern has unknown block types {unknown}; known: M, -, *, E"
            )
        return pattern
    raise MinitronError("config has neither layers_block_type nor hybrid_override_pattern")


def _refuse_unsupported_moe(d: dict[str, Any]) -> None:
    if d.get("moe_latent_size") is not None:
        raise MinitronError(
            f"latent MoE (moe_latent_size={d['moe_latent_size']}, Nemotron 3 Super) is not supported yet"
        )
    if d.get("num_nextn_predict_layers"):
        raise MinitronError(
            f"multi-token prediction layers (num_nextn_predict_layers={d['num_nextn_predict_layers']}) "
            "are not supported yet"
        )
