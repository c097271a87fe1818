"""Per-case, per-class segmentation metrics and their aggregation over cases.

Every metric is defined for every input, empty masks included (DESIGN.md §4): no NaN,
no dropped case. Which empty-mask rule produced a row's numbers is recorded in the row
(`empty_rule`) and counted by `summarize`, so a good-looking mean can be checked
against how many structures were missed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from dentpy.errors import InputDataError
from dentpy.metrics.surface import check_pair, hd95_mm

EMPTY_RULES = ("none", "both_empty", "pred_empty", "true_empty")

METRIC_DEFINITIONS: dict[str, str] = {
    "dice": "2TP / (2TP + FP + FN); both masks empty -> 1, exactly one empty -> 0",
    "iou": "TP / (TP + FP + FN) (Jaccard); both masks empty -> 1, exactly one empty -> 0",
    "precision": "TP / (TP + FP); if TP + FP = 0: 1 when both masks are empty, else 0",
    "recall": "sensitivity, TP / (TP + FN); if TP + FN = 0: 1 when both masks are empty, else 0",
    "specificity": "TN / (TN + FP); if TN + FP = 0: 1 when both masks are empty, else 0",
    "hd95_mm": (
        "max of the two directed 95th-percentile surface distances in mm (MONAI definition, "
        "face-connected edge voxels, voxel spacing); both empty -> 0, exactly one empty -> "
        "image diagonal in mm"
    ),
    "volume_pred_mm3": "predicted voxel count x voxel volume (product of spacing, mm³)",
    "volume_true_mm3": "reference voxel count x voxel volume (product of spacing, mm³)",
    "abs_volume_error_mm3": "|volume_pred_mm3 - volume_true_mm3|",
    "empty_rule": (
        "which empty-mask rule applied: none | both_empty | pred_empty (missed structure) | "
        "true_empty (structure predicted where the reference has none)"
    ),
}


@dataclass(frozen=True)
class BinaryMetrics:
    """Metrics of one binary prediction against its reference (see METRIC_DEFINITIONS)."""

    dice: float
    iou: float
    precision: float
    recall: float
    specificity: float
    hd95_mm: float
    volume_pred_mm3: float
    volume_true_mm3: float
    abs_volume_error_mm3: float
    empty_rule: str


NUMERIC_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(BinaryMetrics))[:-1]


def _ratio(num: int, den: int, both_empty: bool) -> float:
    """num/den, or the documented value when the denominator is 0."""
    if den == 0:
        return 1.0 if both_empty else 0.0
    return num / den


def _empty_rule(pred_any: bool, true_any: bool) -> str:
    if pred_any and true_any:
        return "none"
    if not pred_any and not true_any:
        return "both_empty"
    return "pred_empty" if not pred_any else "true_empty"


def binary_metrics(
    pred: np.ndarray, true: np.ndarray, spacing_mm: Sequence[float]
) -> BinaryMetrics:
    """All BinaryMetrics of a binary mask pair (2D/3D, same shape) at a given spacing.

    >>> true = np.zeros((10, 10), dtype=bool); true[2:6, 2:6] = True
    >>> m = binary_metrics(np.roll(true, 1, axis=0), true, (0.5, 0.5))
    >>> round(m.dice, 3), m.hd95_mm, m.empty_rule
    (0.75, 0.5, 'none')
    """
    p, t, spacing = check_pair(pred, true, spacing_mm)
    # Counting three intersections is cheaper than four full confusion masks on big volumes.
    tp = int(np.count_nonzero(p & t))
    n_pred = int(np.count_nonzero(p))
    n_true = int(np.count_nonzero(t))
    fp, fn = n_pred - tp, n_true - tp
    tn = p.size - tp - fp - fn
    both_empty = n_pred == 0 and n_true == 0
    voxel_mm3 = math.prod(spacing)
    volume_pred, volume_true = n_pred * voxel_mm3, n_true * voxel_mm3
    return BinaryMetrics(
        dice=_ratio(2 * tp, 2 * tp + fp + fn, both_empty),
        iou=_ratio(tp, tp + fp + fn, both_empty),
        precision=_ratio(tp, tp + fp, both_empty),
        recall=_ratio(tp, tp + fn, both_empty),
        specificity=_ratio(tn, tn + fp, both_empty),
        hd95_mm=hd95_mm(p, t, spacing),
        volume_pred_mm3=volume_pred,
        volume_true_mm3=volume_true,
        abs_volume_error_mm3=abs(volume_pred - volume_true),
        empty_rule=_empty_rule(n_pred > 0, n_true > 0),
    )


def _label_ids(name: str, ids: int | Sequence[int]) -> list[int]:
    values = [ids] if isinstance(ids, (int, np.integer)) else list(ids)
    if not values or not all(isinstance(v, (int, np.integer)) for v in values):
        raise ValueError(f"class {name!r}: label ids must be an int or a non-empty list of ints")
    return [int(v) for v in values]


def case_metrics(
    pred_labels: np.ndarray,
    true_labels: np.ndarray,
    classes: Mapping[str, int | Sequence[int]],
    spacing_mm: Sequence[float],
    case_id: str,
) -> list[dict[str, object]]:
    """One row per class: case_id, class, and every BinaryMetrics field.

    A class is one label id or the union of several (e.g. ``{"ian": [2, 3]}`` scores the
    left and right canals as one structure).
    """
    pred_labels, true_labels = np.asarray(pred_labels), np.asarray(true_labels)
    if pred_labels.shape != true_labels.shape:
        raise InputDataError(
            f"case {case_id}: prediction and reference label maps have different shapes",
            expected=f"the reference shape {true_labels.shape}",
            found=f"prediction shape {pred_labels.shape}",
            fix="resample the prediction onto the reference grid (nearest neighbour) first",
        )
    rows: list[dict[str, object]] = []
    for name, ids in classes.items():
        label_ids = _label_ids(name, ids)
        metrics = binary_metrics(
            np.isin(pred_labels, label_ids), np.isin(true_labels, label_ids), spacing_mm
        )
        rows.append({"case_id": case_id, "class": name, **asdict(metrics)})
    return rows


def _mean_sd(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    sd = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return float(array.mean()), sd


def summarize(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Per class (in order of first appearance): n_cases, `<metric>_mean`, `<metric>_sd`
    (ddof=1; 0 for a single case) and `n_<rule>` for each empty rule.

    Refuses non-finite values and duplicate (case_id, class) rows rather than averaging
    them in silently.
    """
    by_class: dict[str, list[dict[str, object]]] = {}
    seen: set[tuple[str, str]] = set()
    for row in rows:
        key = (str(row["case_id"]), str(row["class"]))
        if key in seen:
            raise ValueError(f"duplicate metrics row for case {key[0]!r}, class {key[1]!r}")
        seen.add(key)
        if row["empty_rule"] not in EMPTY_RULES:
            raise ValueError(f"case {key[0]!r}: unknown empty_rule {row['empty_rule']!r}")
        by_class.setdefault(key[1], []).append(row)

    summary: list[dict[str, object]] = []
    for name, class_rows in by_class.items():
        out: dict[str, object] = {"class": name, "n_cases": len(class_rows)}
        for metric in NUMERIC_FIELDS:
            values = [float(r[metric]) for r in class_rows]  # type: ignore[arg-type]
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"class {name!r}: non-finite {metric} in the per-case rows")
            out[f"{metric}_mean"], out[f"{metric}_sd"] = _mean_sd(values)
        for rule in EMPTY_RULES:
            out[f"n_{rule}"] = sum(1 for r in class_rows if r["empty_rule"] == rule)
        summary.append(out)
    return summary
