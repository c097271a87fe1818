"""Bootstrap CIs of COCO AP over images (dentpy.metrics.detection_ci)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from dentpy.metrics.detection import ImageBoxes, evaluate_detections
from dentpy.metrics.detection_ci import detection_cis


def _images(n: int, n_classes: int, seed: int) -> tuple[list[ImageBoxes], list[ImageBoxes]]:
    rng = np.random.default_rng(seed)
    truth, predicted = [], []
    for i in range(n):
        k = int(rng.integers(1, 6))
        xy = rng.uniform(0, 200, size=(k, 2))
        boxes = np.c_[xy, xy + rng.uniform(10, 40, size=(k, 2))]
        labels = rng.integers(0, n_classes, size=k)
        truth.append(ImageBoxes(f"img{i}", boxes, labels))
        jitter = boxes + rng.normal(0, 4, size=boxes.shape)
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1.0)
        keep = rng.random(k) > 0.2
        extra = np.c_[xy[:1] + 50, xy[:1] + 80]
        predicted.append(
            ImageBoxes(
                f"img{i}",
                np.r_[jitter[keep], extra],
                np.r_[labels[keep], rng.integers(0, n_classes, size=1)],
                rng.uniform(0.1, 1.0, size=int(keep.sum()) + 1),
            )
        )
    return truth, predicted


def _renamed(items: list[ImageBoxes], drawn: np.ndarray) -> list[ImageBoxes]:
    return [
        ImageBoxes(f"r{j}", items[i].boxes, items[i].labels, items[i].scores)
        for j, i in enumerate(drawn)
    ]


def test_matching_once_per_image_equals_matching_each_resample() -> None:
    # The shortcut behind the bootstrap: a resample's AP from per-image matches equals
    # evaluate_detections on the resampled images (duplicates renamed).
    import dentpy.metrics.detection_ci as module

    truth, predicted = _images(30, 3, seed=0)
    names = ["a", "b", "c"]
    rng = np.random.default_rng(5)
    for _ in range(5):
        drawn = rng.integers(0, 30, size=30)
        reference = evaluate_detections(_renamed(truth, drawn), _renamed(predicted, drawn), names)
        per_image = [
            module._match_all([truth[i]], [predicted[i]], 3, module._IOU_ARRAY, 100) for i in drawn
        ]
        ours = module.summarize_matched(module._concatenate(per_image, 3), names, 100)
        for key in ("ap", "ap50", "ap75"):
            assert ours[key] == pytest.approx(reference[key], abs=1e-12)


def test_interval_brackets_the_point_estimate_and_is_seeded() -> None:
    truth, predicted = _images(40, 2, seed=1)
    point = evaluate_detections(truth, predicted, ["a", "b"])
    cis = detection_cis(truth, predicted, ["a", "b"], n_boot=300, seed=2)
    assert cis["ap50"].low is not None and cis["ap50"].high is not None
    assert cis["ap50"].low <= point["ap50"] <= cis["ap50"].high
    assert cis["ap50"].high - cis["ap50"].low > 0.01
    assert cis == detection_cis(truth, predicted, ["a", "b"], n_boot=300, seed=2)


def test_one_image_gives_a_point_interval_and_patients_move_together() -> None:
    truth, predicted = _images(1, 1, seed=3)
    point = evaluate_detections(truth, predicted, ["a"])
    cis = detection_cis(truth, predicted, ["a"], n_boot=50)
    assert cis["ap"].low == pytest.approx(point["ap"]) == pytest.approx(cis["ap"].high)
    truth, predicted = _images(6, 1, seed=4)
    one_patient = detection_cis(truth, predicted, ["a"], n_boot=50, patients=["p"] * 6)
    everything = evaluate_detections(truth, predicted, ["a"])
    assert one_patient["ap"].low == pytest.approx(everything["ap"])
    assert detection_cis(truth, predicted, ["a"], n_boot=0) == {}


def test_a_thousand_resamples_of_a_test_set_take_seconds() -> None:
    truth, predicted = _images(150, 16, seed=6)
    start = time.perf_counter()
    detection_cis(truth, predicted, [str(c) for c in range(16)], n_boot=100)
    # Not a speed claim: a guard that evaluation stays usable (1000 resamples ~ 10x this).
    assert time.perf_counter() - start < 30
