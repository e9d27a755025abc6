"""One immutable description of an architecture: what search speaks, what prune targets.

An `Architecture` is derived from a Hugging Face config, can be changed (`with_sizes`,
`drop_blocks`) and turned back into a config dict. Parameter counts come from it alone, so a 12B
model can be sized without allocating anything.

Blocks are written as pattern characters: `M` Mamba-2 mixer, `-` MLP, `*` attention, `E` mixture of
experts (NemotronH's own vocabulary), `D` a dense decoder layer (attention then MLP, each behind its
own RMSNorm: one Llama-family layer, the unit of depth pruning there) and `S` a sparse decoder layer
(attention then a mixture of experts: one Qwen3-MoE layer).

A mixture of experts (part `E`) holds a router, `experts` routed experts of width `expert_ffn` of
which every token passes `experts_per_token`, and (NemotronH) one shared expert of width
`shared_ffn` that every token passes. Active parameters count only the routed experts a token uses. What differs between model families (config
keys, parameter counts, tensor names) lives in their adapters (minitron.model.adapters); this module
asks the family of `model_type` and stays torch-free.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from minitron.errors import MinitronError

MAMBA, MLP, ATTENTION, DENSE, MOE, SPARSE = "M", "-", "*", "D", "E", "S"
BLOCK_NAMES = {
    MAMBA: "mamba",
    MLP: "mlp",
    ATTENTION: "attention",
    DENSE: "layer",
    MOE: "moe",
    SPARSE: "moe_layer",
}
# The sub-blocks (mixers) each block type holds, in order: what memory, scores and slicing count.
BLOCK_PARTS = {
    MAMBA: MAMBA,
    MLP: MLP,
    ATTENTION: ATTENTION,
    DENSE: ATTENTION + MLP,
    MOE: MOE,
    SPARSE: ATTENTION + MOE,
}

# The sizes each block part needs (all positive when the architecture has that part).
PART_FIELDS = {
    MLP: ("ffn",),
    ATTENTION: ("attn_heads", "kv_heads", "head_dim"),
    MAMBA: ("mamba_heads", "mamba_head_dim", "mamba_groups", "ssm_state", "conv_kernel"),
    MOE: ("experts", "experts_per_token", "expert_ffn"),
}


@dataclass(frozen=True)
class Architecture:
    """Sizes of every axis minitron can prune, plus the config fields it leaves alone."""

    pattern: str
    hidden: int
    ffn: int
    attn_heads: int
    kv_heads: int
    head_dim: int
    mamba_heads: int
    mamba_head_dim: int
    mamba_groups: int
    ssm_state: int
    conv_kernel: int
    vocab: int
    tied_embeddings: bool = False
    mamba_proj_bias: bool = False  # NemotronH `use_bias`: in_proj/out_proj biases
    conv_bias: bool = True
    mlp_bias: bool = False
    attn_qkv_bias: bool = False  # q/k/v projection biases (Qwen2; Llama's attention_bias)
    attn_out_bias: bool = False  # o_proj bias (Llama's attention_bias)
    qk_norm: bool = False  # per-head RMSNorm on queries and keys (Qwen3)
    # Mixture of experts (0 when the model has none): routed experts per MoE block, the top-k every
    # token is routed to, each routed expert's FFN width, and the shared expert's (0: none).
    experts: int = 0
    experts_per_token: int = 0
    expert_ffn: int = 0
    shared_ffn: int = 0
    model_type: str = "nemotron_h"
    # Every other field of the source config (eps, token ids, dtype, ...), carried through unchanged.
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        bad = set(self.pattern) - set(BLOCK_NAMES)
        if bad:
            raise MinitronError(
                f"block pattern has unknown block types {sorted(bad)}; "
                "known: M (Mamba), - (MLP), * (attention), D (attention + MLP layer)"
            )
        if not self.pattern:
            raise MinitronError("an architecture needs at least one block")
        family = self.family
        wrong = sorted(set(self.pattern) - set(family.block_kinds))
        if wrong:
            raise MinitronError(
                f"{family.name} models have no {', '.join(BLOCK_NAMES[c] for c in wrong)} blocks "
                f"(pattern {self.pattern!r})"
            )
        for name in ("hidden", "vocab"):
            positive(name, getattr(self, name))
        for part, names in PART_FIELDS.items():
            if self.has_part(part):
                for name in names:
                    positive(name, getattr(self, name))
        if self.has_part(ATTENTION):
            multiple("attention heads", self.attn_heads, "KV heads", self.kv_heads)
        if self.has_part(MAMBA):
            multiple("Mamba heads", self.mamba_heads, "Mamba groups", self.mamba_groups)
        if self.has_part(MOE):
            for name in ("hidden", "expert_ffn"):
                value = getattr(self, name)
                if value % GROUPED_GEMM_MULTIPLE:
                    raise MinitronError(
                        f"{name} {value}: MoE models need it in multiples of {GROUPED_GEMM_MULTIPLE} "
                        "(transformers runs the experts with grouped GEMM kernels, whose rows must be "
                        f"16-byte aligned in bf16); nearest legal: {nearest_multiples(value, GROUPED_GEMM_MULTIPLE)}"
                    )
            if self.experts < self.experts_per_token:
                raise MinitronError(
                    f"experts ({self.experts}) must be at least the experts every token is routed to "
                    f"(num_experts_per_tok {self.experts_per_token})"
                )
        family.check(self)

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def n_blocks(self) -> int:
        return len(self.pattern)

    def count(self, kind: str) -> int:
        """Blocks of type `kind` (a pattern character)."""
        return self.pattern.count(kind)

    def count_part(self, part: str) -> int:
        """Mixers of type `part` (M, - or *) over all blocks: a dense layer holds one * and one -."""
        return sum(self.pattern.count(c) * parts.count(part) for c, parts in BLOCK_PARTS.items())

    def has_part(self, part: str) -> bool:
        return any(c in self.pattern for c, parts in BLOCK_PARTS.items() if part in parts)

    def absent_axes(self) -> set[str]:
        """Prunable axes this architecture has no blocks for (a dense model's Mamba axes, ...)."""
        from minitron.model.axes import width_axes

        return {a.name for a in width_axes() if not a.on(self)}

    @property
    def family(self):
        """The model-family adapter of `model_type` (config keys, parameter counts, tensor layouts)."""
        family = _FAMILIES.get(self.model_type)
        if family is None:
            from minitron.model.adapters import family_for  # late: the adapters import this module

            family = _FAMILIES[self.model_type] = family_for(self.model_type)
        return family

    @property
    def block_kinds(self) -> str:
        """The family's block kinds this model is described in (tables, depth counts): a family's MoE
        kinds only when the model has MoE blocks, so a dense NemotronH reads as it always did."""
        return "".join(k for k in self.family.block_kinds if k in self.pattern or MOE not in BLOCK_PARTS[k])

    def block_indices(self, kind: str) -> list[int]:
        return [i for i, c in enumerate(self.pattern) if c == kind]

    @property
    def mamba_inner(self) -> int:
        """d_inner = heads x head_dim: the width of z, x and the gated norm."""
        return self.mamba_heads * self.mamba_head_dim

    @property
    def mamba_conv_dim(self) -> int:
        """Channels through conv1d: x, B and C."""
        return self.mamba_inner + 2 * self.mamba_groups * self.ssm_state

    # ---- parameter counts ----------------------------------------------------------------------
    def block_params(self, kind: str) -> int:
        """Parameters of one block of `kind`, its pre-norm(s) included (the family's layout)."""
        if kind not in BLOCK_NAMES:
            raise MinitronError(f"unknown block type {kind!r}")
        return self.family.block_params(self, kind)

    def params_by_part(self) -> dict[str, int]:
        """Parameters split into embeddings, lm_head, final norm and each block type (all blocks of it)."""
        family = self.family
        parts = {
            "embeddings": self.vocab * self.hidden,
            "lm_head": family.lm_head_params(self),
            "final_norm": self.hidden,
        }
        for kind in self.block_kinds:
            parts[BLOCK_NAMES[kind]] = self.pattern.count(kind) * family.block_params(self, kind)
        return parts

    @property
    def n_params(self) -> int:
        return sum(self.params_by_part().values())

    def inactive_block_params(self, kind: str) -> int:
        """Parameters of one `kind` block that a token does not pass: its routed experts beyond the top-k."""
        n_moe = BLOCK_PARTS[kind].count(MOE)
        if not n_moe:
            return 0
        return n_moe * (self.experts - self.experts_per_token) * self.family.expert_params(self)

    def active_params_by_part(self) -> dict[str, int]:
        """params_by_part with only the top-k routed experts of every MoE block (what one token uses)."""
        parts = self.params_by_part()
        for kind in set(self.pattern):
            parts[BLOCK_NAMES[kind]] -= self.pattern.count(kind) * self.inactive_block_params(kind)
        return parts

    @property
    def n_active_params(self) -> int:
        """Parameters one token passes through: every routed expert but the top-k left out (equals
        n_params without MoE blocks); embeddings and lm_head included, as model cards count them."""
        return self.n_params - sum(self.inactive_block_params(c) for c in self.pattern)

    # ---- changes -------------------------------------------------------------------------------
    def with_sizes(self, **sizes: int) -> Architecture:
        """A copy with some axis sizes changed (hidden, ffn, attn_heads, mamba_heads, ...); validated."""
        from minitron.model.axes import width_names

        unknown = set(sizes) - set(width_names())
        if unknown:
            raise MinitronError(f"cannot change {sorted(unknown)}; prunable axes: {sorted(width_names())}")
        return dataclasses.replace(self, **sizes)

    def drop_blocks(self, indices: list[int] | tuple[int, ...]) -> Architecture:
        """A copy without the blocks at `indices` (0-based, in the current pattern)."""
        drop = set(indices)
        out_of_range = sorted(i for i in drop if not 0 <= i < self.n_blocks)
        if out_of_range:
            raise MinitronError(f"block indices {out_of_range} out of range 0..{self.n_blocks - 1}")
        if len(drop) >= self.n_blocks:
            raise MinitronError("cannot drop every block")
        pattern = "".join(c for i, c in enumerate(self.pattern) if i not in drop)
        return dataclasses.replace(self, pattern=pattern)

    def shrinks(self, source: Architecture) -> list[str]:
        """Why `self` is not reachable from `source` by pruning (empty when it is)."""
        from minitron.model.axes import width_names

        problems = []
        for axis in sorted(width_names()):
            if getattr(self, axis) > getattr(source, axis):
                problems.append(f"{axis} {getattr(self, axis)} > source {getattr(source, axis)}")
        names = (
            "kv_heads",
            "head_dim",
            "mamba_groups",
            "ssm_state",
            "conv_kernel",
            "vocab",
            "experts_per_token",
        )
        for name in (*names, "model_type"):
            if getattr(self, name) != getattr(source, name):
                problems.append(f"{name} {getattr(self, name)} differs from source {getattr(source, name)}")
        if not _is_subsequence(self.pattern, source.pattern):
            problems.append("block pattern is not the source pattern with blocks removed")
        return problems

    # ---- HF config round trip ------------------------------------------------------------------
    @classmethod
    def from_hf_config(cls, config: Any) -> Architecture:
        """From a transformers config object or a config.json dict (read by its family's adapter)."""
        from minitron.model.adapters import family_for

        d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        return family_for(d.get("model_type")).read_config(d)

    def to_config_json(self) -> str:
        """config.json text for these sizes, with inf/nan encoded the way transformers writes them."""
        return json.dumps(encode_special_floats(self.to_config_dict()), indent=2, sort_keys=True) + "\n"

    def to_config_dict(self) -> dict[str, Any]:
        """A config dict (plain Python values, inf included) that describes exactly these sizes."""
        return self.family.write_config(self)

    def to_hf_config(self):
        """A transformers config object (imports transformers)."""
        from transformers import AutoConfig

        d = self.to_config_dict()
        return AutoConfig.for_model(d.pop("model_type"), **d)

    def summary(self) -> dict[str, Any]:
        """The prunable sizes as a plain dict (for tables and JSON); MoE entries only for MoE models."""
        from minitron.model.axes import width_axes

        moe = self.has_part(MOE)
        names = sorted(a.name for a in width_axes() if moe or a.part != MOE)
        return {
            "blocks": self.n_blocks,
            "pattern": self.pattern,
            "mamba_blocks": self.count_part(MAMBA),
            "mlp_blocks": self.count_part(MLP),
            "attention_blocks": self.count_part(ATTENTION),
            **({"moe_blocks": self.count_part(MOE)} if moe else {}),
            **{axis: getattr(self, axis) for axis in names},
            **({"experts_per_token": self.experts_per_token} if moe else {}),
            "params": self.n_params,
            **({"active_params": self.n_active_params} if moe else {}),
        }


_FAMILIES: dict = {}  # model_type -> family adapter, filled on first use

# Fused expert weights (E, rows, hidden) run through torch's grouped GEMM, which needs every row to
# start 16 bytes apart: multiples of 8 channels in bf16/fp16 (transformers 5.x's default, on CPU too).
GROUPED_GEMM_MULTIPLE = 8

# transformers bookkeeping that to_dict() adds and from_pretrained recomputes: never carried in `extra`.
HF_BOOKKEEPING_KEYS = frozenset(
    {
        "transformers_version",
        "_name_or_path",
        "output_attentions",
        "output_hidden_states",
        "return_dict",
        "id2label",
        "label2id",
        "problem_type",
        "_attn_implementation_autoset",
    }
)

# Config keys every family adapter owns (reads into Architecture and writes back); each adds its own.
COMMON_CONFIG_KEYS = HF_BOOKKEEPING_KEYS | {
    "model_type",
    "architectures",
    "num_hidden_layers",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "tie_word_embeddings",
}


_FLOAT_TAGS = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


def decode_special_floats(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__float__"} and value["__float__"] in _FLOAT_TAGS:
            return _FLOAT_TAGS[value["__float__"]]
        return {k: decode_special_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_special_floats(v) for v in value]
    return value


def encode_special_floats(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, dict):
        return {k: encode_special_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_special_floats(v) for v in value]
    return value


def positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise MinitronError(f"{name} must be a positive integer, got {value!r}")


def multiple(what: str, value: int, unit_name: str, unit: int) -> None:
    if value % unit:
        raise MinitronError(
            f"{what} ({value}) must be a multiple of {unit_name} ({unit}); nearest legal: {nearest_multiples(value, unit)}"
        )


def nearest_multiples(value: int, step: int) -> str:
    below = (value // step) * step
    above = below + step
    return f"{below} or {above}" if below > 0 else f"{above}"


def _is_subsequence(small: str, big: str) -> bool:
    it = iter(big)
    return all(c in it for c in small)
