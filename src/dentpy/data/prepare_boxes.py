"""2D detection images in network space: normalised gray, letterboxed to the spec's
`preprocess.image_size` (aspect ratio kept, padding added), with every box mapped exactly.

A letterbox is a uniform scale plus a shift, so IoU between boxes is the same in network
and image space: validation can score in network space, and predictions go back to the
image's own pixels through the inverse of the same mapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dentpy.data.prepare2d import normalized_gray

if TYPE_CHECKING:
    from dentpy.data.image2d import Image2D
    from dentpy.data.samples2d import ImageRecord
    from dentpy.detection import Letterbox
    from dentpy.tasks.detection import DetectionTask

# Padding takes the value of the darkest normalised pixel: air, not a bright border that
# could look like a filling or a crown.
PAD = "min"


@dataclass(frozen=True, eq=False)
class PreparedBoxes:
    images: np.ndarray  # (N, 1, H, W) float32
    boxes: tuple[np.ndarray, ...]  # per image (n, 4) float32, network pixels
    labels: tuple[np.ndarray, ...]  # per image (n,) int64 class indices
    letterboxes: tuple[Letterbox, ...]
    case_ids: tuple[str, ...]
    dropped_boxes: int  # boxes of classes the task does not learn


def letterbox_image(
    image: Image2D, size: tuple[int, int], clip: tuple[float, float], where: str
) -> tuple[np.ndarray, Letterbox]:
    """(1, H, W) float32 network image and the mapping that produced it."""
    from dentpy.detection import Letterbox

    gray = normalized_gray(image, clip, where)
    box = Letterbox.fit(gray.shape[0], gray.shape[1], size[0], size[1])
    return box.apply_image(gray, pad_value=float(gray.min()))[None].astype(np.float32), box


def prepare_box_records(
    records: Sequence[ImageRecord],
    task: DetectionTask,
    size: tuple[int, int],
    clip: tuple[float, float],
) -> PreparedBoxes:
    """Load, check and convert records; an unreadable image or bad box stops with its error."""
    images, boxes, labels, mappings = [], [], [], []
    dropped = 0
    for record in records:
        sample = record.load()
        where = f"case {record.case_id} ({record.name_of(record.image_path)})"
        network, mapping = letterbox_image(sample.image, size, clip, where)
        kept, classes, lost = task.boxes_of(sample.boxes or ())
        dropped += lost
        images.append(network)
        array = np.asarray(kept, dtype=np.float64).reshape(-1, 4)
        boxes.append(mapping.boxes_to_network(array).astype(np.float32))
        labels.append(np.asarray(classes, dtype=np.int64))
        mappings.append(mapping)
    stacked = (np.stack(images) if images else np.zeros((0, 1, *size), dtype=np.float32)).astype(
        np.float32
    )
    return PreparedBoxes(
        images=stacked,
        boxes=tuple(boxes),
        labels=tuple(labels),
        letterboxes=tuple(mappings),
        case_ids=tuple(r.case_id for r in records),
        dropped_boxes=dropped,
    )
