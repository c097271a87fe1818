"""Seconds per training iteration of a planned configuration, measured on the device:
one warm-up step (allocation, kernel selection), then the median of three timed steps."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Spec

WARMUP_STEPS = 1
TIMED_STEPS = 3


def seconds_per_iteration(
    spec: Spec, out_channels: int, device: torch.device, amp_dtype: torch.dtype | None
) -> float:
    """Median time of a training step (the data pipeline is not included; the planner
    leaves a share of the budget for it and for validation)."""
    import torch

    from dentpy.planning.steps import training_steps

    state = torch.random.get_rng_state()  # timing must not shift the run's random stream
    try:
        seconds = training_steps(
            spec, out_channels, device, amp_dtype, TIMED_STEPS, warmup=WARMUP_STEPS
        )
    finally:
        torch.random.set_rng_state(state)
    step = statistics.median(seconds) * spec.train.accumulate_batches
    return float(step)
