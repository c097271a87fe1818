"""The network a plan sizes: depth and widths from the patch, and its tensor sizes.

Sizes come from running the real network on PyTorch's "meta" device (shapes only, no
memory, no arithmetic), so the memory model follows the architecture the spec names
instead of a hand-written formula per network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

# nnU-Net's rules: the bottleneck keeps >= 4 voxels per axis; widths double per level from a
# base width up to a cap. Our base is lighter on CPU, where every feature map costs time.
MIN_BOTTLENECK_VOXELS = 4
MIN_LEVELS = 2
MAX_LEVELS = 6
MAX_WIDTH = 320


def base_width(device_type: str) -> int:
    return 32 if device_type == "cuda" else 16


def levels_for(patch: Sequence[int]) -> int:
    """Most levels (halvings + 1) keeping the smallest patch axis >= 4 voxels at the bottom."""
    halvings = math.floor(math.log2(max(1, min(patch)) / MIN_BOTTLENECK_VOXELS))
    return max(MIN_LEVELS, min(MAX_LEVELS, halvings + 1))


def widths_for(levels: int, device_type: str) -> list[int]:
    base = base_width(device_type)
    return [min(MAX_WIDTH, base * 2**level) for level in range(levels)]


@dataclass(frozen=True)
class NetworkSizes:
    """Per training sample: elements of every layer output (what autograd keeps for the
    backward pass), the largest single output, and the number of parameters."""

    activation_elements: int
    largest_output_elements: int
    parameters: int


@lru_cache(maxsize=256)
def network_sizes(
    name: str,
    channels: tuple[int, ...],
    num_res_units: int,
    out_channels: int,
    patch: tuple[int, int, int],
) -> NetworkSizes:
    """Tensor sizes of the spec's network for one sample of `patch` (meta device)."""
    import torch

    from dentpy.models import build_model
    from dentpy.spec import Model

    cfg = Model(name=name, channels=list(channels), num_res_units=num_res_units)
    with torch.device("meta"):
        model = build_model(cfg, in_channels=1, out_channels=out_channels)
        sample = torch.empty(1, 1, *patch)
    outputs: list[int] = []

    def record(_module: object, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            outputs.append(output.numel())

    leaves = [m for m in model.modules() if not list(m.children())]
    # Dropout with p=0 and Identity return their input, and in-place activations (BasicUNet's
    # LeakyReLU) write into it: no new tensor to keep.
    kept = [
        m
        for m in leaves
        if not isinstance(m, torch.nn.Dropout | torch.nn.Identity)
        and not getattr(m, "inplace", False)
    ]
    handles = [m.register_forward_hook(record) for m in kept]
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for handle in handles:
            handle.remove()
    return NetworkSizes(
        activation_elements=sum(outputs),
        largest_output_elements=max(outputs, default=0),
        parameters=sum(p.numel() for p in model.parameters()),
    )
