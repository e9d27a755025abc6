"""The memory model against what transformers really allocates, budgets, GPU presets and unit parsing."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from minitron.errors import MinitronError
from minitron.estimate import EstimateConfig, run_estimate
from minitron.memory import (
    ENGINES,
    GPUS,
    Budget,
    conv_state_bytes,
    estimate_memory,
)
from minitron.model.arch import Architecture
from minitron.model.load import build_model, resolve_model
from minitron.units import format_bytes, format_tokens, parse_bytes, parse_dtype, parse_fraction, parse_tokens

GiB = 2**30

# A second shape next to conftest's TINY: attention first, one KV head, one Mamba group, odd kernel.
OTHER = Architecture(
    pattern="*MM-",
    hidden=24,
    ffn=40,
    attn_heads=3,
    kv_heads=1,
    head_dim=16,
    mamba_heads=6,
    mamba_head_dim=2,
    mamba_groups=1,
    ssm_state=16,
    conv_kernel=3,
    vocab=50,
    extra={"chunk_size": 4, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2},
)

# Which term each tensor-holding attribute of a transformers cache layer belongs to.
CACHE_TERMS = {"keys": "kv", "values": "kv", "recurrent_states": "ssm", "conv_states": "conv"}


def measured_cache_bytes(cache) -> dict[str, int]:
    """Bytes of every tensor the cache holds, per term; an unknown tensor fails the test."""
    totals = {"kv": 0, "ssm": 0, "conv": 0}
    for index, layer in enumerate(cache.layers):
        for attr, value in vars(layer).items():
            tensors = list(value.values()) if isinstance(value, dict) else [value]
            for tensor in tensors:
                if not isinstance(tensor, torch.Tensor):
                    continue
                assert attr in CACHE_TERMS, f"layer {index} {type(layer).__name__}.{attr}: unmodelled tensor"
                totals[CACHE_TERMS[attr]] += tensor.numel() * tensor.element_size()
    return totals


def estimated(estimate) -> dict[str, int]:
    return {"kv": estimate.kv_cache_bytes, "ssm": estimate.ssm_state_bytes, "conv": estimate.conv_state_bytes}


def prefill(model, arch: Architecture, batch: int, tokens: int, seed: int = 0):
    ids = torch.randint(3, arch.vocab, (batch, tokens), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(ids, use_cache=True)


# ---- the terms against transformers' own cache tensors ------------------------------------------------
@pytest.mark.parametrize(
    ("which", "dtype", "batch", "tokens"),
    [
        ("tiny", "float32", 2, 13),
        ("tiny", "bfloat16", 3, 2),  # fewer tokens than the conv kernel: the conv state is padded
        ("other", "float32", 1, 5),
        ("other", "bfloat16", 2, 9),
    ],
)
def test_every_term_matches_transformers_cache_after_prefill_and_decode(
    tiny_arch, which, dtype, batch, tokens
):
    arch = tiny_arch if which == "tiny" else OTHER
    model = build_model(arch, dtype=dtype, seed=0)
    out = prefill(model, arch, batch, tokens)

    weight_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    after_prefill = estimate_memory(arch, context_tokens=tokens, batch=batch, weight_dtype=dtype)
    assert after_prefill.weights_bytes == weight_bytes
    assert measured_cache_bytes(out.cache) == estimated(after_prefill)

    # One decode step: the KV cache grows by a token; the Mamba states keep their size.
    next_ids = torch.full((batch, 1), 5)
    with torch.no_grad():
        model(next_ids, cache=out.cache, use_cache=True)
    after_decode = estimate_memory(arch, context_tokens=tokens + 1, batch=batch, weight_dtype=dtype)
    assert measured_cache_bytes(out.cache) == estimated(after_decode)
    assert after_decode.ssm_state_bytes == after_prefill.ssm_state_bytes > 0


def test_transformers_keeps_float32_ssm_state_whatever_the_config_says(tiny_arch):
    """transformers 5.x does not read mamba_ssm_cache_dtype; vLLM does. The estimate follows each engine."""
    arch = dataclasses.replace(tiny_arch, extra={**tiny_arch.extra, "mamba_ssm_cache_dtype": "bfloat16"})
    model = build_model(arch, dtype="bfloat16", seed=0)
    cache = prefill(model, arch, batch=2, tokens=6).cache
    states = [layer.recurrent_states[0] for layer in cache.layers if hasattr(layer, "recurrent_states")]
    assert states and {s.dtype for s in states} == {torch.float32}

    hf = estimate_memory(arch, context_tokens=6, batch=2, weight_dtype="bfloat16", engine="transformers")
    assert hf.ssm_dtype == "float32"
    assert measured_cache_bytes(cache)["ssm"] == hf.ssm_state_bytes
    vllm = estimate_memory(arch, context_tokens=6, batch=2, weight_dtype="bfloat16", engine="vllm")
    assert vllm.ssm_dtype == "bfloat16" and vllm.ssm_state_bytes * 2 == hf.ssm_state_bytes


def test_vllm_conv_state_drops_the_column_transformers_never_reads(tiny_arch, tiny_model, token_batch):
    """transformers keeps conv_kernel columns, vLLM conv_kernel - 1: the oldest column is dead weight.

    Zeroing it in transformers' cache changes nothing in the next token's logits, which is why the
    vLLM estimate is exactly one column per Mamba block smaller.
    """
    next_ids = torch.full((token_batch.shape[0], 1), 7)
    with torch.no_grad():
        intact = tiny_model(token_batch, use_cache=True).cache
        expected = tiny_model(next_ids, cache=intact, use_cache=True).logits
        damaged = tiny_model(token_batch, use_cache=True).cache
        for layer in damaged.layers:
            if hasattr(layer, "conv_states"):
                layer.conv_states[0][..., 0] = 0.0
        got = tiny_model(next_ids, cache=damaged, use_cache=True).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=0)

    batch = token_batch.shape[0]
    hf = conv_state_bytes(tiny_arch, batch, "float32", ENGINES["transformers"])
    vllm = conv_state_bytes(tiny_arch, batch, "float32", ENGINES["vllm"])
    assert hf - vllm == tiny_arch.count("M") * batch * tiny_arch.mamba_conv_dim * 4


def test_cache_terms_scale_as_the_formulas_say(tiny_arch):
    base = estimate_memory(tiny_arch, context_tokens=100, batch=1)
    assert estimate_memory(tiny_arch, context_tokens=300, batch=1).kv_cache_bytes == 3 * base.kv_cache_bytes
    doubled = estimate_memory(tiny_arch, context_tokens=100, batch=2)
    assert (doubled.kv_cache_bytes, doubled.ssm_state_bytes, doubled.conv_state_bytes) == (
        2 * base.kv_cache_bytes,
        2 * base.ssm_state_bytes,
        2 * base.conv_state_bytes,
    )
    assert estimate_memory(tiny_arch, context_tokens=10**6).ssm_state_bytes == base.ssm_state_bytes
    assert doubled.weights_bytes == base.weights_bytes


def test_dtype_options(tiny_arch):
    est = estimate_memory(tiny_arch, 64, weight_dtype="fp8", kv_dtype="fp8", ssm_dtype="bf16")
    assert (est.weight_dtype, est.kv_dtype, est.ssm_dtype) == ("float8_e4m3fn", "float8_e4m3fn", "bfloat16")
    assert est.conv_dtype == "bfloat16"  # 8-bit weights still compute (and keep conv state) in bfloat16
    assert est.weights_bytes == tiny_arch.n_params
    with pytest.raises(MinitronError, match=r"--kv-dtype: unknown dtype 'int3'"):
        estimate_memory(tiny_arch, 64, kv_dtype="int3")


# ---- the Nano 2 numbers -------------------------------------------------------------------------------
NANO2_BUDGET = Budget.from_options(budget="22GiB", headroom="5%", reserve="1.3GiB")


def test_nano2_budget_is_19_6_gib():
    assert NANO2_BUDGET.usable_bytes == int(22 * GiB * 0.95) - round(1.3 * GiB)
    assert format_bytes(NANO2_BUDGET.usable_bytes) == "19.60 GiB"


def test_12b_does_not_fit_the_nano2_budget_at_128k():
    arch = resolve_model("nemotron-nano-12b-v2-base").architecture
    est = estimate_memory(arch, parse_tokens("128k"))
    assert est.params == 12_310_001_152
    assert est.weights_bytes / GiB == pytest.approx(22.93, abs=0.01)  # weights alone exceed it
    assert est.total_bytes > NANO2_BUDGET.usable_bytes


def test_9b_fits_the_nano2_budget_at_128k():
    arch = resolve_model("nemotron-nano-9b-v2").architecture
    est = estimate_memory(arch, parse_tokens("128k"))
    assert est.params == 8_888_227_328
    assert est.weights_bytes / GiB == pytest.approx(16.56, abs=0.01)
    assert est.kv_cache_bytes == 4 * 2 * 131072 * 8 * 128 * 2 == 2 * GiB
    assert est.ssm_state_bytes == 27 * 128 * 80 * 128 * 4  # float32, 0.13 GiB
    assert est.conv_state_bytes == 27 * (128 * 80 + 2 * 8 * 128) * 4 * 2
    assert 18.6 <= est.total_bytes / GiB <= 18.7
    assert est.total_bytes <= NANO2_BUDGET.usable_bytes


# ---- budgets and GPUs ---------------------------------------------------------------------------------
def test_budget_from_gpu_and_override():
    a10g = Budget.from_options(gpu="a10g")
    assert a10g.total_bytes == 23028 * 2**20 and a10g.source == "NVIDIA A10G"
    assert Budget.from_options(budget="20GiB", gpu="a10g").total_bytes == 20 * GiB
    assert Budget.from_options() is None


@pytest.mark.parametrize("name", ["a10g", "l4", "a100-40g", "a100-80g", "h100-80g", "rtx4090"])
def test_gpu_presets_have_memory_and_bandwidth(name):
    gpu = GPUS[name]
    assert 20 * GiB < gpu.memory_bytes <= 80 * GiB
    assert 250e9 <= gpu.bandwidth_bytes_per_s <= 4e12


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"headroom": "5%"}, r"--headroom/--reserve need a budget"),
        ({"budget": "1GiB", "reserve": "2GiB"}, r"leave nothing of the 1.00 GiB budget"),
        ({"budget": "1GiB", "headroom": "100%"}, r"--headroom: must be at least 0% and below 100%"),
        ({"gpu": "v100"}, r"--gpu: unknown GPU 'v100'; known: a10g, l4"),
        ({"budget": "22G"}, r"--budget: cannot read '22G' \(ambiguous unit 'G'"),
        ({"budget": "1GiB", "reserve": "-1MiB"}, r"--reserve: must be zero or more bytes"),
    ],
)
def test_bad_budget_options(options, message):
    with pytest.raises(MinitronError, match=message):
        Budget.from_options(**options)


def test_estimate_config_validates_and_names_flags():
    with pytest.raises(MinitronError, match=r"--batch: must be at least 1, got 0"):
        EstimateConfig.from_options(model="tiny", context="8k", batch=0)
    with pytest.raises(MinitronError, match=r"--engine: unknown engine 'sglang'; known: transformers, vllm"):
        EstimateConfig.from_options(model="tiny", context="8k", engine="sglang")
    with pytest.raises(MinitronError, match=r"--dtype: unknown dtype 'int4'"):
        EstimateConfig.from_options(model="tiny", context="8k", dtype="int4")


def test_run_estimate_report_with_gpu():
    config = EstimateConfig.from_options(
        model="nemotron-nano-9b-v2", context="128k", gpu="a10g", headroom="5%", reserve="1.3GiB"
    )
    report = run_estimate(config)
    assert report.fits is True
    assert report.margin_bytes == report.budget.usable_bytes - report.memory.total_bytes
    # bandwidth roofline: every decode step reads the whole 18.7 GiB once at 600 GB/s
    assert report.decode_tokens_per_s_bound == pytest.approx(600e9 / report.memory.total_bytes)


# ---- units --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("22GiB", 22 * GiB),
        ("24GB", 24 * 10**9),
        ("19660MiB", 19660 * 2**20),
        ("0.5TiB", 2**39),
        ("1.3GiB", round(1.3 * GiB)),
        ("1048576", 2**20),
        ("512 kib", 512 * 1024),
        ("7B", 7),
    ],
)
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lots", r"cannot read 'lots'"),
        ("22G", r"ambiguous unit 'G': write GiB for powers of 1024 or GB for powers of 1000"),
        ("3 parsecs", r"unknown size unit"),
        ("0", r"must be more than zero bytes"),
        ("-1GiB", r"must be more than zero bytes"),
        ("", r"cannot read ''"),
        ("1e400", r"'1e400' is too large"),
        ("1e400GiB", r"'1e400GiB' is too large"),
        ("22", r"a bare number is bytes, so '22' means 22 bytes; add a unit, e.g. 22GiB or 22GB"),
        ("1000", r"a bare number is bytes"),
    ],
)
def test_parse_bytes_errors(text, message):
    with pytest.raises(MinitronError, match=message):
        parse_bytes(text, "--budget")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("128k", 131072),
        ("131072", 131072),
        ("1M", 1048576),
        ("8k", 8192),
        ("8K", 8192),
        ("1.5k", 1536),
        (512, 512),
    ],
)
def test_parse_tokens(text, expected):
    assert parse_tokens(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("128q", r"--context: unknown suffix"),
        ("many", r"--context: cannot read 'many'"),
        ("0", r"--context: must be at least 1 token"),
        ("-8k", r"--context: must be at least 1 token"),
        ("1.3", r"--context: '1.3' is not a whole number of tokens"),
    ],
)
def test_parse_tokens_errors(text, message):
    with pytest.raises(MinitronError, match=message):
        parse_tokens(text, "--context")


def test_parse_fraction_and_dtype_and_formatting():
    assert parse_fraction("5%") == pytest.approx(0.05) == parse_fraction("0.05")
    assert parse_fraction("0") == 0
    with pytest.raises(MinitronError, match=r"--headroom: cannot read 'some'"):
        parse_fraction("some", "--headroom")
    assert parse_dtype("bf16") == parse_dtype("torch.bfloat16") == "bfloat16"
    assert (
        format_bytes(22 * GiB) == "22.00 GiB"
        and format_bytes(1536) == "1.50 KiB"
        and format_bytes(12) == "12 B"
    )
    assert (format_tokens(131072), format_tokens(2**20), format_tokens(1000)) == ("128k", "1M", "1000")


# ---- the serving spec ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({"budget": "abc"}, "--budget"),
        ({"budget": "1e400"}, "--budget"),
        ({"budget": "0"}, "--budget"),
        ({"budget": "-3GiB"}, "--budget"),
        ({"budget": "22"}, "--budget"),  # a number without its unit
        ({"reserve": "-1GiB", "budget": "1GiB"}, "--reserve"),
        ({"headroom": "1e400", "budget": "1GiB"}, "--headroom"),
        ({"context": "0"}, "--context"),
        ({"context": "1e400"}, "--context"),
        ({"batch": 0}, "--batch"),
        ({"batch": -2}, "--batch"),
        ({"gpu": "tpu"}, "--gpu"),
        ({"kv_dtype": "int3"}, "--kv-dtype"),
    ],
)
def test_serving_spec_names_the_flag_of_a_bad_value(options, flag):
    from minitron.memory import ServingSpec
    from minitron.search.config import SearchConfig

    for build in (ServingSpec.from_options, lambda **o: SearchConfig.from_options(model="tiny", **o)):
        with pytest.raises(MinitronError) as e:
            build(**options)
        assert str(e.value).startswith(flag) and "\n" not in str(e.value)


def test_serving_spec_round_trips_through_a_candidates_file():
    from minitron.memory import ServingSpec

    spec = ServingSpec.from_options(context="8k", budget="20MiB", headroom="5%", reserve="0.25MiB", gpu="l4")
    assert ServingSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["budget"]["usable_bytes"] == spec.budget.usable_bytes
    arch = resolve_model("tiny").architecture
    assert spec.memory(arch) == estimate_memory(arch, 8192)


def test_estimate_and_search_declare_each_serving_option_once():
    import minitron.cli
    from minitron.memory import ServingSpec

    assert set(minitron.cli.SERVING_OPTIONS) == set(ServingSpec.option_names())
    for command in ("estimate", "search"):
        params = {
            p.name: p for p in minitron.cli.typer.main.get_command(minitron.cli.app).commands[command].params
        }
        for name in ServingSpec.option_names():
            assert params[name].help == minitron.cli.SERVING_OPTIONS[name][1].help
