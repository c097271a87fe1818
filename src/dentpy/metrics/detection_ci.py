"""Bootstrap confidence intervals of COCO AP / AP50 / AP75 / AR over images.

Boxes are matched to the truth within each image, so a resample of images needs no new
matching: every image is matched once, and each resample concatenates the matched
detections of the images it drew (an image drawn twice enters twice) before the usual
COCO summary. Images of one patient are drawn together when patient ids are given.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dentpy.metrics.classification import Interval
from dentpy.metrics.detection import (
    _IOU_ARRAY,
    ImageBoxes,
    _check_max_detections,
    _match_all,
    _Matched,
    summarize_matched,
)

CI_METRICS: tuple[str, ...] = ("ap", "ap50", "ap75")
DETECTION_CI_DEFINITION = (
    "95% CI: percentile bootstrap over images (whole patients resampled with replacement "
    "when patient ids are known); boxes are matched once per image, AP recomputed per "
    "resample; resamples where a metric is undefined are skipped and counted"
)


def _concatenate(parts: Sequence[_Matched], n_classes: int) -> _Matched:
    with_boxes = [p for p in parts if p.labels.size]
    n_true = np.sum([p.n_true for p in parts], axis=0) if parts else np.zeros(n_classes)
    if not with_boxes:
        return _Matched(
            labels=np.zeros(0, dtype=np.int64),
            scores=np.zeros(0),
            rank=np.zeros(0, dtype=np.int64),
            matched=np.zeros((_IOU_ARRAY.size, 0), dtype=bool),
            n_true=np.asarray(n_true, dtype=np.int64),
            n_images=len(parts),
        )
    return _Matched(
        labels=np.concatenate([p.labels for p in with_boxes]),
        scores=np.concatenate([p.scores for p in with_boxes]),
        rank=np.concatenate([p.rank for p in with_boxes]),
        matched=np.concatenate([p.matched for p in with_boxes], axis=1),
        n_true=np.asarray(n_true, dtype=np.int64),
        n_images=len(parts),
    )


def detection_cis(
    truth: Sequence[ImageBoxes],
    predictions: Sequence[ImageBoxes],
    class_names: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    patients: Sequence[str] | None = None,
    max_detections: int = 100,
) -> dict[str, Interval]:
    """Percentile intervals of the class-averaged AP, AP50 and AP75 (keys of CI_METRICS).

    `patients` gives the patient id of each `truth` image (default: each image its own).
    """
    if n_boot < 1:
        return {}
    if not 0.0 < level < 1.0:
        raise ValueError("level must lie in (0, 1)")
    max_detections = _check_max_detections(max_detections)
    names = list(class_names)
    by_id = {p.image_id: p for p in predictions}
    per_image = [
        _match_all(
            [t],
            [by_id[t.image_id]] if t.image_id in by_id else [],
            len(names),
            _IOU_ARRAY,
            max_detections,
        )
        for t in truth
    ]
    groups = list(patients) if patients is not None else [t.image_id for t in truth]
    if len(groups) != len(per_image):
        raise ValueError(f"{len(groups)} patient ids for {len(per_image)} images")
    _, group_index = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(group_index == g) for g in range(int(group_index.max()) + 1)]
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {name: [] for name in CI_METRICS}
    for _ in range(n_boot):
        drawn = rng.integers(0, len(members), size=len(members))
        parts = [per_image[i] for g in drawn for i in members[g]]
        summary = summarize_matched(_concatenate(parts, len(names)), names, max_detections)
        for name in CI_METRICS:
            if summary[name] is not None:
                values[name].append(float(summary[name]))
    alpha = (1.0 - level) / 2.0
    result: dict[str, Interval] = {}
    for name, valid in values.items():
        if not valid or len(valid) * 2 < n_boot:
            result[name] = Interval(None, None, len(valid), n_boot)
            continue
        low, high = np.percentile(np.asarray(valid), [100 * alpha, 100 * (1 - alpha)])
        result[name] = Interval(float(low), float(high), len(valid), n_boot)
    return result
