"""COCO-style detection metrics for 2D boxes (panoramic / bitewing findings, teeth).

Boxes are pixel-edge ``[x_min, y_min, x_max, y_max]`` floats (x to the right, y down), as in
`dentpy.data.samples2d.Box`; a box's area is ``(x_max - x_min) * (y_max - y_min)`` with no
``+ 1``, which is also what pycocotools computes from its ``[x, y, w, h]`` boxes.

`evaluate_detections` reproduces pycocotools' ``COCOeval`` (iouType "bbox", areaRng "all",
no crowd boxes) number for number: per image and class the detections are taken in
decreasing score, at most `max_detections` of them (COCO's ``maxDets``, which is per image
*and class*), and each is matched greedily to the still unmatched true box of its class with
the highest IoU >= the threshold; AP is the 101-point interpolated precision averaged over
recall 0, 0.01, ..., 1, per class and per IoU threshold 0.50:0.05:0.95.

Every number is defined for every input or is ``None`` with a written reason
(DETECTION_DEFINITIONS), never NaN: a class without any true box has no AP or AR (COCO
stores -1) and is left out of the means; with no true box at all the means are ``None``.
Misuse (bad shapes, labels outside 0..C-1, predictions without scores, unknown image ids)
raises ValueError.

`operating_point` and `choose_score_threshold` score one confidence threshold at one IoU
(default 0.5) with the same greedy matching; choose the threshold on the validation split
and report the test split at that fixed threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

IOU_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))
RECALL_THRESHOLDS: tuple[float, ...] = tuple(float(r) for r in np.linspace(0.0, 1.0, 101))
AR_MAX_DETECTIONS: tuple[int, ...] = (1, 10, 100)

# COCO caps the IoU threshold just below 1 so that a threshold of 1 still matches boxes
# whose IoU is 1 up to rounding.
_MAX_IOU_THRESHOLD = 1 - 1e-10
_IOU_ARRAY = np.linspace(0.5, 0.95, 10)
_RECALL_ARRAY = np.linspace(0.0, 1.0, 101)
_AP50_INDEX = 0
_AP75_INDEX = 5

DETECTION_DEFINITIONS: dict[str, str] = {
    "box": (
        "[x_min, y_min, x_max, y_max] in pixel-edge coordinates (x right, y down); area = "
        "(x_max - x_min) * (y_max - y_min), no +1"
    ),
    "iou": (
        "area of intersection / area of union of two boxes; 0 when they do not overlap "
        "(also for two boxes of zero area)"
    ),
    "matching": (
        "per image and class, detections in decreasing score (ties: input order) each take the "
        "still unmatched true box of the same class with the highest IoU >= the threshold "
        "(ties: the later true box, as pycocotools); a matched detection is a true positive, "
        "an unmatched one a false positive, an unmatched true box a false negative. A "
        "detection of a class with no true box in its image is a false positive"
    ),
    "max_detections": (
        "at most this many detections per image and class, the highest-scoring ones, enter AP "
        "(pycocotools' maxDets, which is per image and class); default 100"
    ),
    "score_ties": (
        "detections with equal scores are ranked by image (order of the truth sequence), then "
        "by their order in the image's arrays (pycocotools' stable sort)"
    ),
    "ap": (
        "COCO AP: mean over IoU thresholds 0.50:0.05:0.95 of the 101-point interpolated AP; "
        "per class, and as summary the mean over the classes that have at least one true box"
    ),
    "ap_at_iou": (
        "101-point interpolated AP at one IoU threshold: mean over recall r in 0, 0.01, ..., 1 "
        "of the highest precision at any recall >= r (0 where recall r is never reached)"
    ),
    "ap50": "AP at IoU 0.5 (PASCAL VOC-style threshold, COCO interpolation)",
    "ap75": "AP at IoU 0.75",
    "ap_per_iou": "per class, the AP at each IoU threshold of iou_thresholds, in that order",
    "ar": (
        "COCO AR@k, k in (1, 10, max_detections): recall (true positives / true boxes) using at "
        "most k detections per image and class, averaged over IoU 0.50:0.05:0.95; per class, "
        "and as summary the mean over the classes that have at least one true box"
    ),
    "classes_without_truth": (
        "a class with no true box in any image has AP, AP50, AP75 and AR null (pycocotools: -1) "
        "and is left out of every mean; its detections are not counted anywhere in AP"
    ),
    "no_truth": "no true box in any image: every AP / AR, per class and mean, is null",
    "n_classes_with_truth": "number of classes that entered the means",
    "pr_curve": (
        "per class at one IoU (default 0.5): recall = 0, 0.01, ..., 1 and the interpolated "
        "precision there (the points whose mean is the AP); null for a class without truth"
    ),
    "score_threshold": "a prediction is kept when its score >= score_threshold",
    "tp": "kept predictions matched to a true box at the IoU threshold",
    "fp": "kept predictions not matched",
    "fn": "true boxes not matched",
    "precision": "TP / (TP + FP); null when nothing is kept (TP + FP = 0)",
    "recall": "TP / (TP + FN); null when there is no true box (TP + FN = 0)",
    "f1": "2TP / (2TP + FP + FN); null when there is neither a true box nor a kept prediction",
    "micro": "tp, fp and fn summed over all classes and images, then precision/recall/F1",
    "chosen_score_threshold": (
        "the prediction score that maximises micro F1 at the IoU threshold (ties: the highest "
        "such score); chosen on the validation split only"
    ),
}


@dataclass(frozen=True, eq=False)
class ImageBoxes:
    """The boxes of one image: truth (`scores` None) or predictions (`scores` set).

    `boxes` is (n, 4) ``[x_min, y_min, x_max, y_max]`` in pixels, `labels` (n,) class indices
    0..C-1 and `scores` (n,) finite confidences. Inputs are converted to float64 / int64
    arrays; an empty input of any shape becomes (0, 4). Equality is identity (arrays).
    """

    image_id: str
    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(
                f"image {self.image_id!r}: boxes must have shape (n, 4), got {boxes.shape}"
            )
        if not np.isfinite(boxes).all():
            raise ValueError(f"image {self.image_id!r}: boxes contain NaN or infinity")
        if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
            raise ValueError(
                f"image {self.image_id!r}: boxes must be [x_min, y_min, x_max, y_max] with "
                "x_max >= x_min and y_max >= y_min"
            )
        labels = np.asarray(self.labels).reshape(-1)
        if labels.size == 0:
            labels = labels.astype(np.int64)
        if labels.dtype.kind == "f" and np.array_equal(labels, np.round(labels)):
            labels = labels.astype(np.int64)
        if labels.dtype.kind not in "iu":
            raise ValueError(
                f"image {self.image_id!r}: labels must be integer class indices, got dtype "
                f"{labels.dtype}"
            )
        if labels.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"image {self.image_id!r}: {boxes.shape[0]} boxes but {labels.shape[0]} labels"
            )
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels.astype(np.int64))
        if self.scores is not None:
            scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
            if scores.shape[0] != boxes.shape[0]:
                raise ValueError(
                    f"image {self.image_id!r}: {boxes.shape[0]} boxes but {scores.shape[0]} scores"
                )
            if not np.isfinite(scores).all():
                raise ValueError(f"image {self.image_id!r}: scores contain NaN or infinity")
            object.__setattr__(self, "scores", scores)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) IoU of every box of `a` (n, 4) with every box of `b` (m, 4), xyxy pixel edges.

    Area is (x_max - x_min) * (y_max - y_min) (no +1); the union is computed as
    ``area_a + area_b - intersection`` like pycocotools. Pairs without overlap, including two
    zero-area boxes, have IoU 0.

    >>> box_iou(np.array([[0.0, 0.0, 2.0, 2.0]]), np.array([[1.0, 0.0, 3.0, 2.0]]))
    array([[0.33333333]])
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.where((width > 0) & (height > 0), width * height, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=inter > 0)
    return out


def _greedy_match(iou: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(T, n_det) bool: detection d (rows of `iou`, already in score order) is matched at
    threshold t. COCO's rule: each detection takes the unmatched true box with the highest
    IoU >= t, ties to the later true box. Pairs that must never match carry IoU -1."""
    n_det, n_true = iou.shape
    matched = np.zeros((thresholds.size, n_det), dtype=bool)
    if n_det == 0 or n_true == 0:
        return matched
    taken = np.zeros((thresholds.size, n_true), dtype=bool)
    lowest = float(thresholds.min())
    # A detection whose best IoU is under every threshold is a false positive everywhere.
    for d in np.flatnonzero(iou.max(axis=1) >= lowest):
        row = iou[d]
        ok = (row[None, :] >= thresholds[:, None]) & ~taken
        hit = ok.any(axis=1)
        if not hit.any():
            continue
        value = np.where(ok, row[None, :], -1.0)
        pick = n_true - 1 - np.argmax(value[:, ::-1], axis=1)
        rows = np.flatnonzero(hit)
        taken[rows, pick[rows]] = True
        matched[rows, d] = True
    return matched


@dataclass(frozen=True)
class _Matched:
    """Every kept detection of a set of images, in image order then within-image score
    order, with its matches at each threshold; and the true-box count per class."""

    labels: np.ndarray  # (N,)
    scores: np.ndarray  # (N,)
    rank: np.ndarray  # (N,) position among its image's detections of the same class
    matched: np.ndarray  # (T, N) bool
    n_true: np.ndarray  # (C,)
    n_images: int


def _check_n_classes(n_classes: int) -> int:
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise ValueError(f"n_classes must be an integer, got {n_classes!r}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    return int(n_classes)


def _class_keys(n_classes: int, class_names: Sequence[str] | None) -> list[str]:
    if class_names is None:
        return [str(c) for c in range(n_classes)]
    names = [str(n) for n in class_names]
    if len(names) != n_classes:
        raise ValueError(f"{len(names)} class names for {n_classes} classes")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {names}")
    return names


def _check_max_detections(max_detections: int) -> int:
    if isinstance(max_detections, bool) or not isinstance(max_detections, (int, np.integer)):
        raise ValueError(f"max_detections must be an integer, got {max_detections!r}")
    if max_detections < 1:
        raise ValueError(f"max_detections must be >= 1, got {max_detections}")
    return int(max_detections)


def _check_iou(iou: float) -> float:
    if not 0.0 < float(iou) <= 1.0:
        # A threshold of 0 would match boxes that do not overlap at all.
        raise ValueError(f"iou must be within (0, 1], got {iou}")
    return min(float(iou), _MAX_IOU_THRESHOLD)


def _check_labels(item: ImageBoxes, n_classes: int, what: str) -> None:
    if item.labels.size and (item.labels.min() < 0 or item.labels.max() >= n_classes):
        raise ValueError(
            f"{what} of image {item.image_id!r}: labels must be class indices 0..{n_classes - 1}, "
            f"got values {sorted(set(item.labels.tolist()))[:10]}"
        )


def _match_all(
    truth: Sequence[ImageBoxes],
    predictions: Sequence[ImageBoxes],
    n_classes: int,
    thresholds: np.ndarray,
    max_detections: int | None,
    score_threshold: float | None = None,
) -> _Matched:
    by_id: dict[str, ImageBoxes] = {}
    for item in truth:
        if not isinstance(item, ImageBoxes):
            raise ValueError(f"truth must hold ImageBoxes, got {type(item).__name__}")
        if item.image_id in by_id:
            raise ValueError(f"image id {item.image_id!r} appears twice in truth")
        _check_labels(item, n_classes, "truth")
        by_id[item.image_id] = item
    predicted: dict[str, ImageBoxes] = {}
    for item in predictions:
        if not isinstance(item, ImageBoxes):
            raise ValueError(f"predictions must hold ImageBoxes, got {type(item).__name__}")
        if item.image_id not in by_id:
            raise ValueError(f"predictions for image {item.image_id!r}, which is not in truth")
        if item.image_id in predicted:
            raise ValueError(f"image id {item.image_id!r} appears twice in predictions")
        if item.scores is None:
            raise ValueError(f"predictions of image {item.image_id!r} have no scores")
        _check_labels(item, n_classes, "predictions")
        predicted[item.image_id] = item

    n_true = np.zeros(n_classes, dtype=np.int64)
    labels: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    ranks: list[np.ndarray] = []
    matches: list[np.ndarray] = []
    for image_id, gt in by_id.items():
        n_true += np.bincount(gt.labels, minlength=n_classes)
        dt = predicted.get(image_id)
        if dt is None or dt.scores is None or dt.scores.size == 0:
            continue
        keep = np.arange(dt.scores.size)
        if score_threshold is not None:
            keep = np.flatnonzero(dt.scores >= score_threshold)
        order = keep[np.argsort(-dt.scores[keep], kind="stable")]
        d_labels = dt.labels[order]
        # Rank of each detection among its image's detections of the same class.
        by_class = np.argsort(d_labels, kind="stable")
        sorted_labels = d_labels[by_class]
        starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
        rank = np.empty(order.size, dtype=np.int64)
        rank[by_class] = np.arange(order.size) - starts
        if max_detections is not None:
            capped = rank < max_detections
            order, d_labels, rank = order[capped], d_labels[capped], rank[capped]
        iou = box_iou(dt.boxes[order], gt.boxes)
        iou[d_labels[:, None] != gt.labels[None, :]] = -1.0
        labels.append(d_labels)
        scores.append(dt.scores[order])
        ranks.append(rank)
        matches.append(_greedy_match(iou, thresholds))
    if labels:
        return _Matched(
            labels=np.concatenate(labels),
            scores=np.concatenate(scores),
            rank=np.concatenate(ranks),
            matched=np.concatenate(matches, axis=1),
            n_true=n_true,
            n_images=len(by_id),
        )
    return _Matched(
        labels=np.zeros(0, dtype=np.int64),
        scores=np.zeros(0),
        rank=np.zeros(0, dtype=np.int64),
        matched=np.zeros((thresholds.size, 0), dtype=bool),
        n_true=n_true,
        n_images=len(by_id),
    )


def _interpolated_precision(matched: np.ndarray, n_true: int) -> np.ndarray:
    """(T, 101) COCO precision at recall 0, 0.01, ..., 1 from (T, n) matches of one class's
    detections in decreasing score; 0 where a recall is never reached. n_true > 0."""
    out = np.zeros((matched.shape[0], _RECALL_ARRAY.size))
    n = matched.shape[1]
    if n == 0:
        return out
    tp = np.cumsum(matched, axis=1, dtype=np.float64)
    fp = np.cumsum(~matched, axis=1, dtype=np.float64)
    recall = tp / n_true
    precision = tp / (tp + fp)
    # Highest precision at any recall >= r: running maximum from the right.
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    for t in range(matched.shape[0]):
        index = np.searchsorted(recall[t], _RECALL_ARRAY, side="left")
        reached = index < n
        out[t, reached] = precision[t, index[reached]]
    return out


def _class_order(found: _Matched, c: int) -> np.ndarray:
    """Indices of class c's detections in decreasing score (ties: image, then position)."""
    select = np.flatnonzero(found.labels == c)
    return select[np.argsort(-found.scores[select], kind="stable")]


def _mean_defined(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return math.fsum(defined) / len(defined) if defined else None


def _ar_ks(max_detections: int) -> list[int]:
    return sorted({min(k, max_detections) for k in (*AR_MAX_DETECTIONS[:-1], max_detections)})


def evaluate_detections(
    truth: Sequence[ImageBoxes],
    predictions: Sequence[ImageBoxes],
    class_names: Sequence[str],
    max_detections: int = 100,
) -> dict[str, Any]:
    """COCO AP / AP50 / AP75 / AR@k, per class (keyed by name) and averaged over the classes
    that have at least one true box; json.dumps-able, ``None`` where undefined (see
    DETECTION_DEFINITIONS). Matches pycocotools' COCOeval (bbox, area "all", maxDets
    (1, 10, max_detections)).

    `truth` lists every evaluated image (an image without boxes has empty arrays); each
    `predictions` entry must name one of those images, and an image absent from
    `predictions` has no detections. Labels index `class_names`.

    >>> t = [ImageBoxes("a", np.array([[0.0, 0.0, 10.0, 10.0]]), np.array([0]))]
    >>> p = [ImageBoxes("a", np.array([[0.0, 0.0, 10.0, 7.2]]), np.array([0]), np.array([0.9]))]
    >>> r = evaluate_detections(t, p, ["caries"])
    >>> r["ap50"], r["ap75"], r["ap"]
    (1.0, 0.0, 0.5)
    """
    names = _class_keys(len(class_names), class_names) if len(class_names) else []
    if not names:
        raise ValueError("class_names must name at least one class")
    max_detections = _check_max_detections(max_detections)
    found = _match_all(truth, predictions, len(names), _IOU_ARRAY, max_detections)
    return summarize_matched(found, names, max_detections)


def summarize_matched(found: _Matched, names: Sequence[str], max_detections: int) -> dict[str, Any]:
    """The `evaluate_detections` summary of already matched detections (matching is per
    image, so a bootstrap over images can match once and summarise many resamples)."""
    ks = _ar_ks(max_detections)

    per_class: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(names):
        order = _class_order(found, c)
        n_true = int(found.n_true[c])
        entry: dict[str, Any] = {"n_true": n_true, "n_predicted": int(order.size)}
        if n_true == 0:
            entry.update(
                ap=None, ap50=None, ap75=None, ap_per_iou=None, ar={str(k): None for k in ks}
            )
        else:
            matched = found.matched[:, order]
            ap_per_iou = _interpolated_precision(matched, n_true).mean(axis=1)
            ar: dict[str, float | None] = {}
            for k in ks:
                within = found.rank[order] < k
                recall = matched[:, within].sum(axis=1) / n_true
                ar[str(k)] = float(recall.mean())
            entry.update(
                ap=float(ap_per_iou.mean()),
                ap50=float(ap_per_iou[_AP50_INDEX]),
                ap75=float(ap_per_iou[_AP75_INDEX]),
                ap_per_iou=[float(v) for v in ap_per_iou],
                ar=ar,
            )
        per_class[name] = entry

    rows = list(per_class.values())
    return {
        "ap": _mean_defined([r["ap"] for r in rows]),
        "ap50": _mean_defined([r["ap50"] for r in rows]),
        "ap75": _mean_defined([r["ap75"] for r in rows]),
        "ar": {str(k): _mean_defined([r["ar"][str(k)] for r in rows]) for k in ks},
        "n_classes_with_truth": int(sum(r["n_true"] > 0 for r in rows)),
        "n_images": found.n_images,
        "n_true": int(found.n_true.sum()),
        "n_predicted": int(found.labels.size),
        "max_detections": max_detections,
        "iou_thresholds": list(IOU_THRESHOLDS),
        "per_class": per_class,
    }


def precision_recall_curve(
    truth: Sequence[ImageBoxes],
    predictions: Sequence[ImageBoxes],
    n_classes: int,
    iou: float = 0.5,
    max_detections: int = 100,
    *,
    class_names: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per class at one IoU (default 0.5), for plotting: ``recall`` = 0, 0.01, ..., 1 and
    the COCO interpolated ``precision`` there (highest precision at any recall >= r, 0 where
    r is never reached), whose mean is ``ap`` (= AP50 of `evaluate_detections` at IoU 0.5).

    Keyed by class name when `class_names` is given, else by the class index as a string.
    A class without true boxes gets ``recall``, ``precision`` and ``ap`` None. ``ap50`` repeats
    ``ap`` when iou is 0.5 and is None otherwise.
    """
    n_classes = _check_n_classes(n_classes)
    keys = _class_keys(n_classes, class_names)
    threshold = _check_iou(iou)
    max_detections = _check_max_detections(max_detections)
    found = _match_all(truth, predictions, n_classes, np.array([threshold]), max_detections)
    curves: dict[str, dict[str, Any]] = {}
    for c, key in enumerate(keys):
        n_true = int(found.n_true[c])
        order = _class_order(found, c)
        if n_true == 0:
            curves[key] = {"recall": None, "precision": None, "ap": None, "ap50": None}
        else:
            precision = _interpolated_precision(found.matched[:, order], n_true)[0]
            ap = float(precision.mean())
            curves[key] = {
                "recall": list(RECALL_THRESHOLDS),
                "precision": [float(v) for v in precision],
                "ap": ap,
                "ap50": ap if float(iou) == 0.5 else None,
            }
        curves[key].update(iou=float(iou), n_true=n_true, n_predicted=int(order.size))
    return curves


def _div(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def _counts(tp: int, fp: int, fn: int) -> dict[str, Any]:
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": _div(tp, tp + fp),
        "recall": _div(tp, tp + fn),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
    }


def operating_point(
    truth: Sequence[ImageBoxes],
    predictions: Sequence[ImageBoxes],
    n_classes: int,
    score_threshold: float,
    iou: float = 0.5,
    *,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """TP / FP / FN, precision, recall and F1 at one confidence threshold and IoU, summed
    over all classes (``micro``) and per class (``per_class``, keyed by class name when
    `class_names` is given, else by the class index as a string).

    Predictions with score >= `score_threshold` are kept, all of them (no max_detections
    cap), and matched as in `evaluate_detections` (same class, greedy by score).
    Undefined ratios are None (DETECTION_DEFINITIONS).
    """
    n_classes = _check_n_classes(n_classes)
    keys = _class_keys(n_classes, class_names)
    threshold = _check_iou(iou)
    score_threshold = float(score_threshold)
    if math.isnan(score_threshold):
        raise ValueError("score_threshold must not be NaN")
    found = _match_all(truth, predictions, n_classes, np.array([threshold]), None, score_threshold)
    tp = np.bincount(found.labels[found.matched[0]], minlength=n_classes)
    kept = np.bincount(found.labels, minlength=n_classes)
    per_class = {
        key: _counts(int(tp[c]), int(kept[c] - tp[c]), int(found.n_true[c] - tp[c]))
        for c, key in enumerate(keys)
    }
    total_tp = int(tp.sum())
    micro = _counts(total_tp, int(kept.sum()) - total_tp, int(found.n_true.sum()) - total_tp)
    return {
        "score_threshold": score_threshold,
        "iou": float(iou),
        "micro": micro,
        "per_class": per_class,
    }


def choose_score_threshold(
    truth: Sequence[ImageBoxes],
    predictions: Sequence[ImageBoxes],
    n_classes: int,
    iou: float = 0.5,
) -> float:
    """The prediction score that, used as `operating_point`'s score_threshold, maximises the
    micro F1 at `iou`; among equal F1 the highest such score (fewest kept predictions).

    Run it on the VALIDATION split only and report the test split at the returned fixed
    threshold: choosing it on the test split makes the test F1 optimistic.

    Every distinct prediction score is tried at once: greedy matching takes detections in
    decreasing score, so the matches of the kept detections are those of the full set.
    Raises ValueError when there is no prediction at all (no score to choose).
    """
    n_classes = _check_n_classes(n_classes)
    threshold = _check_iou(iou)
    found = _match_all(truth, predictions, n_classes, np.array([threshold]), None)
    if found.scores.size == 0:
        raise ValueError("no predictions: there is no score threshold to choose")
    order = np.argsort(-found.scores, kind="stable")
    scores = found.scores[order]
    tp = np.cumsum(found.matched[0, order], dtype=np.int64)
    kept = np.arange(1, scores.size + 1)
    # Only the last detection of each group of equal scores is a possible cut.
    last = np.flatnonzero(np.append(scores[1:] != scores[:-1], True))
    n_true = int(found.n_true.sum())
    f1 = 2 * tp[last] / (kept[last] + n_true)
    return float(scores[last[int(np.argmax(f1))]])
