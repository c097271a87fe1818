"""Letterboxing: fit an image into the network's fixed input size without distorting it.

All coordinates are pixel-edge (pixel `i` covers `[i, i + 1)`, x to the right, y down), the
same convention as `dentpy.data.samples2d.Box`. In that convention a uniform zoom by `scale`
followed by a shift is the exact affine map `x' = x * scale + pad_x` (and likewise for y),
with no half-pixel terms: the resampling below is set up to follow precisely that map
(`F.interpolate(scale_factor=scale, recompute_scale_factor=False, align_corners=False)`
samples output pixel centre `u + 0.5` at input position `(u + 0.5) / scale`). So boxes are
mapped into network space and back exactly, and the pixels inside a box land inside the
mapped box.

The padding offsets are whole pixels, so the resized content is pasted without a second
resampling; the content occupies `floor(in * scale)` pixels, which can drop less than one
pixel of the image's far edge (nothing of a box's mapping depends on that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import overload

import numpy as np
import torch
import torch.nn.functional as F

# A product like 512 / 1024 * 1024 can land a hair under the whole number it should be;
# this keeps `floor` from losing a full row of content to rounding noise.
_FLOOR_SLACK = 1e-6


def _as_boxes(boxes: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    if boxes.shape[-1] != 4:
        raise ValueError(
            "boxes must have shape (..., 4) as x_min, y_min, x_max, y_max, "
            f"got {tuple(boxes.shape)}"
        )
    return boxes


@dataclass(frozen=True)
class Letterbox:
    """Resize by one `scale` (aspect ratio kept) and centre the result on an `out_h x out_w`
    canvas. `pad_x`, `pad_y` are whole pixels of padding on the left and top."""

    scale: float
    pad_x: int
    pad_y: int
    out_h: int
    out_w: int
    in_h: int
    in_w: int

    @classmethod
    def fit(cls, in_h: int, in_w: int, out_h: int, out_w: int) -> Letterbox:
        if min(in_h, in_w, out_h, out_w) <= 0:
            raise ValueError(f"sizes must be positive, got in {in_h}x{in_w}, out {out_h}x{out_w}")
        scale = min(out_h / in_h, out_w / in_w)
        new_h, new_w = cls._content_size(in_h, in_w, scale)
        return cls(
            scale=scale,
            pad_x=(out_w - new_w) // 2,
            pad_y=(out_h - new_h) // 2,
            out_h=out_h,
            out_w=out_w,
            in_h=in_h,
            in_w=in_w,
        )

    @staticmethod
    def _content_size(in_h: int, in_w: int, scale: float) -> tuple[int, int]:
        # `interpolate(scale_factor=...)` makes floor(in * scale) pixels; computed the same
        # way here (with the slack) so the canvas arithmetic agrees with it.
        new_h = math.floor(in_h * scale + _FLOOR_SLACK)
        new_w = math.floor(in_w * scale + _FLOOR_SLACK)
        return max(new_h, 1), max(new_w, 1)

    def apply_image(self, image: np.ndarray, pad_value: float = 0.0) -> np.ndarray:
        """(H, W) or (H, W, C) image -> float32 (out_h, out_w[, C]); the input is not changed.

        Bilinear resampling; when shrinking, antialiased (a plain bilinear shrink of a large
        radiograph to network size would alias fine structures such as root canals).
        """
        if image.ndim not in (2, 3) or image.shape[:2] != (self.in_h, self.in_w):
            raise ValueError(
                f"expected an image of {self.in_h}x{self.in_w}[xC], got shape {image.shape}"
            )
        channels_last = image.ndim == 3
        x = torch.as_tensor(np.array(image, dtype=np.float32, copy=True))
        x = x.permute(2, 0, 1)[None] if channels_last else x[None, None]
        new_h, new_w = self._content_size(self.in_h, self.in_w, self.scale)
        resized = F.interpolate(
            x,
            scale_factor=(self.scale, self.scale),
            mode="bilinear",
            align_corners=False,
            recompute_scale_factor=False,
            antialias=self.scale < 1,
        )
        # Rounding slack can make interpolate's size differ by a pixel from ours; the pixel
        # grid still starts at the image's origin, so cropping/padding the far edge is exact.
        resized = resized[..., :new_h, :new_w]
        canvas = torch.full(
            (1, x.shape[1], self.out_h, self.out_w), float(pad_value), dtype=torch.float32
        )
        h, w = resized.shape[-2:]
        canvas[..., self.pad_y : self.pad_y + h, self.pad_x : self.pad_x + w] = resized
        out = canvas[0].permute(1, 2, 0) if channels_last else canvas[0, 0]
        return out.contiguous().numpy()

    def _affine(
        self, boxes: np.ndarray | torch.Tensor, scale: float, shift_x: float, shift_y: float
    ) -> np.ndarray | torch.Tensor:
        _as_boxes(boxes)
        if isinstance(boxes, torch.Tensor):
            shift = torch.tensor(
                [shift_x, shift_y, shift_x, shift_y], dtype=boxes.dtype, device=boxes.device
            )
            return boxes * scale + shift
        arr = np.asarray(boxes, dtype=np.float64)
        return arr * scale + np.array([shift_x, shift_y, shift_x, shift_y])

    @overload
    def boxes_to_network(self, boxes: np.ndarray) -> np.ndarray: ...
    @overload
    def boxes_to_network(self, boxes: torch.Tensor) -> torch.Tensor: ...
    def boxes_to_network(self, boxes: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """(..., 4) image-pixel xyxy -> network-pixel xyxy: `x' = x * scale + pad_x`."""
        return self._affine(boxes, self.scale, self.pad_x, self.pad_y)

    @overload
    def boxes_to_image(self, boxes: np.ndarray) -> np.ndarray: ...
    @overload
    def boxes_to_image(self, boxes: torch.Tensor) -> torch.Tensor: ...
    def boxes_to_image(self, boxes: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Inverse of `boxes_to_network`: `x = (x' - pad_x) / scale`."""
        return self._affine(
            boxes, 1.0 / self.scale, -self.pad_x / self.scale, -self.pad_y / self.scale
        )
