"""The sliding window of inference and validation: its size and overlap.

Training sees patches; inference may see more at once. A fully convolutional network
predicts a window larger than its training patch in one pass, and the usual tiling with
patch-sized windows at 50% overlap computes every voxel about 2^3 = 8 times in 3D. With
`train.sw_window: auto` (the default) the window grows to the whole (padded) volume when
the forward pass of that window fits a share of the memory limit; otherwise its largest
axes shrink, never below the patch. Windows that do not cover an axis keep an overlap of
half a *patch* along it (so a window twice the patch overlaps by 25%).

Measured (benchmarks/inference_time.py, docs/benchmarks.md): on the `ci` synthetic CBCT
(144 x 120 x 80 voxels in network space) one whole-volume pass was 2.4x faster than 64^3
windows at 50% overlap, at the same or higher Dice on every test case. `sw_window: patch`
keeps the patch-sized tiling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Spec

# Share of the memory limit (constraints.memory_limit_gb or auto) one window may use: the
# rest is the model, the whole-volume probabilities, and during validation the training
# step's own memory.
WINDOW_MEMORY_SHARE = 0.25
# Forward pass without autograd (peak RSS growth measured on the CPU, MONAI UNet, windows
# 64^3 to 192x192x128, 4-5 levels): 90-270 MiB of fixed oneDNN scratch plus at most ~0.6x
# the bytes of all layer outputs. The model counts all of them, plus a fixed 256 MiB.
FORWARD_FIXED_BYTES = 256 * 2**20
# Keeps every layer output far below 2^31 elements (32-bit indexing in some kernels).
MAX_WINDOW_VOXELS = 256**3
PATCH_OVERLAP = 0.5


@dataclass(frozen=True)
class Window:
    roi: tuple[int, int, int]
    overlap: tuple[float, float, float]
    rule: str


def patch_window(patch: Sequence[int]) -> Window:
    return Window(_three(patch), (PATCH_OVERLAP,) * 3, "the training patch, 50% overlap")


def choose_window(
    setting: str | Sequence[int],
    image_shape: Sequence[int],
    patch: Sequence[int],
    step: int,
    bytes_per_voxel: float,
    budget_bytes: int,
) -> Window:
    """The window for one network-space image. `step`: the network's downsampling factor
    (every side a multiple of it); `bytes_per_voxel`: the forward pass's estimated memory
    per window voxel (`forward_bytes_per_voxel`)."""
    if setting == "patch":
        return patch_window(patch)
    if not isinstance(setting, str):
        roi = _three(setting)
        if any(r % step for r in roi):
            from dentpy.errors import SpecError

            raise SpecError(
                f"train.sw_window {list(roi)} cannot pass through the network",
                expected=f"every side a multiple of {step} (the network's downsampling factor)",
                found=str(list(roi)),
                fix="use train.sw_window: auto, patch, or sides such as "
                f"{[max(step, r // step * step) for r in roi]}",
            )
        return Window(roi, _overlap(roi, patch, image_shape), "train.sw_window from the spec")
    whole = [max(p, math.ceil(s / step) * step) for s, p in zip(image_shape, patch, strict=True)]
    sides = list(whole)

    def fits(r: Sequence[int]) -> bool:
        voxels = math.prod(r)
        return voxels <= MAX_WINDOW_VOXELS and (
            FORWARD_FIXED_BYTES + voxels * bytes_per_voxel <= budget_bytes
        )

    while not fits(sides):
        # Shrink the axis that is largest relative to the patch, by one network step.
        axis = max(range(3), key=lambda a: (sides[a] / patch[a], sides[a], -a))
        if sides[axis] - step < patch[axis]:
            return Window(
                _three(patch),
                (PATCH_OVERLAP,) * 3,
                "auto: only the training patch fits the memory share, 50% overlap",
            )
        sides[axis] -= step
    roi = _three(sides)
    rule = (
        "auto: the whole volume in one pass"
        if sides == whole
        else f"auto: the largest window that fits {WINDOW_MEMORY_SHARE:.0%} of the memory limit"
    )
    return Window(roi, _overlap(roi, patch, image_shape), rule)


def _three(values: Sequence[int]) -> tuple[int, int, int]:
    first, second, third = (int(v) for v in values)
    return first, second, third


def _overlap(
    roi: Sequence[int], patch: Sequence[int], image_shape: Sequence[int]
) -> tuple[float, float, float]:
    """Half a patch of overlap along axes the window does not cover (as a share of the
    window, MONAI's convention); none where one window covers the axis."""
    first, second, third = (
        0.0 if r >= s else min(PATCH_OVERLAP, 0.5 * p / r)
        for r, p, s in zip(roi, patch, image_shape, strict=True)
    )
    return first, second, third


def forward_bytes_per_voxel(spec: Spec, out_channels: int) -> float:
    """Estimated forward-pass bytes per window voxel of the spec's network: fp32 bytes of
    all layer outputs of one training patch (meta device) per patch voxel."""
    from dentpy.planning.network import network_sizes

    patch = _three(spec.train.patch_size)
    sizes = network_sizes(
        spec.model.name,
        tuple(spec.model.channels),
        spec.model.num_res_units,
        out_channels,
        patch,
    )
    return 4 * sizes.activation_elements / math.prod(patch)


def window_for(
    spec: Spec, out_channels: int, image_shape: Sequence[int], device: torch.device
) -> Window:
    """`choose_window` with the spec's setting, patch, network and memory limit."""
    from dentpy.models import downsampling_factor
    from dentpy.planning.limits import memory_limit

    patch = _three(spec.train.patch_size)
    if spec.train.sw_window == "patch":
        return patch_window(patch)
    limit, _ = memory_limit(spec.constraints.memory_limit_gb, device.type)
    return choose_window(
        spec.train.sw_window,
        image_shape,
        patch,
        downsampling_factor(spec.model),
        forward_bytes_per_voxel(spec, out_channels),
        int(WINDOW_MEMORY_SHARE * limit),
    )
