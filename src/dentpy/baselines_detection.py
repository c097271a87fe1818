"""The trivial detection baseline a trained detector must beat: boxes around intensity blobs.

Teeth are bright and caries dark on a radiograph, so "threshold the image and box every
connected blob" is the detector one writes in an afternoon. Its polarity, gray-level
percentile and minimum blob size are chosen on training images (best AP50); every blob gets
the commonest training class and a score that grows with its size and contrast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FIT_IMAGES = 64
_GRID = {
    "bright": (60.0, 70.0, 80.0, 90.0, 95.0),
    "dark": (2.0, 5.0, 10.0, 20.0, 30.0),
}
_MIN_AREAS = (4, 16, 64, 256)


@dataclass(frozen=True)
class BlobBoxes:
    polarity: str  # "bright" | "dark"
    percentile: float
    min_area_px: int
    label: int  # class index given to every blob

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes xyxy pixel edges, scores, labels) of one (H, W) or (1, H, W) image."""
        from scipy import ndimage

        gray = np.asarray(image, dtype=np.float64).reshape(image.shape[-2:])
        level = float(np.percentile(gray, self.percentile))
        mask = gray >= level if self.polarity == "bright" else gray <= level
        components, count = ndimage.label(mask)
        if count == 0:
            empty = np.zeros((0, 4))
            return empty, np.zeros(0), np.zeros(0, dtype=np.int64)
        areas = np.bincount(components.ravel(), minlength=count + 1)[1:]
        means = ndimage.mean(gray, components, index=np.arange(1, count + 1))
        boxes, scores = [], []
        contrast_sign = 1.0 if self.polarity == "bright" else -1.0
        for index, found in enumerate(ndimage.find_objects(components)):
            if found is None or areas[index] < self.min_area_px:
                continue
            rows, cols = found
            boxes.append([cols.start, rows.start, cols.stop, rows.stop])
            contrast = contrast_sign * (float(means[index]) - float(gray.mean()))
            scores.append(float(np.log1p(areas[index])) + contrast)
        if not boxes:
            return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
        score = np.asarray(scores)
        score = 1.0 / (1.0 + np.exp(-(score - score.mean())))  # into (0, 1), order kept
        return (
            np.asarray(boxes, dtype=np.float64),
            score,
            np.full(len(boxes), self.label, dtype=np.int64),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_blob_boxes(
    images: np.ndarray,
    boxes: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    class_names: Sequence[str],
) -> BlobBoxes:
    """Choose polarity, percentile and minimum size with the best training AP50."""
    from dentpy.metrics.detection import ImageBoxes, evaluate_detections

    n = min(len(images), FIT_IMAGES)
    all_labels = np.concatenate([np.asarray(lab) for lab in labels[:n]] or [np.zeros(0)])
    common = int(np.bincount(all_labels.astype(np.int64)).argmax()) if all_labels.size else 0
    truth = [
        ImageBoxes(str(i), np.asarray(boxes[i]).reshape(-1, 4), np.asarray(labels[i]))
        for i in range(n)
    ]
    best: tuple[float, BlobBoxes] | None = None
    for polarity, percentiles in _GRID.items():
        for percentile in percentiles:
            for min_area in _MIN_AREAS:
                candidate = BlobBoxes(polarity, percentile, min_area, common)
                found = [candidate.detect(images[i]) for i in range(n)]
                predicted = [ImageBoxes(str(i), b, lab, s) for i, (b, s, lab) in enumerate(found)]
                ap50 = evaluate_detections(truth, predicted, list(class_names))["ap50"] or 0.0
                if best is None or ap50 > best[0]:
                    best = (float(ap50), candidate)
    if best is None:
        return BlobBoxes("bright", 90.0, 16, common)
    return best[1]
