"""Mixture-of-experts configs (NemotronH `E` blocks, Qwen3-MoE layers) against transformers: configs,
total and active parameter counts, and every memory term."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from test_memory import measured_cache_bytes
from tiny_models import MOE_CONFIGS, moe_arch
from transformers import AutoConfig, AutoModelForCausalLM

from minitron.errors import MinitronError
from minitron.estimate import EstimateConfig, run_estimate
from minitron.memory import estimate_memory
from minitron.model.arch import MOE, Architecture
from minitron.model.axes import width_axes
from minitron.model.load import build_model, resolve_model
from minitron.model.nemotron_h import NEMOTRON_H_DEFAULTS
from minitron.model.qwen3_moe import CONFIG_DEFAULTS as QWEN3_MOE_DEFAULTS

PRESETS = {"nemotron-3-nano-30b-a3b": 31_577_937_344, "qwen3-30b-a3b": None}


def _meta_model(arch: Architecture):
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(arch.to_hf_config())


def _counts(model) -> tuple[int, int]:
    """(total, active) from the model's own tensors: active leaves out all but top-k of every fused
    routed-expert tensor (the 3-D parameters of each `experts` module)."""
    total = sum(p.numel() for p in model.parameters())
    inactive = 0
    for name, module in model.named_modules():
        if name.endswith(".experts") and hasattr(module, "down_proj"):
            experts = module.down_proj.shape[0]
            top_k = model.config.num_experts_per_tok
            inactive += sum(p.numel() for p in module.parameters()) * (experts - top_k) // experts
    return total, total - inactive


def _variants(arch: Architecture) -> list[Architecture]:
    """The architecture and prunings of every MoE axis, a hidden channel and one MoE block."""
    moe_block = arch.pattern.index("E" if "E" in arch.pattern else "S")
    pruned = arch.with_sizes(experts=4, expert_ffn=8, hidden=24).drop_blocks([moe_block])
    if arch.shared_ffn:
        pruned = pruned.with_sizes(shared_ffn=10)
    return [arch, pruned]


@pytest.mark.parametrize("name", MOE_CONFIGS)
def test_total_and_active_parameters_equal_transformers(name):
    for arch in _variants(moe_arch(name)):
        assert (arch.n_params, arch.n_active_params) == _counts(_meta_model(arch))
        assert arch.n_active_params < arch.n_params
        assert sum(arch.active_params_by_part().values()) == arch.n_active_params


@pytest.mark.parametrize("name", PRESETS)
def test_presets_count_what_transformers_counts(name):
    arch = resolve_model(name).architecture
    total, active = _counts(_meta_model(arch))
    assert (arch.n_params, arch.n_active_params) == (total, active)
    if PRESETS[name] is not None:
        assert arch.n_params == PRESETS[name]


def test_nemotron_3_nano_preset_is_the_public_config():
    arch = resolve_model("nemotron-3-nano-30b-a3b").architecture
    assert arch.pattern == "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME"
    assert (arch.count("M"), arch.count(MOE), arch.count("*")) == (23, 23, 6)
    assert (arch.experts, arch.experts_per_token, arch.expert_ffn, arch.shared_ffn) == (128, 6, 1856, 3712)
    assert 3.4e9 < arch.n_active_params < 3.7e9  # "A3B": about 3.5B active


def test_qwen3_30b_a3b_preset():
    arch = resolve_model("qwen3-30b-a3b").architecture
    assert arch.pattern == "S" * 48 and (arch.experts, arch.experts_per_token, arch.expert_ffn) == (
        128,
        8,
        768,
    )
    assert (arch.attn_heads, arch.kv_heads, arch.head_dim, arch.qk_norm) == (32, 4, 128, True)
    assert 30.4e9 < arch.n_params < 30.6e9 and 3.2e9 < arch.n_active_params < 3.4e9


@pytest.mark.parametrize("name", MOE_CONFIGS)
def test_config_round_trip_through_transformers(name):
    for arch in _variants(moe_arch(name)):
        config = arch.to_hf_config()
        assert Architecture.from_hf_config(config) == arch
        assert Architecture.from_hf_config(json.loads(arch.to_config_json())) == arch
        # the router settings ride along unchanged
        assert config.num_experts_per_tok == 2 and config.norm_topk_prob is True


def test_nemotron_h_block_type_names_old_and_new():
    base = {k: v for k, v in MOE_CONFIGS["nemotron_h"].items() if k != "hybrid_override_pattern"}
    arch = moe_arch("nemotron_h")
    new = ["linear_attention", "moe", "full_attention", "moe", "linear_attention", "mlp", "moe"]
    old = ["mamba", "moe", "attention", "moe", "mamba", "mlp", "moe"]
    for types in (new, old):
        assert Architecture.from_hf_config({**base, "layers_block_type": types}) == arch
    assert arch.to_config_dict()["layers_block_type"] == new
    alias = {**MOE_CONFIGS["nemotron_h"], "num_local_experts": 8}
    del alias["n_routed_experts"]
    assert Architecture.from_hf_config(alias) == arch


def test_qwen3_moe_sparse_layers_follow_the_config_rule():
    base = MOE_CONFIGS["qwen3_moe"]
    assert moe_arch("qwen3_moe").pattern == "SDSS"
    every_second = Architecture.from_hf_config({**base, "mlp_only_layers": [], "decoder_sparse_step": 2})
    assert every_second.pattern == "DSDS"
    config = every_second.to_hf_config()  # written as explicit mlp_only_layers
    model = _meta_model(every_second)
    assert ["experts" in dict(layer.mlp.named_children()) for layer in model.model.layers] == [
        False, True, False, True
    ]  # fmt: skip
    assert config.mlp_only_layers == [0, 2]
    assert Architecture.from_hf_config({**base, "num_experts": 0}).pattern == "DDDD"


@pytest.mark.parametrize(
    ("family", "defaults", "keys"),
    [
        (
            "nemotron_h",
            NEMOTRON_H_DEFAULTS,
            ["n_routed_experts", "num_experts_per_tok", "moe_intermediate_size"],
        ),
        ("qwen3_moe", QWEN3_MOE_DEFAULTS, list(QWEN3_MOE_DEFAULTS)),
    ],
)
def test_moe_defaults_are_transformers_defaults(family, defaults, keys):
    config = AutoConfig.for_model(family)
    for key in keys:
        if defaults[key] is not None:
            assert getattr(config, key) == defaults[key], key


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"moe_latent_size": 16},
            r"latent MoE \(moe_latent_size=16, Nemotron 3 Super\) is not supported yet",
        ),
        ({"num_nextn_predict_layers": 1}, r"multi-token prediction layers .* not supported yet"),
        (
            {"n_group": 3},
            r"experts \(8\) must split evenly into the router's 3 groups .*nearest legal: 6 or 9",
        ),
        ({"n_group": 8}, r"fewer than two per group"),
        (
            {"n_group": 4, "topk_group": 1, "num_experts_per_tok": 3},
            r"leave 2 experts to route to; .* needs 3",
        ),
        ({"num_experts_per_tok": 9}, r"experts \(8\) must be at least .*num_experts_per_tok 9"),
        ({"moe_intermediate_size": 0}, r"expert_ffn must be a positive integer"),
    ],
)
def test_unsupported_or_impossible_moe_configs_are_one_clear_error(change, message):
    with pytest.raises(MinitronError, match=message):
        Architecture.from_hf_config({**MOE_CONFIGS["nemotron_h"], **change})


def test_pruned_expert_counts_keep_the_router_rules():
    arch = Architecture.from_hf_config({**MOE_CONFIGS["nemotron_h"], "n_group": 2, "topk_group": 2})
    assert arch.with_sizes(experts=4).experts == 4
    with pytest.raises(MinitronError, match="nearest legal: 4 or 6"):
        arch.with_sizes(experts=5)
    with pytest.raises(MinitronError, match="at least the experts every token is routed to"):
        moe_arch("qwen3_moe").with_sizes(experts=1)


def test_moe_axes_are_absent_from_models_without_moe(tiny_arch):
    moe_axes = {a.name for a in width_axes() if a.part == MOE}
    assert moe_axes and moe_axes <= tiny_arch.absent_axes()
    assert moe_arch("qwen3_moe").absent_axes() >= {"shared_ffn"}
    assert not moe_axes & moe_arch("nemotron_h").absent_axes()
    assert "experts" not in tiny_arch.summary() and tiny_arch.n_active_params == tiny_arch.n_params


@pytest.mark.parametrize("name", MOE_CONFIGS)
@pytest.mark.parametrize(("dtype", "batch", "tokens"), [("float32", 2, 13), ("bfloat16", 1, 3)])
def test_every_memory_term_equals_transformers_after_prefill(name, dtype, batch, tokens):
    arch = moe_arch(name)
    model = build_model(arch, dtype=dtype, seed=0)
    ids = torch.randint(3, arch.vocab, (batch, tokens), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cache = model(ids, use_cache=True).cache
    estimate = estimate_memory(arch, context_tokens=tokens, batch=batch, weight_dtype=dtype)
    measured = measured_cache_bytes(cache)
    assert measured == {
        "kv": estimate.kv_cache_bytes,
        "ssm": estimate.ssm_state_bytes,
        "conv": estimate.conv_state_bytes,
    }
    assert measured["kv"] > 0 and (measured["ssm"] > 0) == ("M" in arch.pattern)
    # every expert is resident: the checkpoint's bytes (float32 routers and their bias buffers included)
    assert estimate.weights_bytes == sum(t.numel() * t.element_size() for t in model.state_dict().values())


def test_estimate_reports_active_parameters():
    report = run_estimate(EstimateConfig.from_options(model="nemotron-3-nano-30b-a3b", context="8k"))
    params = report.to_dict()["params"]
    arch = report.architecture
    assert params["total"] == 31_577_937_344 and params["active"] == arch.n_active_params
    assert params["active_by_part"]["moe"] < params["by_part"]["moe"]
    assert params["active_by_part"]["mamba"] == params["by_part"]["mamba"]
    assert report.to_dict()["architecture"]["active_params"] == arch.n_active_params


def test_estimate_table_has_an_active_column_only_for_moe(tmp_path):
    from typer.testing import CliRunner

    from minitron.cli import app

    out = CliRunner().invoke(app, ["estimate", "qwen3-30b-a3b", "--context", "4k"])
    assert out.exit_code == 0, out.output
    assert (
        "active" in out.output
        and f"{resolve_model('qwen3-30b-a3b').architecture.n_active_params:,}" in out.output
    )
    dense = CliRunner().invoke(app, ["estimate", "qwen3-8b", "--context", "4k"])
    assert "active" not in dense.output


def test_nemotron_h_models_without_moe_blocks_carry_the_moe_keys_untouched(tiny_arch):
    config = dataclasses.replace(tiny_arch).to_hf_config().to_dict()
    again = Architecture.from_hf_config(config)
    assert again == tiny_arch and again.experts == 0
    assert again.to_config_dict()["n_routed_experts"] == config["n_routed_experts"]
