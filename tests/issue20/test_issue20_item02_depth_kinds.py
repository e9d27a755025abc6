"""Issue 20 item 2: depth respects --max-prune per block kind; a hybrid never silently loses every
attention block, and the 9B's split is among the splits searched."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from minitron.cli import app
from minitron.errors import MinitronError
from minitron.model.load import resolve_model
from minitron.search.space import build_space, depth_caps, parse_max_prune

NANO12B = resolve_model("nemotron-nano-12b-v2-base").architecture
README = [
    "--budget",
    "22GiB",
    "--headroom",
    "5%",
    "--reserve",
    "1.3GiB",
    "--context",
    "128k",
    "--layers",
    "56",
]


def test_readme_search_keeps_attention(tmp_path):
    result = CliRunner().invoke(app, ["search", "nemotron-nano-12b-v2-base", *README, "--no-eval",
                                      "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "candidates.json").read_text())["candidates"]
    assert len(rows) == 100
    assert all(row["attention_blocks"] >= 4 for row in rows)  # at most 2 of 6 dropped by default
    assert all(row["drop_counts"]["attention"] <= 2 for row in rows)
    assert any(row["drop_counts"]["attention"] == 2 for row in rows)  # the budget still wants KV freed


def test_9b_split_is_searched_and_attention_free_is_not():
    space = build_space(NANO12B, {"layers": "56"}, max_prune=parse_max_prune(None))
    splits = {d.counts for d in space.depth}
    assert (1, 3, 2) in splits  # Nano 2's 9B: 1 Mamba, 3 MLP, 2 attention blocks removed
    assert all(counts[2] <= 2 for counts in splits) and len(splits) == 18
    assert depth_caps(NANO12B, parse_max_prune(None)) == (11, 11, 2)


def test_attention_free_needs_the_kind_named():
    generic = build_space(NANO12B, {"layers": "56"}, max_prune=parse_max_prune("99%"))
    assert all(d.counts[2] <= 2 for d in generic.depth)  # a share for every width axis is not a request
    asked = build_space(NANO12B, {"layers": "56"}, max_prune=parse_max_prune("attention-blocks=100%"))
    assert (0, 0, 6) in {d.counts for d in asked.depth}
    ninety = build_space(NANO12B, {"layers": "56"}, max_prune=parse_max_prune("attention-blocks=99%"))
    assert max(d.counts[2] for d in ninety.depth) == 5  # below 100% one block of the kind stays


def test_depth_order_skips_a_kind_at_its_cap():
    # a depth order that ranks every attention block least important
    attention = NANO12B.block_indices("*")
    order = attention + [i for i in range(NANO12B.n_blocks) if i not in attention]
    space = build_space(NANO12B, {"layers": "56"}, max_prune=parse_max_prune(None), depth_order=order)
    (depth,) = space.depth
    assert depth.counts[2] == 2 and set(attention[:2]) <= set(depth.dropped)


def test_unreachable_depth_is_one_error_naming_the_key():
    with pytest.raises(MinitronError, match=r"--max-prune attention-blocks="):
        build_space(NANO12B, {"layers": "30"}, max_prune=parse_max_prune(None))
    with pytest.raises(MinitronError, match="unknown axis 'attn-blocks'.*attention-blocks"):
        parse_max_prune("attn-blocks=10%")
