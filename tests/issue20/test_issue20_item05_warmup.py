"""Issue 20 item 5: --steps below --warmup-steps warms up over a tenth of the steps and says so (before:
the rate never reached its peak and the model barely moved, silently)."""

from __future__ import annotations

import json

import pytest
from issue20_helpers import invoke

from minitron.distill.schedule import effective_warmup, lr_lambda


def test_effective_warmup():
    assert effective_warmup(50, 1000) == (50, None)
    used, note = effective_warmup(50, 30)
    assert used == 3 and "--warmup-steps 50 is not below the run's 30 steps" in note
    assert effective_warmup(5, 5)[0] == 0


def test_short_train_reaches_its_peak_rate(tmp_path):
    result = invoke("train", "tiny", "--steps", 3, "--seq-len", 32, "--batch-size", 2, "--eval-batches", 1,
                    "--device", "cpu", "--out", tmp_path / "run")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "note: --warmup-steps 50 is not below the run's 3 steps" in result.stderr
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    (last,) = [r for r in logged if "lr" in r]
    # the rate of the third update: cosine from the peak with no warm-up (was 3/50 of the peak)
    want = 1e-3 * lr_lambda(
        total_steps=3, warmup_steps=0, schedule="cosine", min_ratio=0.1, decay_fraction=0.2
    )(2)
    assert last["lr"] == pytest.approx(want) and want > 0.3e-3
