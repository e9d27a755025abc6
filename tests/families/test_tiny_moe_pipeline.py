"""The shipped tiny-moe teacher through the whole chain from the command line: score (experts
included) -> search over the expert axes under an active-parameter bound -> prune --candidate ->
distill -> compare; the pruned model loads and generates in a fresh process."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import generate_in_fresh_process
from typer.testing import CliRunner

from minitron.cli import app
from minitron.importance.scores import load_scores
from minitron.model.arch import Architecture
from minitron.model.load import BUILTIN_CHECKPOINTS, resolve_model

TINY_MOE = BUILTIN_CHECKPOINTS["tiny-moe"]
pytestmark = pytest.mark.skipif(not (TINY_MOE / "config.json").exists(), reason="tiny-moe is not installed")
runner = CliRunner()


def _ok(args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_tiny_moe_is_a_trained_moe_teacher():
    arch = resolve_model("tiny-moe").architecture
    assert (arch.count("M"), arch.count("E"), arch.count("*")) == (28, 28, 6)
    assert (arch.experts, arch.experts_per_token) == (16, 4) and arch.shared_ffn > 0
    stats = json.loads((TINY_MOE / "training.json").read_text())
    assert stats["heldout_loss_nats"] <= 0.65 * stats["heldout_unigram_entropy_nats"]
    assert stats["params"] == arch.n_params and stats["active_params"] == arch.n_active_params


def test_candidate_names_count_every_block_kind():
    from minitron.distill.compare import _describe

    assert _describe(resolve_model("tiny-moe").architecture, ()).startswith("28M/28E/6* ")
    assert _describe(resolve_model("tiny").architecture, (3,)).startswith("28M/28-/6* (drop 3) ")


def test_score_search_prune_distill_compare_on_tiny_moe(tmp_path):
    torch.set_num_threads(1)
    source = resolve_model("tiny-moe").architecture
    scores = tmp_path / "scores.safetensors"
    _ok(["score", "tiny-moe", "--samples", "4", "--seq-len", "32", "--batch-size", "2", "--depth", "none",
         "--out", scores])  # fmt: skip
    assert load_scores(scores).get("experts.1").shape == (16,)

    search = tmp_path / "search"
    # an active-parameter bound between the source's and that of experts 8 neurons narrower
    narrower = source.expert_ffn - 8
    bound = (source.with_sizes(expert_ffn=narrower).n_active_params + source.n_active_params) // 2
    _ok(["search", "tiny-moe", "--scores", scores, "--budget", "1GiB", "--context", "1k", "--experts", "8:16",
         "--expert-ffn", f"{narrower},{source.expert_ffn}", "--hidden", "source", "--mamba-heads", "source", "--mamba-head-dim", "source",
         "--max-active-params", bound, "--trials", "3", "--eval-samples", "2", "--seq-len", "32",
         "--batch-size", "2", "--top-k", "16", "--out", search])  # fmt: skip
    rows = json.loads((search / "candidates.json").read_text())["candidates"]
    # routed experts leave the active count alone (every token still passes top-k): expert FFN meets it
    assert rows and all(r["active_params"] <= bound and r["expert_ffn"] == narrower for r in rows)
    assert {r["experts"] for r in rows} <= {8, 16}
    best = rows[0]
    assert best["objective"] is not None

    pruned = tmp_path / "pruned"
    _ok(["prune", "tiny-moe", "--scores", scores, "--candidate", search / "candidates.json", "--out", pruned])
    arch = Architecture.from_hf_config(json.loads((pruned / "config.json").read_text()))
    assert arch.experts == best["experts"] and arch.n_active_params == best["active_params"]
    card = (pruned / "README.md").read_text()  # the model card names what one token passes through
    assert (
        f"Active parameters per token: {arch.n_active_params:,} (teacher: {source.n_active_params:,})" in card
    )

    distilled = tmp_path / "distilled"
    _ok(["distill", "tiny-moe", pruned, "--seq-len", "32", "--batch-size", "2", "--steps", "2",
         "--eval-batches", "1", "--warmup-steps", "1", "--device", "cpu", "--out", distilled])  # fmt: skip
    final = next(p.parent for p in distilled.rglob("config.json"))
    got = generate_in_fresh_process(final, pruned, "def f(x):", 6)
    assert got["type"] == "nemotron_h" and got["cached"] == got["plain"]

    compared = tmp_path / "compare"
    _ok(["compare", "tiny-moe", search / "candidates.json", "--scores", scores, "--top", "1", "--steps", "1",
         "--seq-len", "32", "--batch-size", "2", "--out", compared])  # fmt: skip
    assert any(compared.rglob("*.json"))
