"""Detection task: box classes, flip renumbering, class resolution, letterboxed data and
the blob baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dentpy.baselines_detection import BlobBoxes, fit_blob_boxes
from dentpy.data.samples2d import Box, ImageRecord
from dentpy.errors import SpecError
from dentpy.spec import parse_spec
from dentpy.tasks.detection import (
    DetectionTask,
    box_class_name,
    build_detection_task,
    detection_swap_table,
)


def _spec(**objective: object) -> object:
    return parse_spec(
        {
            "objective": {"task": "detection", "output": "boxes", **objective},
            "input": {"dimensionality": "2d", "modality": "xray"},
        }
    )


def _record(boxes: list[Box]) -> ImageRecord:
    return ImageRecord("case-1", "p1", Path("x.png"), boxes=tuple(boxes))


def test_spec_defaults_for_detection() -> None:
    spec = _spec()
    assert spec.model.name == "centernet" and spec.loss.name == "centernet"  # type: ignore[attr-defined]
    assert spec.metrics.select_by == "ap50"  # type: ignore[attr-defined]
    assert spec.evaluation.baselines == ["blob_boxes"]  # type: ignore[attr-defined]
    with pytest.raises(SpecError, match="2D images"):
        parse_spec({"objective": {"task": "detection", "output": "boxes"}})


def test_box_class_levels() -> None:
    box = Box(0, 0, 4, 4, "caries", fdi=36)
    assert box_class_name(box, "label") == "caries"
    assert box_class_name(box, "tooth") == "36"
    assert box_class_name(box, "label_on_tooth") == "caries@36"
    assert box_class_name(Box(0, 0, 4, 4, "caries"), "tooth") is None


def test_flip_table_renumbers_teeth_and_sides() -> None:
    assert detection_swap_table(["16", "26", "36", "46"]) == [1, 0, 3, 2]
    assert detection_swap_table(["caries@16", "caries@26", "filling"]) == [1, 0, 2]
    assert detection_swap_table(["left_condyle", "right_condyle", "caries"]) == [1, 0, 2]
    assert detection_swap_table(["mild", "severe"]) == [0, 1]
    assert detection_swap_table(["16", "36"]) is None  # 26 and 46 are not classes: no flips


def test_classes_come_from_training_boxes_in_fdi_order() -> None:
    records = [_record([Box(0, 0, 2, 2, "tooth", fdi=f) for f in (46, 11, 21, 36)])]
    task = build_detection_task(_spec(box_class="tooth"), records)  # type: ignore[arg-type]
    assert task.classes == ("11", "21", "36", "46")
    boxes, labels, dropped = DetectionTask(("11", "36"), "tooth").boxes_of(records[0].boxes or ())
    assert labels == [0, 1] and dropped == 2 and boxes[0] == [0, 0, 2, 2]
    with pytest.raises(SpecError, match="carry no tooth number"):
        build_detection_task(_spec(box_class="tooth"), [_record([Box(0, 0, 2, 2, "caries")])])  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="no training box has"):
        build_detection_task(_spec(classes=["severe"]), records)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="hold no boxes"):
        build_detection_task(_spec(), [_record([])])  # type: ignore[arg-type]


def test_blob_baseline_finds_bright_blobs_and_is_fitted_on_training_images() -> None:
    rng = np.random.default_rng(0)
    images, boxes, labels = [], [], []
    for _ in range(6):
        image = rng.normal(0, 0.1, (64, 96))
        found = []
        for _ in range(3):
            y, x = int(rng.integers(2, 50)), int(rng.integers(2, 80))
            image[y : y + 10, x : x + 12] += 3.0
            found.append([x, y, x + 12, y + 10])
        images.append(image[None].astype(np.float32))
        boxes.append(np.array(found, dtype=np.float64))
        labels.append(np.zeros(3, dtype=np.int64))
    blob = fit_blob_boxes(np.stack(images), boxes, labels, ["tooth"])
    assert blob.polarity == "bright"
    found_boxes, scores, found_labels = blob.detect(images[0])
    assert len(found_boxes) >= 1 and np.all((scores > 0) & (scores < 1))
    assert set(found_labels.tolist()) == {0}
    dark = BlobBoxes("dark", 2.0, 4, 0).detect(images[0])[0]
    assert not any(np.allclose(b, boxes[0][0]) for b in dark)
