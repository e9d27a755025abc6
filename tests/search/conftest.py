"""Fixtures for the search tests: real scores of the shipped tiny teacher."""

from __future__ import annotations

import pytest
from search_helpers import HAS_TINY, TINY_DIR


@pytest.fixture(scope="session")
def tiny_scores(tmp_path_factory):
    """`minitron score` of the tiny teacher on a few calibration samples (width + one-shot depth)."""
    if not HAS_TINY:
        pytest.skip(f"tiny teacher checkpoint not present at {TINY_DIR}")
    from minitron.importance.run import ScoreConfig, run

    out = tmp_path_factory.mktemp("tiny-scores") / "scores.safetensors"
    run(
        ScoreConfig(
            model="tiny", out=out, samples=4, seq_len=64, batch_size=4, depth_mode="one-shot",
            progress=False, report=False,
        )
    )  # fmt: skip
    return out
