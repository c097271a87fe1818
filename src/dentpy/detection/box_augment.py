"""Batch augmentation of 2D images together with their boxes, on the training device.

The detection sibling of `dentpy.augment2d.BatchAugment2D`: same config fields, same single
seeded CPU generator (so the draws, and a resumed run, do not depend on the device), but every
geometric change is applied to the boxes too, exactly, in pixel-edge coordinates:

- left/right flip: `x' = W - x` with min and max swapped. A flipped patient's left side is
  the image's right, so side-specific classes (FDI 16 <-> 26, ...) must change with it:
  `swap_table[c]` is the class after a flip. `swap_table=None` means "classes cannot be
  mirrored" and disables flips altogether, whatever the config says.
- zoom about the image centre by `scale_range` plus a shift of up to `translate` of the image
  size: `x' = (x - W/2) * s + W/2 + t_x`. Boxes are clipped to the image afterwards; a box
  that keeps less than half of its area inside the image is dropped (with its label), because
  a mostly cut-off object is a misleading target.
- `rotate_degrees` is NOT applied: a rotated axis-aligned box is no longer tight around its
  object, so rotation would teach the network loose boxes.
- intensity scale/shift, gamma and noise act on the pixels only, as in `augment2d`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from dentpy.augment2d import intensity_gamma_noise

# A box is dropped when less than this fraction of its area is left inside the image.
MIN_KEPT_AREA = 0.5


class AugmentConfig(Protocol):
    """The fields of `dentpy.spec.Augment` that are used (`rotate_degrees` is ignored)."""

    flip_left_right: bool
    scale_range: tuple[float, float]
    intensity_scale: float
    intensity_shift: float
    gamma_range: tuple[float, float]
    noise_std: float
    probability: float


def check_swap_table(swap_table: Sequence[int]) -> list[int]:
    """A flip done twice is no flip, so the table must be its own inverse."""
    table = [int(c) for c in swap_table]
    for c, d in enumerate(table):
        if not 0 <= d < len(table) or table[d] != c:
            raise ValueError(
                f"swap_table must map classes 0..{len(table) - 1} onto themselves and be its "
                f"own inverse; class {c} -> {d} -> {table[d] if 0 <= d < len(table) else '?'}"
            )
    return table


def flip_boxes(
    boxes: torch.Tensor, labels: torch.Tensor, width: float, swap_table: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror (n, 4) xyxy boxes in an image `width` pixels wide and swap their classes."""
    flipped = torch.stack(
        [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1
    )
    table = torch.as_tensor(list(swap_table), dtype=labels.dtype, device=labels.device)
    return flipped, table[labels] if labels.numel() else labels.clone()


def _area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]).clamp_min(0) * (boxes[:, 3] - boxes[:, 1]).clamp_min(0)


def zoom_boxes(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    scale: float,
    shift_x: float,
    shift_y: float,
    height: float,
    width: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes under `x' = (x - W/2) * scale + W/2 + shift_x` (same for y), clipped to the
    image; boxes with less than `MIN_KEPT_AREA` of their area left are dropped."""
    cx, cy = width / 2, height / 2
    centre = torch.tensor([cx, cy, cx, cy], dtype=boxes.dtype, device=boxes.device)
    shift = torch.tensor(
        [shift_x, shift_y, shift_x, shift_y], dtype=boxes.dtype, device=boxes.device
    )
    moved = (boxes - centre) * scale + centre + shift
    limit = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    clipped = torch.minimum(moved.clamp_min(0), limit)
    area = (moved[:, 2] - moved[:, 0]).clamp_min(0) * (moved[:, 3] - moved[:, 1]).clamp_min(0)
    kept = (clipped[:, 2] - clipped[:, 0]).clamp_min(0) * (clipped[:, 3] - clipped[:, 1]).clamp_min(
        0
    )
    keep = (kept > 0) & (kept >= MIN_KEPT_AREA * area)
    return clipped[keep], labels[keep]


def zoom_images(
    images: torch.Tensor, scale: torch.Tensor, shift_x: torch.Tensor, shift_y: torch.Tensor
) -> torch.Tensor:
    """(N, C, H, W) images under the same map as `zoom_boxes`, per image (1-D parameters).

    With `align_corners=False` the normalised coordinate is `u = 2x/W - 1` for pixel-edge x,
    so the inverse map is `u_in = u_out / s - 2 t_x / (W s)`. Uncovered pixels get the
    image's own minimum (per channel): the background of a radiograph, never a smeared copy
    of the border, which could look like a tooth without a box.
    """
    n, _, h, w = images.shape
    dev, dtype = images.device, images.dtype
    s = scale.to(dev, dtype)
    theta = torch.zeros(n, 2, 3, device=dev, dtype=dtype)
    theta[:, 0, 0] = 1 / s
    theta[:, 1, 1] = 1 / s
    theta[:, 0, 2] = -2 * shift_x.to(dev, dtype) / (w * s)
    theta[:, 1, 2] = -2 * shift_y.to(dev, dtype) / (h * s)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    low = images.amin(dim=(2, 3), keepdim=True)
    sampled = F.grid_sample(
        images - low, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return sampled + low


class BoxAugment2D:
    """Random flips, zoom/shift and intensity changes of a batch and its boxes.

    Call with images (N, C, H, W) and per image an (n_i, 4) float box tensor (xyxy, image
    pixels) and an (n_i,) integer label tensor; returns new tensors (inputs untouched) on the
    images' device. Draw order is fixed, so a seed and `state_dict` reproduce a run exactly.
    """

    def __init__(
        self,
        cfg: AugmentConfig,
        swap_table: Sequence[int] | None,
        device: torch.device,
        seed: int,
        translate: float = 0.05,
    ) -> None:
        if translate < 0:
            raise ValueError(f"translate must be >= 0, got {translate}")
        self.cfg = cfg
        self.swap_table = None if swap_table is None else check_swap_table(swap_table)
        self.device = device
        self.translate = translate
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=self.generator, dtype=torch.float64)

    def _chosen(self, n: int) -> torch.Tensor:
        return torch.rand(n, generator=self.generator) < self.cfg.probability

    def __call__(
        self,
        images: torch.Tensor,
        boxes: Sequence[torch.Tensor],
        labels: Sequence[torch.Tensor],
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        cfg, n = self.cfg, images.shape[0]
        if len(boxes) != n or len(labels) != n:
            raise ValueError(f"{n} images but {len(boxes)} box and {len(labels)} label tensors")
        h, w = images.shape[-2:]
        out = images.clone()
        out_boxes = [b.to(images.device).clone() for b in boxes]
        out_labels = [lab.to(images.device).clone() for lab in labels]

        if cfg.flip_left_right and self.swap_table is not None:
            flip = torch.rand(n, generator=self.generator) < 0.5
            out = torch.where(flip.to(out.device)[:, None, None, None], out.flip(-1), out)
            for i in torch.nonzero(flip).flatten().tolist():
                out_boxes[i], out_labels[i] = flip_boxes(
                    out_boxes[i], out_labels[i], w, self.swap_table
                )

        if cfg.scale_range != (1.0, 1.0) or self.translate > 0:
            scale = self._uniform(n, *cfg.scale_range)
            shift_x = self._uniform(n, -self.translate, self.translate) * w
            shift_y = self._uniform(n, -self.translate, self.translate) * h
            keep = ~self._chosen(n)
            scale[keep], shift_x[keep], shift_y[keep] = 1.0, 0.0, 0.0
            moved = torch.nonzero(~keep).flatten().tolist()
            if moved:
                out = zoom_images(out, scale, shift_x, shift_y)
                for i in moved:
                    out_boxes[i], out_labels[i] = zoom_boxes(
                        out_boxes[i],
                        out_labels[i],
                        float(scale[i]),
                        float(shift_x[i]),
                        float(shift_y[i]),
                        h,
                        w,
                    )

        out = intensity_gamma_noise(out, cfg, self._uniform, self._chosen, self.generator)
        return out, out_boxes, out_labels

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
