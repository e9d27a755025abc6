"""Learning-rate schedules as multipliers of the peak rate, one value per optimizer step."""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "wsd")


def effective_warmup(warmup_steps: int, total_steps: int) -> tuple[int, str | None]:
    """The warm-up a run of `total_steps` gets, and a note when it is not the one asked for.

    A warm-up as long as the run never reaches the peak rate: the model would barely move (a short
    test run would "distil" nothing). Such a run warms up over a tenth of its steps instead, and says so.
    """
    if warmup_steps < total_steps:
        return warmup_steps, None
    used = total_steps // 10
    return used, (
        f"--warmup-steps {warmup_steps} is not below the run's {total_steps} steps (the rate would never "
        f"reach --lr); warming up over {used} steps instead"
    )


def lr_multiplier(
    step: int, *, total_steps: int, warmup_steps: int, schedule: str, min_ratio: float, decay_fraction: float
) -> float:
    """Linear warm-up from ~0 to 1, then `cosine` down to `min_ratio` at `total_steps`, or `wsd`
    (warm-up, stable, decay): hold 1 until the last `decay_fraction` of the steps, then fall
    linearly to `min_ratio`. `step` counts finished optimizer steps (0 = the first update)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    decay_start = total_steps - max(1, round(decay_fraction * total_steps))
    if step < decay_start:
        return 1.0
    progress = min(1.0, (step - decay_start) / max(1, total_steps - decay_start))
    return 1.0 - (1 - min_ratio) * progress
