"""Block masks and the masked reconstruction loss.

The mask hides whole cubes (3D) or squares (2D) of `block` voxels rather than single
voxels: a single hidden voxel is trivially filled in from its neighbours, a hidden block
has to be inferred from anatomy around it. Exactly round(ratio * number of blocks) blocks
are hidden, so the hidden fraction is the requested one up to one block (exact when the
patch divides by the block size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def block_mask(
    spatial: Sequence[int], ratio: float, block: int, generator: torch.Generator
) -> torch.Tensor:
    """Bool tensor of shape `spatial`, True where a voxel is hidden."""
    import torch

    grid = [max(1, math.ceil(s / block)) for s in spatial]
    n_cells = math.prod(grid)
    hidden = min(n_cells, max(1, round(ratio * n_cells)))
    cells = torch.zeros(n_cells, dtype=torch.bool)
    cells[torch.randperm(n_cells, generator=generator)[:hidden]] = True
    mask = cells.reshape(grid)
    for axis in range(len(grid)):
        mask = mask.repeat_interleave(block, dim=axis)
    return mask[tuple(slice(0, s) for s in spatial)].contiguous()


def batch_mask(
    batch: int, spatial: Sequence[int], ratio: float, block: int, generator: torch.Generator
) -> torch.Tensor:
    """(batch, 1, *spatial) bool masks, a different one per sample."""
    import torch

    return torch.stack([block_mask(spatial, ratio, block, generator) for _ in range(batch)])[
        :, None
    ]


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over hidden voxels only: visible voxels are given to the network,
    so copying them through would teach nothing."""
    weight = mask.to(prediction.dtype)
    return ((prediction - target) ** 2 * weight).sum() / weight.sum().clamp_min(1.0)
