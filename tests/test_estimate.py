"""`minitron estimate` in-process: tables, JSON, --out, and one clear line for every bad input."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from minitron.cli import app

GiB = 2**30
NANO2 = ["--context", "128k", "--budget", "22GiB", "--headroom", "5%", "--reserve", "1.3GiB"]


def run(*args: str):
    return CliRunner().invoke(app, ["estimate", *args])


def run_json(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_readme_command_prints_tables_and_the_verdict():
    result = run("nemotron-nano-12b-v2-base", "--context", "128k", "--budget", "22GiB")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("parameters", "12,310,001,152", "mamba", "attention", "KV cache", "SSM state", "conv state"):
        assert text in out
    assert "transformers engine" in out and "does not fit" in out


def test_12b_and_9b_against_the_nano2_budget():
    big = run_json("nemotron-nano-12b-v2-base", *NANO2)
    assert big["params"]["total"] == 12_310_001_152 and big["fits"] is False
    small = run_json("nemotron-nano-9b-v2", *NANO2)
    assert small["params"]["total"] == 8_888_227_328 and small["fits"] is True
    assert 18.6 <= small["bytes"]["total"] / GiB <= 18.7
    assert small["budget"]["usable_bytes"] == int(22 * GiB * 0.95) - round(1.3 * GiB)
    assert small["margin_bytes"] == small["budget"]["usable_bytes"] - small["bytes"]["total"]


def test_json_is_complete_and_consistent():
    data = run_json(
        "nemotron-nano-9b-v2", "--context", "8k", "--batch", "4", "--gpu", "l4", "--engine", "vllm"
    )
    assert (data["engine"], data["context_tokens"], data["batch"]) == ("vllm", 8192, 4)
    assert data["dtypes"] == {
        "weights": "bfloat16",
        "kv_cache": "bfloat16",
        "ssm_state": "float32",
        "conv_state": "bfloat16",
    }
    terms = data["bytes"]
    assert terms["total"] == terms["weights"] + terms["kv_cache"] + terms["ssm_state"] + terms["conv_state"]
    assert sum(data["params"]["by_part"].values()) == data["params"]["total"]
    assert data["architecture"]["mamba_blocks"] == 27
    assert data["gpu"]["name"] == "NVIDIA L4" and data["budget"]["total_bytes"] == 23034 * 2**20
    assert data["decode_tokens_per_s_bound"] == pytest.approx(4 * 300e9 / terms["total"])


def test_dtype_flags_change_the_terms():
    base = run_json("nemotron-nano-9b-v2")
    small = run_json("nemotron-nano-9b-v2", "--dtype", "fp8", "--kv-dtype", "fp8", "--ssm-dtype", "bf16")
    assert small["bytes"]["weights"] * 2 == base["bytes"]["weights"]
    assert small["bytes"]["kv_cache"] * 2 == base["bytes"]["kv_cache"]
    assert small["bytes"]["ssm_state"] * 2 == base["bytes"]["ssm_state"]


def test_out_writes_the_same_json_atomically(tmp_path):
    target = tmp_path / "estimate.json"
    result = run("nemotron-nano-9b-v2", "--json", "--out", str(target))
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text()) == json.loads(result.stdout)
    assert [p.name for p in tmp_path.iterdir()] == ["estimate.json"]  # no temp file left behind


def test_local_checkpoint(tiny_checkpoint, tiny_arch):
    data = run_json(str(tiny_checkpoint), "--context", "100")
    assert data["params"]["total"] == tiny_arch.n_params
    assert data["budget"] is None and data["fits"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["./no/such/model"], r"./no/such/model: no such directory"),
        (
            ["nemotron-nano-12b"],
            r"unknown model 'nemotron-nano-12b' .*did you mean nemotron-nano-12b-v2-base",
        ),
        (["nemotron-nano-9b-v2", "--budget", "plenty"], r"--budget: cannot read 'plenty'"),
        (["nemotron-nano-9b-v2", "--budget", "22G"], r"--budget: .*ambiguous unit 'G'"),
        (["nemotron-nano-9b-v2", "--budget", "0"], r"--budget: must be more than zero bytes"),
        (["nemotron-nano-9b-v2", "--budget", "-2GiB"], r"--budget: must be more than zero bytes"),
        (["nemotron-nano-9b-v2", "--context", "128q"], r"--context: unknown suffix in '128q'"),
        (["nemotron-nano-9b-v2", "--context", "0"], r"--context: must be at least 1 token"),
        (["nemotron-nano-9b-v2", "--context", "-5"], r"--context: must be at least 1 token"),
        (["nemotron-nano-9b-v2", "--batch", "0"], r"--batch: must be at least 1, got 0"),
        (["nemotron-nano-9b-v2", "--batch", "-3"], r"--batch: must be at least 1, got -3"),
        (["nemotron-nano-9b-v2", "--headroom", "5%"], r"--headroom/--reserve need a budget"),
        (
            ["nemotron-nano-9b-v2", "--budget", "1GiB", "--headroom", "150%"],
            r"--headroom: must be at least 0%",
        ),
        (["nemotron-nano-9b-v2", "--budget", "1GiB", "--reserve", "2GiB"], r"leave nothing of the"),
        (["nemotron-nano-9b-v2", "--gpu", "tpu"], r"--gpu: unknown GPU 'tpu'"),
        (["nemotron-nano-9b-v2", "--engine", "tgi"], r"--engine: unknown engine 'tgi'"),
        (["nemotron-nano-9b-v2", "--dtype", "int2"], r"--dtype: unknown dtype 'int2'"),
        (["nemotron-nano-9b-v2", "--kv-dtype", "e4"], r"--kv-dtype: unknown dtype 'e4'"),
        (["nemotron-nano-9b-v2", "--budget", "1e400"], r"--budget: '1e400' is too large"),
        (
            ["nemotron-nano-9b-v2", "--budget", "22GiB", "--reserve", "1e400"],
            r"--reserve: '1e400' is too large",
        ),
        (["nemotron-nano-9b-v2", "--context", "1e400"], r"--context: '1e400' is too large"),
        (
            ["nemotron-nano-9b-v2", "--budget", "22"],
            r"--budget: a bare number is bytes, so '22' means 22 bytes",
        ),
        (
            ["nemotron-nano-9b-v2", "--budget", "22GiB", "--reserve", "1.3"],
            r"--reserve: a bare number is bytes",
        ),
    ],
)
def test_bad_input_is_one_line_on_stderr(args, message):
    result = run(*args)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in result.output


def test_bad_model_directories_are_one_line_on_stderr(tmp_path, tiny_arch):
    (tmp_path / "empty").mkdir()
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps({"model_type": "gpt2", "hidden_size": 8}))
    moe = tiny_arch.to_config_dict()
    moe["layers_block_type"] = ["linear_attention", "moe"]
    moe["moe_latent_size"] = 16
    (tmp_path / "moe").mkdir()
    (tmp_path / "moe" / "config.json").write_text(json.dumps(moe))
    (tmp_path / "out").mkdir()
    cases = {
        str(tmp_path / "empty"): r"no config.json \(not a Hugging Face checkpoint directory\)",
        str(tmp_path / "gpt2"): r"unsupported architecture 'gpt2'; supported: nemotron_h, llama",
        str(tmp_path / "moe"): r"latent MoE \(moe_latent_size=16, Nemotron 3 Super\) is not supported yet",
    }
    for path, message in cases.items():
        result = run(path)
        assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1, result.output
        assert re.search(message, result.stderr), result.stderr
    result = run("nemotron-nano-9b-v2", "--out", str(tmp_path / "out"))
    assert result.exit_code == 1 and "--out" in result.stderr and "is a directory" in result.stderr


def test_out_creates_missing_directories(tmp_path):
    out = tmp_path / "a" / "b" / "e.json"
    result = run("nemotron-nano-9b-v2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["params"]["total"] == 8_888_227_328


def test_json_output_is_strict_json():
    """No bare Infinity/NaN (not JSON): every figure parses with a strict reader."""

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    for args in (["nemotron-nano-9b-v2", *NANO2], ["nemotron-nano-12b-v2-base"], ["tiny", "--gpu", "a10g"]):
        result = run(*args, "--json")
        assert result.exit_code == 0, result.output
        json.loads(result.stdout, parse_constant=refuse)
