"""Fixtures for the search tests: one torch thread, and real scores of the shipped tiny teacher."""

from __future__ import annotations

import pytest
from search_helpers import HAS_TINY, TINY_DIR


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors on a shared 2-core machine: intra-op threads only contend."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_scores(tmp_path_factory):
    """`minitron score` of the tiny teacher on a few calibration samples (width + one-shot depth)."""
    if not HAS_TINY:
        pytest.skip(f"tiny teacher checkpoint not present at {TINY_DIR}")
    import torch

    from minitron.importance.run import ScoreConfig, run

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny-scores") / "scores.safetensors"
    run(
        ScoreConfig(
            model="tiny", out=out, samples=4, seq_len=64, batch_size=4, depth_mode="one-shot",
            progress=False, report=False,
        )
    )  # fmt: skip
    torch.set_num_threads(before)
    return out
