"""Batch augmentation of 2D images on the training device (the 2D sibling of `augment`).

Left/right and up/down are not side-specific for a tooth crop's class (caries looks the same
mirrored), so flips are safe here; rotation/scale, intensity, gamma and noise follow the
spec's `augment` section. All random draws come from one torch generator whose state is
checkpointed, so resume is exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Augment


class BatchAugment2D:
    def __init__(self, cfg: Augment, device: torch.device, seed: int) -> None:
        import torch

        self.cfg = cfg
        self.device = device
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        import torch

        return low + (high - low) * torch.rand(n, generator=self.generator)

    def _chosen(self, n: int) -> torch.Tensor:
        import torch

        return torch.rand(n, generator=self.generator) < self.cfg.probability

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) float -> augmented copy, same shape and device."""
        import torch

        cfg, n = self.cfg, images.shape[0]
        out = images.clone()
        if cfg.flip_left_right:
            flip = (torch.rand(n, generator=self.generator) < 0.5).to(out.device)
            out = torch.where(flip[:, None, None, None], out.flip(-1), out)
        if cfg.rotate_degrees > 0 or cfg.scale_range != (1.0, 1.0):
            angle = self._uniform(n, -cfg.rotate_degrees, cfg.rotate_degrees) * math.pi / 180
            scale = self._uniform(n, *cfg.scale_range)
            keep = ~self._chosen(n)
            angle[keep], scale[keep] = 0.0, 1.0
            cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
            theta = torch.zeros(n, 2, 3)
            theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
            grid = torch.nn.functional.affine_grid(
                theta.to(out.device, out.dtype), list(out.shape), align_corners=False
            )
            out = torch.nn.functional.grid_sample(
                out, grid, mode="bilinear", padding_mode="border", align_corners=False
            )
        out = intensity_gamma_noise(out, cfg, self._uniform, self._chosen, self.generator)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def intensity_gamma_noise(
    out: torch.Tensor,
    cfg: Any,
    uniform: Callable[[int, float, float], torch.Tensor],
    chosen: Callable[[int], torch.Tensor],
    generator: torch.Generator,
) -> torch.Tensor:
    """Per image, each with the spec's probability: gain and offset, then gamma on the
    image's own range; then Gaussian noise on every image. Draws from `generator` in a
    fixed order (exact resume depends on it)."""
    import torch

    n = out.shape[0]
    on = chosen(n).to(out.device)[:, None, None, None]
    factor = uniform(n, 1 - cfg.intensity_scale, 1 + cfg.intensity_scale)
    shift = uniform(n, -cfg.intensity_shift, cfg.intensity_shift)
    factor_t = factor.to(out.device, out.dtype)[:, None, None, None]
    shift_t = shift.to(out.device, out.dtype)[:, None, None, None]
    out = torch.where(on, out * factor_t + shift_t, out)
    gamma = uniform(n, *cfg.gamma_range).to(out.device, out.dtype)[:, None, None, None]
    on = chosen(n).to(out.device)[:, None, None, None]
    low = out.amin(dim=(1, 2, 3), keepdim=True)
    high = out.amax(dim=(1, 2, 3), keepdim=True)
    span = (high - low).clamp_min(1e-6)
    gamma_applied = ((out - low) / span).clamp(0, 1) ** gamma * span + low
    out = torch.where(on, gamma_applied, out)
    if cfg.noise_std > 0:
        noise = torch.randn(out.shape, generator=generator).to(out.device, out.dtype)
        out = out + noise * cfg.noise_std
    return out
