"""Learning-rate schedules, as multipliers of the peak rate, one value per optimizer step.

The shapes after warm-up are transformers' own: `get_cosine_with_min_lr_schedule_with_warmup`
(cosine down to `min_ratio` at `total_steps`) and `get_wsd_schedule` (warm-up, stable, then a linear
decay over the last `decay_fraction` of the steps to `min_ratio`). The warm-up is minitron's: step s
of w runs at (s + 1) / w of the peak, so the first update is not wasted at a rate of zero.
"""

from __future__ import annotations

from collections.abc import Callable

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


def lr_lambda(
    *, total_steps: int, warmup_steps: int, schedule: str, min_ratio: float, decay_fraction: float
) -> Callable[[int], float]:
    """step -> multiplier for steps 0 .. total_steps - 1 (`step` counts finished optimizer steps)."""
    import torch
    from transformers import get_cosine_with_min_lr_schedule_with_warmup, get_wsd_schedule

    # transformers builds its schedules on an optimizer; a throwaway one lends us the bare function.
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    if schedule == "cosine":
        shape = get_cosine_with_min_lr_schedule_with_warmup(
            probe, warmup_steps, total_steps, min_lr_rate=min_ratio
        ).lr_lambdas[0]
    else:
        decay_steps = max(1, round(decay_fraction * total_steps))
        shape = get_wsd_schedule(
            probe, warmup_steps, decay_steps, num_training_steps=total_steps, decay_type="linear",
            min_lr_ratio=min_ratio,
        ).lr_lambdas[0]  # fmt: skip

    def multiplier(step: int) -> float:
        return (step + 1) / warmup_steps if step < warmup_steps else shape(step)

    return multiplier
