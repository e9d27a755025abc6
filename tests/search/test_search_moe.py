"""`minitron search` of mixture-of-experts models under an active-parameter bound, checked by an
independent recount: transformers' own meta-device model of every checked candidate."""

from __future__ import annotations

import csv
import json

import torch
from tiny_models import row_sizes
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from minitron.cli import app
from minitron.memory import estimate_memory
from minitron.model.load import resolve_model
from minitron.units import parse_bytes

GiB = 2**30


def _candidate_arch(source, row):
    return source.drop_blocks(row["drop_blocks"] or []).with_sizes(**row_sizes(row))


def _recount(arch) -> tuple[int, int, int]:
    """(total, active, weight bytes in bf16) of transformers' meta-device model of `arch`."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(arch.to_hf_config(), dtype=torch.bfloat16)
    total = sum(p.numel() for p in model.parameters())
    inactive = 0
    for name, module in model.named_modules():
        if name.endswith(".experts") and hasattr(module, "down_proj"):
            e, k = module.down_proj.shape[0], model.config.num_experts_per_tok
            inactive += sum(p.numel() for p in module.parameters()) * (e - k) // e
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return total, total - inactive, weight_bytes


def test_nano3_search_under_active_and_memory_limits(tmp_path):
    args = ["search", "nemotron-3-nano-30b-a3b", "--max-active-params", "3.0B", "--budget", "50GiB",
            "--context", "8k", "--no-eval", "--top", "400", "--out", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "active" in result.output
    doc = json.loads((tmp_path / "candidates.json").read_text())
    source = resolve_model("nemotron-3-nano-30b-a3b").architecture
    assert source.n_active_params > 3.0e9  # the bound prunes something
    rows = doc["candidates"]
    assert rows and doc["constraint"]["max_active_params"] == 3_000_000_000
    for row in rows:
        assert row["active_params"] <= 3.0e9 and row["memory"]["total_bytes"] <= 50 * GiB
    c = doc["constraint"]
    checked = rows[:3] + rows[-2:]
    for row in checked:
        arch = _candidate_arch(source, row)
        total, active, weight_bytes = _recount(arch)
        assert (row["params"], row["active_params"]) == (total, active)
        assert active <= 3.0e9
        mem = estimate_memory(arch, c["context_tokens"], c["batch"], c["weight_dtype"])
        caches = mem.kv_cache_bytes + mem.ssm_state_bytes + mem.conv_state_bytes
        assert row["memory"]["weights_bytes"] == weight_bytes  # every expert resident, float32 routers
        assert weight_bytes + caches == row["memory"]["total_bytes"] <= parse_bytes("50GiB", "--budget")
    with open(tmp_path / "candidates.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert [int(r["active_params"]) for r in csv_rows] == [r["active_params"] for r in rows]
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_active_bounds_in_percent_and_both_ways(tmp_path):
    source = resolve_model("qwen3-30b-a3b").architecture
    args = ["search", "qwen3-30b-a3b", "--max-active-params", "90%", "--min-active-params", "80%",
            "--budget", "60GiB", "--context", "4k", "--no-eval", "--out", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "candidates.json").read_text())["candidates"]
    assert rows
    for row in rows:
        assert 0.8 * source.n_active_params <= row["active_params"] <= 0.9 * source.n_active_params


def test_bad_active_bounds_are_one_line(tmp_path):
    base = ["search", "nemotron-3-nano-30b-a3b", "--budget", "50GiB", "--no-eval", "--out", str(tmp_path)]
    for extra, message in (
        (["--max-active-params", "3.0X"], "--max-active-params: cannot read '3.0X'"),
        (["--max-active-params", "1e400"], "--max-active-params: '1e400' is too large"),
        (["--max-active-params", "0.1B"], "parameter bounds (--min/--max-params, --min/--max-active-params)"),
    ):
        result = CliRunner().invoke(app, base + extra)
        assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
        assert message in result.output
