"""Batch augmentation on the training device (torch ops), with side-aware flips.

Parameters are drawn first (from one torch Generator whose state is checkpointed) and
applied second, and the drawn parameters are returned, so a bad sample can be replayed.
A left/right flip swaps side-specific classes (left IAN <-> right IAN): flipping the image
without swapping them would teach the network that the left canal is the right one.
Labels are resampled with nearest neighbour and never intensity-transformed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Augment

# In canonical RAS network space, array axis 0 runs along the patient's left-right axis.
LEFT_RIGHT_AXIS = 0


def side_swap_table(class_names: list[str]) -> list[int] | None:
    """Class index -> class index after a left/right flip (index 0 = background).

    Returns None when a side-specific class has no partner: such data cannot be flipped.
    """
    from dentpy.data.fdi import side_pairs_from_names
    from dentpy.errors import InputDataError

    indices = {name: index for index, name in enumerate(class_names, start=1)}
    try:
        pairs = side_pairs_from_names(indices)
    except InputDataError:
        return None
    return [pairs.get(index, index) for index in range(len(class_names) + 1)]


class BatchAugment:
    """Random flip (with class swap), rotation + scaling, intensity scale/shift, gamma, noise."""

    def __init__(self, cfg: Augment, swap_table: list[int] | None, device: torch.device, seed: int):
        import torch

        self.cfg = cfg
        self.device = device
        self.flip = cfg.flip_left_right and swap_table is not None
        self.swap = torch.tensor(swap_table or [0], dtype=torch.long, device=device)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed)

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        import torch

        return low + (high - low) * torch.rand(n, generator=self.generator)

    def draw(self, n: int) -> dict[str, torch.Tensor]:
        """Draw every random parameter for a batch of n samples (on the CPU generator)."""
        import torch

        p = self.cfg.probability
        angle = math.radians(self.cfg.rotate_degrees)
        return {
            "flip": (torch.rand(n, generator=self.generator) < 0.5) & torch.tensor(self.flip),
            "spatial": torch.rand(n, generator=self.generator) < p,
            "angles": self._uniform(n * 3, -angle, angle).reshape(n, 3),
            "scale": self._uniform(n, *self.cfg.scale_range),
            "intensity": torch.rand(n, generator=self.generator) < p,
            "gain": self._uniform(n, 1 - self.cfg.intensity_scale, 1 + self.cfg.intensity_scale),
            "offset": self._uniform(n, -self.cfg.intensity_shift, self.cfg.intensity_shift),
            "gamma_on": torch.rand(n, generator=self.generator) < p,
            "gamma": self._uniform(n, *self.cfg.gamma_range),
            "noise": torch.randn(n, generator=self.generator).abs() * self.cfg.noise_std,
            "noise_seed": torch.randint(0, 2**31 - 1, (1,), generator=self.generator),
        }

    def __call__(
        self, image: torch.Tensor, label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        params = self.draw(image.shape[0])
        image, label = self.apply(image, label, params)
        return image, label, params

    def apply(
        self, image: torch.Tensor, label: torch.Tensor, params: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        import torch
        import torch.nn.functional as F

        flip = params["flip"].to(image.device)
        if bool(flip.any()):
            axis = 2 + LEFT_RIGHT_AXIS
            image = torch.where(flip.view(-1, 1, 1, 1, 1), image.flip(axis), image)
            swapped = self.swap[label.long().flip(axis)].to(label.dtype)
            label = torch.where(flip.view(-1, 1, 1, 1, 1), swapped, label)
        spatial = params["spatial"]
        if bool(spatial.any()):
            theta = _affine(params["angles"], params["scale"]).to(image.device)
            identity = torch.eye(3, 4).expand_as(theta).to(image.device)
            theta = torch.where(spatial.view(-1, 1, 1).to(image.device), theta, identity)
            grid = F.affine_grid(theta, list(image.shape), align_corners=False)
            # Where the rotated or shrunk patch reaches past its edges, the edge voxels are
            # repeated, in the image and the label alike (as MONAI's RandAffined with
            # padding_mode="border" and dentpy.augment2d do). Filling with the minimum, as
            # before, drew a dark frame with hard edges into up to a quarter of the patch.
            image = F.grid_sample(
                image, grid, mode="bilinear", padding_mode="border", align_corners=False
            )
            label = F.grid_sample(
                label.float(), grid, mode="nearest", padding_mode="border", align_corners=False
            ).to(label.dtype)
        shape = (-1, 1, 1, 1, 1)
        on = params["intensity"].to(image.device).view(shape)
        gain = params["gain"].to(image.device).view(shape)
        offset = params["offset"].to(image.device).view(shape)
        image = torch.where(on, image * gain + offset, image)
        gamma_on = params["gamma_on"].to(image.device).view(shape)
        if bool(gamma_on.any()):
            low = image.amin(dim=(1, 2, 3, 4), keepdim=True)
            high = image.amax(dim=(1, 2, 3, 4), keepdim=True)
            span = (high - low).clamp_min(1e-6)
            gamma = params["gamma"].to(image.device).view(shape)
            curved = ((image - low) / span).clamp(0, 1) ** gamma * span + low
            image = torch.where(gamma_on, curved, image)
        noise_generator = torch.Generator(device=image.device)
        noise_generator.manual_seed(int(params["noise_seed"]))
        noise = torch.randn(image.shape, generator=noise_generator, device=image.device)
        image = image + noise * params["noise"].to(image.device).view(shape)
        return image, label

    def state_dict(self) -> dict[str, object]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.generator.set_state(state["generator"])  # type: ignore[arg-type]


def _affine(angles: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(n, 3, 4) affine_grid matrices: rotation about the three axes, isotropic zoom."""
    import torch

    n = angles.shape[0]
    cos, sin = angles.cos(), angles.sin()
    one, zero = torch.ones(n), torch.zeros(n)
    rx = torch.stack([one, zero, zero, zero, cos[:, 0], -sin[:, 0], zero, sin[:, 0], cos[:, 0]], 1)
    ry = torch.stack([cos[:, 1], zero, sin[:, 1], zero, one, zero, -sin[:, 1], zero, cos[:, 1]], 1)
    rz = torch.stack([cos[:, 2], -sin[:, 2], zero, sin[:, 2], cos[:, 2], zero, zero, zero, one], 1)
    rotation = rx.view(n, 3, 3) @ ry.view(n, 3, 3) @ rz.view(n, 3, 3)
    matrix = rotation / scale.view(n, 1, 1)
    return torch.cat([matrix, torch.zeros(n, 3, 1)], dim=2)
