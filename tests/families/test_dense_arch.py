"""The Llama-family adapter against transformers: configs, parameter counts and every memory term."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from tiny_models import DENSE_CONFIGS, dense_arch
from transformers import AutoConfig, AutoModelForCausalLM

from minitron.errors import MinitronError
from minitron.memory import estimate_memory
from minitron.model.arch import Architecture
from minitron.model.llama import CONFIG_DEFAULTS, HF_CLASSES
from minitron.model.load import build_model, resolve_model

PRESETS = {  # published parameter counts of the public checkpoints
    "llama-3.1-8b": 8_030_261_248,
    "qwen3-8b": 8_190_735_360,
    "mistral-nemo-12b": 12_247_782_400,
}


def _meta_params(arch: Architecture) -> int:
    """transformers' own count: a meta-device model of the config (tied weights counted once)."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(arch.to_hf_config())
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", DENSE_CONFIGS)
def test_parameter_counts_equal_transformers(name):
    arch = dense_arch(name)
    assert arch.n_params == _meta_params(arch)
    # and after pruning every axis and dropping a layer (hidden stays a multiple of the heads for Llama)
    pruned = arch.with_sizes(hidden=20, ffn=17, attn_heads=2).drop_blocks([1])
    assert pruned.n_params == _meta_params(pruned)


@pytest.mark.parametrize("name", PRESETS)
def test_presets_count_the_published_parameters(name):
    arch = resolve_model(name).architecture
    assert arch.n_params == PRESETS[name] == _meta_params(arch)
    assert arch.pattern == "D" * arch.n_blocks


@pytest.mark.parametrize("name", DENSE_CONFIGS)
def test_config_round_trip_through_transformers(name):
    arch = dense_arch(name)
    config = arch.to_hf_config()
    assert type(config).__name__ == HF_CLASSES[arch.model_type].replace("ForCausalLM", "Config")
    again = Architecture.from_hf_config(config)
    assert again == arch
    # head_dim is always written: after pruning heads, hidden // heads would be wrong
    pruned = arch.with_sizes(attn_heads=2, hidden=24)
    assert pruned.to_hf_config().head_dim == arch.head_dim
    assert Architecture.from_hf_config(json.loads(pruned.to_config_json())) == pruned


def test_what_each_model_type_has():
    has = {n: (a.attn_qkv_bias, a.attn_out_bias, a.qk_norm, a.mlp_bias, a.tied_embeddings)
           for n in DENSE_CONFIGS for a in [dense_arch(n)]}  # fmt: skip
    assert has == {
        "llama": (False, False, False, False, False),
        "llama-biases-tied": (True, True, False, True, True),
        "qwen2": (True, False, False, False, False),
        "qwen3-tied": (False, False, True, False, True),
        "mistral": (False, False, False, False, False),
    }


@pytest.mark.parametrize("model_type", HF_CLASSES)
def test_config_defaults_are_transformers_defaults(model_type):
    """A sparse config.json is read with transformers' defaults for the fields the adapter owns."""
    config = AutoConfig.for_model(model_type)
    for key, value in CONFIG_DEFAULTS[model_type].items():
        if value is None or not hasattr(config, key):  # derived (kv heads, head_dim) or not in this class
            continue
        assert getattr(config, key) == value, key
    arch = Architecture.from_hf_config({"model_type": model_type, "sliding_window": None})
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    assert arch.head_dim == head_dim and arch.kv_heads == config.num_key_value_heads


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"model_type": "mistral"}, r"sliding-window attention \(sliding_window=4096\) is not supported"),
        ({"model_type": "mistral", "sliding_window": 512}, r"sliding_window=512"),
        (
            {
                "model_type": "qwen2",
                "use_sliding_window": True,
                "num_hidden_layers": 4,
                "max_window_layers": 2,
            },
            r"qwen2: sliding-window",
        ),
        ({"model_type": "qwen3", "layer_types": ["full_attention", "sliding_attention"]}, r"sliding-window"),
        ({"model_type": "llama", "hidden_size": 30, "num_attention_heads": 4, "head_dim": 8}, r"multiple"),
    ],
)
def test_unsupported_dense_configs_are_one_clear_error(config, message):
    with pytest.raises(MinitronError, match=message):
        Architecture.from_hf_config(config)


def test_qwen_sliding_window_flag_without_sliding_layers_is_accepted():
    arch = Architecture.from_hf_config(
        {"model_type": "qwen2", "use_sliding_window": True, "num_hidden_layers": 4, "max_window_layers": 28}
    )
    assert arch.n_blocks == 4


def test_dense_blocks_are_refused_in_a_nemotron_h_architecture(tiny_arch):
    with pytest.raises(MinitronError, match="NemotronH models have no layer blocks"):
        dataclasses.replace(tiny_arch, pattern="MD-")
    with pytest.raises(MinitronError, match="Llama models have no mamba blocks"):
        dataclasses.replace(dense_arch("llama"), pattern="DMD")


def _cache_bytes(cache) -> int:
    total = 0
    for layer in cache.layers:
        for attr, value in vars(layer).items():
            if isinstance(value, torch.Tensor):
                assert attr in ("keys", "values"), f"{type(layer).__name__}.{attr}: unmodelled tensor"
                total += value.numel() * value.element_size()
    return total


@pytest.mark.parametrize("name", DENSE_CONFIGS)
@pytest.mark.parametrize(("dtype", "batch", "tokens"), [("float32", 2, 13), ("bfloat16", 1, 5)])
def test_kv_cache_equals_transformers_cache_after_prefill(name, dtype, batch, tokens):
    arch = dense_arch(name).drop_blocks([2])  # a pruned depth too
    model = build_model(arch, dtype=dtype, seed=0)
    ids = torch.randint(3, arch.vocab, (batch, tokens), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cache = model(ids, use_cache=True).cache
    estimate = estimate_memory(arch, context_tokens=tokens, batch=batch, weight_dtype=dtype)
    assert _cache_bytes(cache) == estimate.kv_cache_bytes > 0
    assert estimate.ssm_state_bytes == estimate.conv_state_bytes == 0
    assert estimate.weights_bytes == sum(p.numel() * p.element_size() for p in model.parameters())


def test_preset_kv_cache_at_128k():
    """Llama-3.1-8B at 128k in bf16: 32 layers x 2 x 8 KV heads x 128 x 131072 tokens x 2 bytes = 16 GiB."""
    arch = resolve_model("llama-3.1-8b").architecture
    assert estimate_memory(arch, context_tokens=131072).kv_cache_bytes == 16 * 2**30


@pytest.mark.parametrize("name", PRESETS)
def test_preset_cache_tensors_on_the_meta_device(name):
    """The full-size presets' real DynamicCache after a prefill (shapes and dtypes on the meta device,
    nothing allocated) holds exactly the estimated KV bytes."""
    arch = resolve_model(name).architecture
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(arch.to_hf_config(), dtype=torch.bfloat16)
        cache = model(torch.zeros(2, 16, dtype=torch.long), use_cache=True).cache
    assert _cache_bytes(cache) == estimate_memory(arch, context_tokens=16, batch=2).kv_cache_bytes


@pytest.mark.parametrize("name", [*DENSE_CONFIGS, "nemotron"])
def test_ffn_unit_params_is_the_slope_of_the_parameter_count(name, tiny_arch):
    """What the search's closed-form FFN solve relies on."""
    arch = tiny_arch if name == "nemotron" else dense_arch(name)
    for a in (arch, arch.with_sizes(hidden=arch.hidden // 2).drop_blocks([0])):
        assert a.with_sizes(ffn=a.ffn + 5).n_params - a.n_params == 5 * a.family.ffn_unit_params(a)
