"""`minitron search` without weights (config-only preset), in-process, and its bad-input errors."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
from tiny_models import row_sizes
from typer.testing import CliRunner

from minitron.cli import app
from minitron.memory import Budget, estimate_memory, get_gpu
from minitron.model.load import resolve_model
from minitron.search.throughput import decode_tokens_per_s

NANO2 = ["--budget", "22GiB", "--headroom", "5%", "--reserve", "1.3GiB", "--context", "128k"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_12b_without_weights_every_candidate_fits(tmp_path):
    # How long this takes is bench/search_enumerate.py's to measure, not a test's.
    result = invoke("search", "nemotron-nano-12b-v2-base", *NANO2, "--layers", "56", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "candidates.json").read_text())
    usable = Budget.from_options("22GiB", None, "5%", "1.3GiB").usable_bytes
    assert doc["budget"]["usable_bytes"] == usable and doc["feasible"] > 10_000
    src = resolve_model("nemotron-nano-12b-v2-base").architecture
    rows = doc["candidates"]
    assert len(rows) == 100 and [r["rank"] for r in rows] == list(range(1, 101))
    for row in rows:
        counts = row["drop_counts"]
        kept = {
            k: src.count(c) - counts[n]
            for k, c, n in (("M", "M", "mamba"), ("-", "-", "mlp"), ("*", "*", "attention"))
        }
        assert row["layers"] == 56 and sum(kept.values()) == 56 and row["drop_blocks"] is None
        # recomputed from the sizes alone: memory depends on how many blocks of each type remain
        arch = dataclasses.replace(
            src, pattern="M" * kept["M"] + "-" * kept["-"] + "*" * kept["*"],
            **row_sizes(row),
        )  # fmt: skip
        mem = estimate_memory(arch, 131072)
        assert mem.total_bytes <= usable and mem.total_bytes == row["memory"]["total_bytes"]
        assert arch.n_params == row["params"] and row["spare_bytes"] == usable - mem.total_bytes
        assert row["decode_tokens_per_s"] == pytest.approx(decode_tokens_per_s(mem, get_gpu("a10g")))
    # ranked by the weight-free proxy: parameters, largest first
    assert doc["ranked_by"] == "proxy: params" and [r["params"] for r in rows] == sorted(
        (r["params"] for r in rows), reverse=True
    )
    with open(tmp_path / "candidates.csv") as f:
        assert [int(r["params"]) for r in csv.DictReader(f)] == [r["params"] for r in rows]
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "rank" in result.output and "tok/s" in result.output


def test_search_candidate_without_depth_order_is_refused_by_prune(tmp_path, tiny_checkpoint):
    out = tmp_path / "s"
    result = invoke(
        "search",
        tiny_checkpoint,
        "--budget",
        "1GiB",
        "--context",
        "1k",
        "--layers",
        "6",
        "--granularity",
        "8",
        "--no-eval",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    result = invoke("prune", tiny_checkpoint, "--candidate", out / "candidates.json", "--out", tmp_path / "p")
    line = one_error_line(result)
    assert "removes" in line and "no depth order" in line and not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hidden", "4k"], "error: --hidden: cannot read '4k'"),
        (["--ffn", "20000:30000"], "error: --ffn: 30000 is above the source size 20480"),
        (
            ["--budget", "6GiB"],
            "error: nothing in the search space fits the budget 6.00 GiB: the smallest candidate needs",
        ),
        (["--budget", "22G"], "error: --budget: cannot read '22G'"),
        (["--max-prune", "depth=10%"], "error: --max-prune: unknown axis 'depth'"),
        (["--max-params", "lots"], "error: --max-params: cannot read 'lots'"),
        (["--min-params", "1e400"], "error: --min-params: '1e400' is too large to be a parameter count"),
        (["--budget", "1e400"], "error: --budget: '1e400' is too large"),
        (["--reserve", "1e400"], "error: --reserve: '1e400' is too large"),
        (["--context", "1e400"], "error: --context: '1e400' is too large"),
        (["--budget", "22"], "error: --budget: a bare number is bytes, so '22' means 22 bytes"),
        (["--trials", "0"], "error: --trials must be at least 1"),
        (["--eval-dtype", "int8"], "error: --eval-dtype must be float32, bfloat16 or float16"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, message):
    base = {"--budget": "22GiB", "--layers": "56"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    flat = [x for kv in base.items() for x in kv]
    result = invoke("search", "nemotron-nano-12b-v2-base", *flat, "--out", tmp_path / "o")
    assert one_error_line(result).startswith(message)
    assert not (tmp_path / "o" / "candidates.json").exists()


def test_scores_of_another_model_are_refused(tmp_path, tiny_arch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "prune"))
    from prune_helpers import random_scores

    from minitron.importance.scores import save_scores

    scores = save_scores(random_scores(tiny_arch), tmp_path / "scores.safetensors")
    result = invoke(
        "search",
        "nemotron-nano-12b-v2-base",
        "--budget",
        "22GiB",
        "--scores",
        scores,
        "--out",
        tmp_path / "o",
    )
    assert "scores were computed for a different architecture" in one_error_line(result)
