"""Seconds per training iteration of a planned configuration, measured on the device:
two warm-up steps (allocation, kernel selection), then the median of five timed steps;
and seconds per validation."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Spec

# Five timed steps: on a shared 2-core machine three gave 0.297 s and 0.336 s in two runs
# whose real pace was ~0.30 s; the median of more steps is steadier (a second or two).
WARMUP_STEPS = 2
TIMED_STEPS = 5


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


def seconds_per_validation(
    spec: Spec,
    out_channels: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    shapes: Sequence[Sequence[int]],
    world_size: int = 1,
) -> float:
    """Seconds of one validation of cases of these network-space `shapes`: one prediction
    of the largest (the spec's window, `train.sw_window`), scaled by voxels to the cases
    of the most loaded of `world_size` ranks (they share validation, `ranked_voxels`). On
    CPU the first call is timed (allocation included). On CUDA a first, untimed call comes
    before: cuDNN's autotuning of each new shape made the first call ~10 s on an H100, where
    later validations take a fraction of that."""
    import math

    import numpy as np
    import torch

    from dentpy.inference import network_probabilities
    from dentpy.tasks.segmentation import SegmentationTask

    if not shapes:
        return 0.0
    names = tuple(f"class{i}" for i in range(1, out_channels))
    task = SegmentationTask(names, tuple((i,) for i in range(1, out_channels)))
    state = torch.random.get_rng_state()
    try:
        model = task.build_model(spec).to(device).eval()
    finally:
        torch.random.set_rng_state(state)
    largest = max(shapes, key=math.prod)
    image = np.random.default_rng(0).standard_normal(tuple(largest)).astype(np.float32)
    if device.type == "cuda":
        network_probabilities(model, image, spec, out_channels, device, amp_dtype).cpu()
    started = time.perf_counter()
    probabilities = network_probabilities(model, image, spec, out_channels, device, amp_dtype)
    probabilities.argmax(0).cpu()
    seconds = time.perf_counter() - started
    return seconds * ranked_voxels(shapes, world_size) / math.prod(largest)


def ranked_voxels(shapes: Sequence[Sequence[int]], world_size: int) -> int:
    """Voxels the most loaded rank validates when `world_size` ranks share cases of these
    `shapes` (dentpy.engine.validation.shard); all of them in one process."""
    import math

    from dentpy.engine.validation import shard

    voxels = [float(math.prod(s)) for s in shapes]
    return int(max(sum(voxels[i] for i in shard(voxels, r, world_size)) for r in range(world_size)))
