"""CenterNet behind one output tensor, so the task-agnostic `Trainer` (which autocasts the
forward pass and calls `loss_fn(output.float(), target)`) trains it unchanged.

Packed output channels: C class-heatmap logits, then 2 log-sizes, then 2 offsets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from dentpy.detection.centernet import (
    STRIDE,
    CenterNet,
    Targets,
    centernet_loss,
    decode,
    encode_targets,
)


def _unpack(packed: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"heatmap": packed[:, :-4], "size": packed[:, -4:-2], "offset": packed[:, -2:]}


class PackedCenterNet(nn.Module):
    def __init__(self, in_channels: int, n_classes: int, width: int = 32) -> None:
        super().__init__()
        self.net = CenterNet(in_channels, n_classes, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return torch.cat([out["heatmap"], out["size"], out["offset"]], dim=1)


class PackedCenterNetLoss(nn.Module):
    """Focal heatmap loss + size and offset L1 (see `centernet_loss`)."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.n_classes = n_classes

    def forward(self, packed: torch.Tensor, targets: Targets) -> torch.Tensor:
        return centernet_loss(_unpack(packed), targets).total


def pack_targets(
    boxes: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor],
    n_classes: int,
    image_hw: Sequence[int],
) -> Targets:
    """Training targets on the output grid for boxes in network pixels."""
    h, w = int(image_hw[0]), int(image_hw[1])
    return encode_targets(boxes, labels, n_classes, h // STRIDE, w // STRIDE)


def detect_packed(
    packed: torch.Tensor, nms_iou: float | None, max_detections: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(boxes xyxy in network pixels, scores, class indices) per image, best first."""
    found = decode(_unpack(packed), top_k=max_detections, nms_iou=nms_iou)
    return [
        (
            d.boxes.detach().cpu().numpy().astype(np.float64),
            d.scores.detach().cpu().numpy().astype(np.float64),
            d.labels.detach().cpu().numpy().astype(np.int64),
        )
        for d in found
    ]
