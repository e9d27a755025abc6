"""Architecture: exact parameter counts against transformers, config round trips, changes, bad sizes."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.models.nemotron_h.configuration_nemotron_h import NemotronHConfig

from minitron.errors import MinitronError
from minitron.model import nemotron_h
from minitron.model.arch import Architecture
from minitron.model.load import PRESET_DIR, build_model

PRESET_PARAMS = {
    "nemotron-nano-12b-v2-base": 12_310_001_152,
    "nemotron-nano-9b-v2": 8_888_227_328,
    "nemotron-h-8b-base-8k": None,  # no published exact figure; checked against transformers only
}
BLOCK_TYPE = {"linear_attention": "mamba", "mlp": "mlp", "full_attention": "attention"}


def preset_config(name: str) -> dict:
    return json.loads((PRESET_DIR / f"{name}.json").read_text())


def meta_model(arch: Architecture):
    return build_model(arch, device="meta")


def counted_by_part(model) -> dict[str, int]:
    """sum(p.numel()) of a transformers NemotronH model, split the way params_by_part splits it."""
    parts = {"embeddings": 0, "lm_head": 0, "final_norm": 0, "mamba": 0, "mlp": 0, "attention": 0}
    types = model.config.layers_block_type
    for name, p in model.named_parameters():
        if name.startswith("model.embeddings."):
            parts["embeddings"] += p.numel()
        elif name.startswith("lm_head."):
            parts["lm_head"] += p.numel()
        elif name.startswith("model.norm_f."):
            parts["final_norm"] += p.numel()
        else:
            index = int(name.split(".")[2])  # model.layers.<i>.(norm|mixer).…
            parts[BLOCK_TYPE[types[index]]] += p.numel()
    return parts


# ---- exact parameter counts -----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PRESET_PARAMS))
def test_preset_param_count_equals_transformers(name):
    arch = Architecture.from_hf_config(preset_config(name))
    model = meta_model(arch)
    assert arch.n_params == sum(p.numel() for p in model.parameters())
    assert arch.params_by_part() == counted_by_part(model)
    if PRESET_PARAMS[name] is not None:
        assert arch.n_params == PRESET_PARAMS[name]


@st.composite
def architectures(draw) -> Architecture:
    kv_heads = draw(st.integers(1, 4))
    groups = draw(st.integers(1, 3))
    return Architecture(
        pattern=draw(st.text(alphabet="M-*", min_size=1, max_size=6)),
        hidden=draw(st.integers(1, 48)),
        ffn=draw(st.integers(1, 64)),
        attn_heads=kv_heads * draw(st.integers(1, 3)),
        kv_heads=kv_heads,
        head_dim=draw(st.integers(1, 16)),
        mamba_heads=groups * draw(st.integers(1, 3)),
        mamba_head_dim=draw(st.integers(1, 8)),
        mamba_groups=groups,
        ssm_state=draw(st.integers(1, 8)),
        conv_kernel=draw(st.integers(1, 5)),
        vocab=draw(st.integers(1, 100)),
        tied_embeddings=draw(st.booleans()),
        mamba_proj_bias=draw(st.booleans()),
        conv_bias=draw(st.booleans()),
        mlp_bias=draw(st.booleans()),
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=architectures())
def test_param_count_equals_transformers_for_random_architectures(arch):
    model = meta_model(arch)
    assert arch.n_params == sum(p.numel() for p in model.parameters())
    assert arch.params_by_part() == counted_by_part(model)


# ---- round trips ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PRESET_PARAMS))
def test_config_round_trip_through_transformers(name):
    """config -> arch -> config -> transformers model; the model's config gives the same arch back."""
    arch = Architecture.from_hf_config(preset_config(name))
    config = arch.to_config_dict()
    assert Architecture.from_hf_config(config) == arch
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.bfloat16)
    back = Architecture.from_hf_config(model.config)
    assert back == arch
    # fields minitron does not own ride along unchanged
    for key in (
        "layer_norm_epsilon",
        "mamba_ssm_cache_dtype",
        "chunk_size",
        "eos_token_id",
        "rescale_prenorm_residual",
    ):
        assert back.extra[key] == preset_config(name)[key]


def test_round_trip_keeps_flags_and_extra(tiny_arch):
    arch = dataclasses.replace(
        tiny_arch, mamba_proj_bias=True, conv_bias=False, mlp_bias=True, tied_embeddings=True
    )
    back = Architecture.from_hf_config(meta_model(arch).config)
    assert back == arch
    assert back.extra["chunk_size"] == 8 and back.extra["layer_norm_epsilon"] == 1e-5


def test_saved_checkpoint_config_round_trips(tiny_checkpoint, tiny_arch):
    saved = json.loads((tiny_checkpoint / "config.json").read_text())
    assert Architecture.from_hf_config(saved) == tiny_arch


# ---- block patterns -------------------------------------------------------------------------------
def test_hybrid_override_pattern_and_layers_block_type_are_both_read(tiny_arch):
    config = tiny_arch.to_config_dict()
    legacy = {k: v for k, v in config.items() if k != "layers_block_type"}
    legacy["hybrid_override_pattern"] = tiny_arch.pattern
    assert Architecture.from_hf_config(legacy).pattern == tiny_arch.pattern
    assert Architecture.from_hf_config(config).pattern == tiny_arch.pattern
    # transformers reads both the same way
    assert (
        NemotronHConfig(**{k: v for k, v in legacy.items() if k != "model_type"}).layers_block_type
        == (config["layers_block_type"])
    )


def test_layers_block_type_wins_over_hybrid_override_pattern_like_transformers(tiny_arch):
    config = tiny_arch.to_config_dict()
    config["hybrid_override_pattern"] = "M" * len(tiny_arch.pattern)
    hf = NemotronHConfig(**{k: v for k, v in config.items() if k != "model_type"})
    assert Architecture.from_hf_config(config).pattern == hf.hybrid_override_pattern == tiny_arch.pattern


def test_unknown_block_types_are_rejected_naming_supported_types(tiny_arch):
    config = tiny_arch.to_config_dict()
    config["layers_block_type"] = ["linear_attention", "moe", "cross_attention"]
    with pytest.raises(
        MinitronError, match=r"'cross_attention'.*supported: .*full_attention, linear_attention.*moe"
    ):
        Architecture.from_hf_config(config)
    legacy = {k: v for k, v in config.items() if k != "layers_block_type"}
    legacy["hybrid_override_pattern"] = "ME*X"
    with pytest.raises(MinitronError, match=r"unknown block types \['X'\]; known: M, -, \*, E"):
        Architecture.from_hf_config(legacy)


def test_unsupported_model_type_names_supported():
    with pytest.raises(
        MinitronError,
        match=r"unsupported architecture 'gpt2'; supported: nemotron_h, llama, qwen2, qwen3, mistral, qwen3_moe",
    ):
        Architecture.from_hf_config({"model_type": "gpt2", "hidden_size": 8})


# ---- reading sparse and legacy configs the way transformers does ----------------------------------
def test_defaults_match_transformers_nemotron_h_config():
    fields = {f.name: f.default for f in dataclasses.fields(NemotronHConfig)}
    for key, value in nemotron_h.NEMOTRON_H_DEFAULTS.items():
        assert fields[key] == value, key


def test_sparse_config_reads_like_transformers():
    sparse = {"model_type": "nemotron_h", "hybrid_override_pattern": "M-*", "hidden_size": 64}
    hf = NemotronHConfig(hybrid_override_pattern="M-*", hidden_size=64)
    assert Architecture.from_hf_config(sparse) == Architecture.from_hf_config(hf)


def test_null_kv_heads_means_all_query_heads():
    # Older NemotronH configs wrote null; NemotronHConfig.__post_init__ turned it into the query heads.
    config = {"model_type": "nemotron_h", "hybrid_override_pattern": "*", "num_attention_heads": 6}
    config["num_key_value_heads"] = None
    assert Architecture.from_hf_config(config).kv_heads == 6


def test_legacy_names_override_new_names_like_transformers(tiny_arch):
    config = tiny_arch.to_config_dict()
    config.update(mamba_n_groups=4, mamba_d_conv=3, mamba_conv_bias=False)
    hf = NemotronHConfig(**{k: v for k, v in config.items() if k != "model_type"})
    arch = Architecture.from_hf_config(config)
    assert (arch.mamba_groups, arch.conv_kernel, arch.conv_bias) == (
        hf.n_groups,
        hf.conv_kernel,
        hf.use_conv_bias,
    )
    assert (arch.mamba_groups, arch.conv_kernel, arch.conv_bias) == (4, 3, False)


def test_mamba_proj_bias_follows_use_bias_like_transformers(tiny_arch):
    config = tiny_arch.to_config_dict()
    config.update(use_bias=False, mamba_proj_bias=True)
    arch = Architecture.from_hf_config(config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    assert arch.mamba_proj_bias is False
    assert model.model.layers[0].mixer.in_proj.bias is None
    assert arch.n_params == sum(p.numel() for p in model.parameters())


# ---- changes ----------------------------------------------------------------------------------------
def test_with_sizes_changes_only_the_named_axes(tiny_arch):
    smaller = tiny_arch.with_sizes(hidden=24, ffn=40, mamba_heads=6, attn_heads=2)
    assert (smaller.hidden, smaller.ffn, smaller.mamba_heads, smaller.attn_heads) == (24, 40, 6, 2)
    assert smaller.pattern == tiny_arch.pattern and smaller.kv_heads == tiny_arch.kv_heads
    assert smaller.n_params == sum(p.numel() for p in meta_model(smaller).parameters())
    assert smaller.shrinks(tiny_arch) == []
    assert tiny_arch.shrinks(smaller)  # growing back is not pruning


def test_with_sizes_rejects_non_prunable_axes(tiny_arch):
    with pytest.raises(MinitronError, match=r"cannot change \['kv_heads'\]; prunable axes"):
        tiny_arch.with_sizes(kv_heads=1)


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        (
            {"attn_heads": 5},
            r"attention heads \(5\) must be a multiple of KV heads \(2\); nearest legal: 4 or 6",
        ),
        ({"attn_heads": 1}, r"nearest legal: 2$"),
        (
            {"mamba_heads": 7},
            r"Mamba heads \(7\) must be a multiple of Mamba groups \(2\); nearest legal: 6 or 8",
        ),
        ({"hidden": 0}, r"hidden must be a positive integer, got 0"),
        ({"ffn": -64}, r"ffn must be a positive integer, got -64"),
        ({"mamba_head_dim": 0}, r"mamba_head_dim must be a positive integer"),
    ],
)
def test_invalid_sizes_name_the_nearest_legal_values(tiny_arch, sizes, message):
    with pytest.raises(MinitronError, match=message):
        tiny_arch.with_sizes(**sizes)


def test_drop_blocks(tiny_arch):
    dropped = tiny_arch.drop_blocks([0, 2])  # "M-*M-*-M" without blocks 0 (M) and 2 (*)
    assert dropped.pattern == "-M-*-M"
    removed = tiny_arch.block_params("M") + tiny_arch.block_params("*")
    assert dropped.n_params == tiny_arch.n_params - removed
    assert dropped.n_params == sum(p.numel() for p in meta_model(dropped).parameters())
    assert dropped.shrinks(tiny_arch) == []


def test_drop_blocks_rejects_out_of_range_and_everything(tiny_arch):
    with pytest.raises(MinitronError, match=r"block indices \[8\] out of range 0..7"):
        tiny_arch.drop_blocks([8])
    with pytest.raises(MinitronError, match="cannot drop every block"):
        tiny_arch.drop_blocks(range(tiny_arch.n_blocks))


def test_dropping_all_attention_blocks_keeps_a_valid_config(tiny_arch):
    no_attention = tiny_arch.drop_blocks(tiny_arch.block_indices("*"))
    assert "*" not in no_attention.pattern
    assert no_attention.n_params == sum(p.numel() for p in meta_model(no_attention).parameters())


def test_unknown_pattern_characters_are_rejected(tiny_arch):
    with pytest.raises(MinitronError, match=r"unknown block types \['X'\]"):
        dataclasses.replace(tiny_arch, pattern="M-X")


def test_special_floats_in_saved_configs_round_trip(tiny_model, tmp_path):
    """transformers writes inf as {"__float__": "Infinity"}; the description must hold the real float."""
    import json
    import math

    from transformers import AutoConfig

    tiny_model.config.time_step_limit = (0.0, float("inf"))
    tiny_model.config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["time_step_limit"][1] == {"__float__": "Infinity"}
    arch = Architecture.from_hf_config(saved)
    assert math.isinf(arch.extra["time_step_limit"][1])
    assert math.isinf(arch.to_hf_config().time_step_limit[1])
    (tmp_path / "config.json").write_text(arch.to_config_json())
    assert json.loads((tmp_path / "config.json").read_text())["time_step_limit"][1] == {
        "__float__": "Infinity"
    }
    assert math.isinf(AutoConfig.from_pretrained(tmp_path).time_step_limit[1])
