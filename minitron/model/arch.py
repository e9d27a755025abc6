"""One immutable description of an architecture: what search speaks, what prune targets.

An `Architecture` is derived from a Hugging Face config, can be changed (`with_sizes`,
`drop_blocks`) and turned back into a config dict. Parameter counts come from it alone, so a 12B
model can be sized without allocating anything.

Blocks are written as the NemotronH pattern characters: `M` Mamba-2 mixer, `-` MLP, `*` attention.
Every block is `x + mixer(RMSNorm(x))`, so a dense Llama-family layer is the pair `*-`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from minitron.errors import MinitronError

MAMBA, MLP, ATTENTION = "M", "-", "*"
BLOCK_NAMES = {MAMBA: "mamba", MLP: "mlp", ATTENTION: "attention"}
# NemotronH's `layers_block_type` vocabulary, one entry per pattern character.
HF_BLOCK_TYPES = {MAMBA: "linear_attention", MLP: "mlp", ATTENTION: "full_attention"}
_FROM_HF_BLOCK_TYPE = {v: k for k, v in HF_BLOCK_TYPES.items()}

SUPPORTED_MODEL_TYPES = ("nemotron_h",)


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
    model_type: str = "nemotron_h"
    # Every other field of the source config (eps, token ids, dtype, ...), carried through unchanged.
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        bad = set(self.pattern) - set(BLOCK_NAMES)
        if bad:
            raise MinitronError(
                f"block pattern has unknown block types {sorted(bad)}; known: M (Mamba), - (MLP), * (attention)"
            )
        if not self.pattern:
            raise MinitronError("an architecture needs at least one block")
        for name in ("hidden", "vocab"):
            _positive(name, getattr(self, name))
        if MLP in self.pattern:
            _positive("ffn", self.ffn)
        if ATTENTION in self.pattern:
            for name in ("attn_heads", "kv_heads", "head_dim"):
                _positive(name, getattr(self, name))
            if self.attn_heads % self.kv_heads:
                raise MinitronError(
                    f"attention heads ({self.attn_heads}) must be a multiple of KV heads ({self.kv_heads}); "
                    f"nearest legal: {nearest_multiples(self.attn_heads, self.kv_heads)}"
                )
        if MAMBA in self.pattern:
            for name in ("mamba_heads", "mamba_head_dim", "mamba_groups", "ssm_state", "conv_kernel"):
                _positive(name, getattr(self, name))
            if self.mamba_heads % self.mamba_groups:
                raise MinitronError(
                    f"Mamba heads ({self.mamba_heads}) must be a multiple of Mamba groups ({self.mamba_groups}); "
                    f"nearest legal: {nearest_multiples(self.mamba_heads, self.mamba_groups)}"
                )

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def n_blocks(self) -> int:
        return len(self.pattern)

    def count(self, kind: str) -> int:
        return self.pattern.count(kind)

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

    @property
    def mamba_in_proj_rows(self) -> int:
        # Order: [z | x | B | C | dt] = [d_inner | d_inner | g*state | g*state | heads]
        return self.mamba_inner + self.mamba_conv_dim + self.mamba_heads

    # ---- parameter counts ----------------------------------------------------------------------
    def block_params(self, kind: str) -> int:
        """Parameters of one block of `kind`, its pre-norm included."""
        h = self.hidden
        norm = h
        if kind == MAMBA:
            in_proj = h * self.mamba_in_proj_rows + (self.mamba_in_proj_rows if self.mamba_proj_bias else 0)
            conv = self.mamba_conv_dim * self.conv_kernel + (self.mamba_conv_dim if self.conv_bias else 0)
            per_head = 3 * self.mamba_heads  # dt_bias, A_log, D
            gated_norm = self.mamba_inner
            out_proj = self.mamba_inner * h + (h if self.mamba_proj_bias else 0)
            return norm + in_proj + conv + per_head + gated_norm + out_proj
        if kind == MLP:
            bias = (self.ffn + h) if self.mlp_bias else 0
            return norm + 2 * h * self.ffn + bias
        if kind == ATTENTION:
            # NemotronH attention has no biases and no QK norm.
            q_width, kv_width = self.attn_heads * self.head_dim, self.kv_heads * self.head_dim
            return norm + h * q_width + 2 * h * kv_width + q_width * h
        raise MinitronError(f"unknown block type {kind!r}")

    def params_by_part(self) -> dict[str, int]:
        """Parameters split into embeddings, lm_head, final norm and each block type (all blocks of it)."""
        counts = Counter(self.pattern)
        parts = {
            "embeddings": self.vocab * self.hidden,
            # transformers' NemotronHForCausalLM declares no tied weights (`_tied_weights_keys = {}`), so
            # lm_head is its own parameter even when the config says tie_word_embeddings=true.
            "lm_head": self.vocab * self.hidden,
            "final_norm": self.hidden,
        }
        for kind, name in BLOCK_NAMES.items():
            parts[name] = counts.get(kind, 0) * self.block_params(kind)
        return parts

    @property
    def n_params(self) -> int:
        return sum(self.params_by_part().values())

    # ---- changes -------------------------------------------------------------------------------
    def with_sizes(self, **sizes: int) -> Architecture:
        """A copy with some axis sizes changed (hidden, ffn, attn_heads, mamba_heads, ...); validated."""
        unknown = set(sizes) - PRUNABLE_AXES
        if unknown:
            raise MinitronError(f"cannot change {sorted(unknown)}; prunable axes: {sorted(PRUNABLE_AXES)}")
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
        problems = []
        for axis in sorted(PRUNABLE_AXES):
            if getattr(self, axis) > getattr(source, axis):
                problems.append(f"{axis} {getattr(self, axis)} > source {getattr(source, axis)}")
        for name in ("kv_heads", "mamba_groups", "ssm_state", "conv_kernel", "vocab", "model_type"):
            if getattr(self, name) != getattr(source, name):
                problems.append(f"{name} {getattr(self, name)} differs from source {getattr(source, name)}")
        if not _is_subsequence(self.pattern, source.pattern):
            problems.append("block pattern is not the source pattern with blocks removed")
        return problems

    # ---- HF config round trip ------------------------------------------------------------------
    @classmethod
    def from_hf_config(cls, config: Any) -> Architecture:
        """From a transformers config object or a config.json dict."""
        d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        model_type = d.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise MinitronError(
                f"unsupported architecture {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        pattern = _pattern_from_config(d)
        # config.json spells inf/nan as {"__float__": "Infinity"} (transformers' encoding); hold real floats.
        extra = {k: _decode_special_floats(v) for k, v in d.items() if k not in _OWNED_CONFIG_KEYS}
        # Read a sparse config.json the way transformers does: its defaults fill missing fields, and
        # the legacy names (mamba_n_groups, ...) win over the new ones when both are present.
        # An explicit null KV-head count means "as many as query heads" (NemotronHConfig.__post_init__).
        kv_heads = d.get("num_key_value_heads", _NEMOTRON_H_DEFAULTS["num_key_value_heads"])
        d = {**_NEMOTRON_H_DEFAULTS, **{k: v for k, v in d.items() if v is not None}}
        for legacy, name in _LEGACY_CONFIG_NAMES.items():
            if legacy in d:
                d[name] = d[legacy]
        return cls(
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
            model_type=model_type,
            extra=extra,
        )

    def to_config_json(self) -> str:
        """config.json text for these sizes, with inf/nan encoded the way transformers writes them."""
        return json.dumps(_encode_special_floats(self.to_config_dict()), indent=2, sort_keys=True) + "\n"

    def to_config_dict(self) -> dict[str, Any]:
        """A config dict (plain Python values, inf included) that describes exactly these sizes."""
        d = dict(self.extra)
        d.update(
            model_type=self.model_type,
            architectures=["NemotronHForCausalLM"],
            layers_block_type=[HF_BLOCK_TYPES[c] for c in self.pattern],
            hidden_size=self.hidden,
            intermediate_size=self.ffn,
            num_attention_heads=self.attn_heads,
            num_key_value_heads=self.kv_heads,
            head_dim=self.head_dim,
            mamba_num_heads=self.mamba_heads,
            mamba_head_dim=self.mamba_head_dim,
            n_groups=self.mamba_groups,
            ssm_state_size=self.ssm_state,
            conv_kernel=self.conv_kernel,
            vocab_size=self.vocab,
            tie_word_embeddings=self.tied_embeddings,
            use_bias=self.mamba_proj_bias,
            use_conv_bias=self.conv_bias,
            mlp_bias=self.mlp_bias,
        )
        # Mamba's `expand` is informational in NemotronH (d_inner = heads x head_dim); keep it honest.
        d["expand"] = max(1, self.mamba_inner // self.hidden) if self.mamba_inner else d.get("expand", 2)
        return d

    def to_hf_config(self):
        """A transformers config object (imports transformers)."""
        from transformers import AutoConfig

        d = self.to_config_dict()
        return AutoConfig.for_model(d.pop("model_type"), **d)

    def summary(self) -> dict[str, Any]:
        """The prunable sizes as a plain dict (for tables and JSON)."""
        return {
            "blocks": self.n_blocks,
            "pattern": self.pattern,
            "mamba_blocks": self.count(MAMBA),
            "mlp_blocks": self.count(MLP),
            "attention_blocks": self.count(ATTENTION),
            **{axis: getattr(self, axis) for axis in sorted(PRUNABLE_AXES)},
            "params": self.n_params,
        }


PRUNABLE_AXES = frozenset({"hidden", "ffn", "attn_heads", "mamba_heads", "mamba_head_dim"})

# Config keys that Architecture owns (and rewrites); the rest ride along in `extra`.
_OWNED_CONFIG_KEYS = frozenset(
    {
        "model_type",
        "architectures",
        "layers_block_type",
        "layer_types",
        "hybrid_override_pattern",
        "num_hidden_layers",
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "mamba_num_heads",
        "mamba_head_dim",
        "n_groups",
        "mamba_n_groups",
        "ssm_state_size",
        "conv_kernel",
        "mamba_d_conv",
        "vocab_size",
        "tie_word_embeddings",
        "use_bias",
        "use_conv_bias",
        "mamba_conv_bias",
        "mlp_bias",
        "expand",
        "mamba_expand",
        # transformers bookkeeping that to_dict() adds and from_pretrained recomputes
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


# transformers 5.x NemotronHConfig defaults for the fields read above (tests check them against it).
_NEMOTRON_H_DEFAULTS: dict[str, Any] = {
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
}
# Legacy config names NemotronHConfig still accepts; when present they override the new name.
_LEGACY_CONFIG_NAMES = {
    "mamba_n_groups": "n_groups",
    "mamba_d_conv": "conv_kernel",
    "mamba_conv_bias": "use_conv_bias",
}


def _pattern_from_config(d: dict[str, Any]) -> str:
    types = d.get("layers_block_type") or d.get("layer_types")
    if types:
        unknown = sorted(set(types) - set(_FROM_HF_BLOCK_TYPE))
        if unknown:
            raise MinitronError(
                f"unsupported block types {unknown} (MoE is not supported yet); supported: "
                + ", ".join(sorted(_FROM_HF_BLOCK_TYPE))
            )
        return "".join(_FROM_HF_BLOCK_TYPE[t] for t in types)
    pattern = d.get("hybrid_override_pattern")
    if pattern:
        if "E" in pattern:
            raise MinitronError("MoE blocks (E) are not supported yet; supported blocks: M, -, *")
        return pattern
    raise MinitronError("config has neither layers_block_type nor hybrid_override_pattern")


_FLOAT_TAGS = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


def _decode_special_floats(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__float__"} and value["__float__"] in _FLOAT_TAGS:
            return _FLOAT_TAGS[value["__float__"]]
        return {k: _decode_special_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_special_floats(v) for v in value]
    return value


def _encode_special_floats(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, dict):
        return {k: _encode_special_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_special_floats(v) for v in value]
    return value


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise MinitronError(f"{name} must be a positive integer, got {value!r}")


def nearest_multiples(value: int, step: int) -> str:
    below = (value // step) * step
    above = below + step
    return f"{below} or {above}" if below > 0 else f"{above}"


def _is_subsequence(small: str, big: str) -> bool:
    it = iter(big)
    return all(c in it for c in small)
