"""Losses and schedules as pure functions, against plain references."""

from __future__ import annotations

import math

import pytest
import torch

from minitron.distill.objectives import next_token_ce
from minitron.distill.schedule import lr_lambda


def test_next_token_ce_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g)
    ids = torch.randint(0, 7, (2, 5), generator=g)
    ref = [-torch.log_softmax(logits[b, t], -1)[ids[b, t + 1]] for b in range(2) for t in range(4)]
    torch.testing.assert_close(next_token_ce(logits, ids), torch.stack(ref).mean())


def test_next_token_ce_of_a_perfect_model_is_zero():
    ids = torch.tensor([[1, 2, 3, 4]])
    logits = torch.full((1, 4, 5), -1e4)
    logits[0, torch.arange(3), ids[0, 1:]] = 1e4
    assert next_token_ce(logits, ids).item() == pytest.approx(0.0, abs=1e-6)


def sched(step, schedule, total=100, warmup=10, min_ratio=0.1, decay_fraction=0.2):
    return lr_lambda(
        total_steps=total, warmup_steps=warmup, schedule=schedule, min_ratio=min_ratio,
        decay_fraction=decay_fraction,
    )(step)  # fmt: skip


def reference_multiplier(step, total, warmup, schedule, min_ratio, decay_fraction):
    """The schedules as minitron wrote them by hand before they came from transformers."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    decay_start = total - max(1, round(decay_fraction * total))
    if step < decay_start:
        return 1.0
    return 1.0 - (1 - min_ratio) * min(1.0, (step - decay_start) / max(1, total - decay_start))


@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
@pytest.mark.parametrize("total, warmup", [(1, 0), (7, 0), (7, 3), (50, 60), (100, 10), (1000, 50)])
@pytest.mark.parametrize("min_ratio, decay_fraction", [(0.0, 0.05), (0.1, 0.2), (1.0, 1.0)])
def test_schedules_equal_the_hand_written_ones(schedule, total, warmup, min_ratio, decay_fraction):
    got = [sched(s, schedule, total, warmup, min_ratio, decay_fraction) for s in range(total)]
    want = [reference_multiplier(s, total, warmup, schedule, min_ratio, decay_fraction) for s in range(total)]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
    assert sched(0, schedule, 100, 10) != pytest.approx(0.0)  # warm-up does not waste the first step


@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_schedules_warm_up_then_decay_to_min(schedule):
    values = [sched(s, schedule) for s in range(101)]
    assert values[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert values[10] == pytest.approx(1.0)
    assert all(a >= b - 1e-12 for a, b in zip(values[10:], values[11:], strict=False))
    assert values[100] == pytest.approx(0.1)


def test_cosine_midpoint_and_wsd_stable_phase():
    assert sched(55, "cosine") == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert [sched(s, "wsd") for s in range(10, 80)] == [1.0] * 70
    assert sched(90, "wsd") == pytest.approx(0.55)
    # The stable phase does not depend on the run length, which is what makes resizing a WSD run safe.
    assert [sched(s, "wsd", total=200) for s in range(10, 80)] == [1.0] * 70
