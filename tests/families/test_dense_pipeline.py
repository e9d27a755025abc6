"""A dense Llama-family checkpoint through the same commands as NemotronH: estimate, score, search,
prune --candidate, distill; the result loads and generates in a fresh process."""

from __future__ import annotations

import dataclasses
import json

import pytest
from tiny_models import dense_arch, generate_in_fresh_process, randomize_
from typer.testing import CliRunner

from minitron.cli import app
from minitron.data import train_bpe_tokenizer
from minitron.memory import estimate_memory
from minitron.model.load import build_model, resolve_model

DOCUMENTS = [
    f"def f{i}(x):\n    return x * {i} + {i % 7}  # line {i} of a small corpus\n" for i in range(300)
]
runner = CliRunner()


@pytest.fixture(scope="module", params=["llama-biases-tied", "qwen3-tied"])
def dense_checkpoint(request, tmp_path_factory):
    """A random dense checkpoint with a small BPE tokenizer, and a JSONL corpus."""
    root = tmp_path_factory.mktemp(request.param)
    tokenizer = train_bpe_tokenizer(DOCUMENTS, 300)
    arch = dataclasses.replace(dense_arch(request.param), vocab=len(tokenizer))
    path = root / "ckpt"
    randomize_(build_model(arch, seed=0), seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    data = root / "corpus.jsonl"
    data.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCUMENTS))
    return path, data, arch


def _ok(args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_estimate_and_weight_free_search_of_the_presets(tmp_path):
    for name in ("llama-3.1-8b", "qwen3-8b", "mistral-nemo-12b"):
        report = json.loads(_ok(["estimate", name, "--context", "128k", "--json"]).stdout)
        assert report["architecture"]["blocks"] == report["architecture"]["attention_blocks"]
        assert report["bytes"]["ssm_state"] == report["bytes"]["conv_state"] == 0
    out = tmp_path / "search"
    _ok(["search", "llama-3.1-8b", "--budget", "16GiB", "--context", "32k", "--layers", "28:32",
         "--hidden", "3072:4096", "--out", out])  # fmt: skip
    document = json.loads((out / "candidates.json").read_text())
    assert document["candidates"]
    source = resolve_model("llama-3.1-8b").architecture
    for row in document["candidates"]:
        assert row["mamba_blocks"] == 0 and row["attention_blocks"] == row["mlp_blocks"] == row["layers"]
        assert row["mamba_heads"] is None and set(row["drop_counts"]) == {"layer"}
        arch = dataclasses.replace(
            source,
            pattern="D" * row["layers"],
            hidden=row["hidden"],
            ffn=row["ffn"],
            attn_heads=row["attn_heads"],
        )
        total = estimate_memory(arch, 32768).total_bytes
        assert total == row["memory"]["total_bytes"] <= 16 * 2**30
        assert arch.n_params == row["params"]


def test_score_search_prune_distill_generate(dense_checkpoint, tmp_path):
    ckpt, data, arch = dense_checkpoint
    scores = tmp_path / "scores.safetensors"
    _ok(["score", ckpt, "--data", data, "--samples", "6", "--seq-len", "24", "--batch-size", "3",
         "--out", scores])  # fmt: skip
    summary = json.loads((tmp_path / "scores.json").read_text())
    assert sorted(row["block"] for row in summary["depth"]) == list(range(arch.n_blocks))  # one per layer
    assert {row["type"] for row in summary["depth"]} == {"layer"}

    budget = int(0.75 * estimate_memory(arch, 512).weights_bytes) + estimate_memory(arch, 512).cache_bytes
    search = tmp_path / "search"
    _ok(["search", ckpt, "--scores", scores, "--budget", f"{budget}B", "--context", "512", "--granularity", "4",
         "--layers", "3:4", "--trials", "4", "--data", data, "--eval-samples", "2", "--seq-len", "24",
         "--batch-size", "2", "--top-k", "16", "--out", search])  # fmt: skip
    best = json.loads((search / "candidates.json").read_text())["candidates"][0]
    assert best["objective"] is not None and best["params"] < arch.n_params

    pruned = tmp_path / "pruned"
    printed = _ok(["prune", ckpt, "--scores", scores, "--candidate", search / "candidates.json", "--rank", "1",
                   "--out", pruned]).output  # fmt: skip
    assert "attn_heads" in printed and "mamba" not in printed  # no rows for axes a dense model lacks
    config = json.loads((pruned / "config.json").read_text())
    assert config["model_type"] == arch.model_type and config["hidden_size"] == best["hidden"]

    distilled = tmp_path / "distilled"
    _ok(["distill", ckpt, pruned, "--data", data, "--seq-len", "16", "--batch-size", "2", "--steps", "3",
         "--eval-batches", "1", "--warmup-steps", "1", "--device", "cpu", "--out", distilled])  # fmt: skip
    final = next(p.parent for p in distilled.rglob("config.json"))
    got = generate_in_fresh_process(final, pruned, "def f1(x):", 8)
    assert got["type"] == arch.model_type and got["cached"] == got["plain"]
    assert len(got["cached"][0]) == len(got["prompt"][0]) + 8


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mamba-heads", "4"], r"^error: --mamba-heads: Llama models have no such axis$"),
        (
            ["--hidden", "30"],
            r"^error: hidden \(30\) must be a multiple of the attention heads \(4\) for a Llama",
        ),
        (["--attn-heads", "3"], r"^error: attention heads \(3\) must be a multiple of KV heads \(2\)"),
    ],
)
def test_bad_dense_targets_are_one_line_and_write_nothing(tmp_path, extra, message):
    import re

    ckpt = tmp_path / "ckpt"
    build_model(dense_arch("llama"), seed=0).save_pretrained(ckpt)
    result = runner.invoke(app, ["prune", str(ckpt), *extra, "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1, result.output
    assert re.search(message, result.stderr.strip()), result.stderr
    assert not (tmp_path / "out").exists()
