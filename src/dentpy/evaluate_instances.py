"""Instance evaluation of an FDI run: which teeth (and pulps) were found, under which
number, and how well each was delineated; per-tooth tables and pooled figures.

Instances are matched by overlap regardless of their number (IoU >= 0.5), so a tooth found
under the wrong number counts as found *and* misnumbered. Volume errors compare each
reference tooth with the prediction carrying the same number; a tooth missed under its own
number therefore has a 100% volume error rather than dropping out of the mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dentpy.data.fdi import PULP_OFFSET
from dentpy.tasks.instance import FAMILIES, family_of, tooth_of

if TYPE_CHECKING:
    from dentpy.instances import InstanceFinding
    from dentpy.tasks.segmentation import SegmentationTask

IOU_THRESHOLD = 0.5
DEFINITIONS = {
    "tooth": "a tooth instance is the whole tooth: its own label plus its pulp's",
    "matching": "predicted and reference instances are paired one-to-one by overlap, "
    f"ignoring their numbers; a pair counts when IoU >= {IOU_THRESHOLD}",
    "f1": "instance detection F1 = 2TP / (2TP + FP + FN), pooled over cases",
    "misnumbering_rate": "paired instances whose predicted FDI number differs from the "
    "reference / all paired instances",
    "pq": "panoptic quality = sum of paired IoU / (TP + FP/2 + FN/2), pooled over cases",
    "volume_error_pct": "100 x |predicted volume - reference volume| / reference volume, "
    "the prediction taken under the reference tooth's own number (0 mm³ when that number "
    "is missing: 100%)",
    "findings": "appears_twice: a number predicted in two separate places; wrong_side: a "
    "number on the other side of the midline; sides_swapped: the whole scan looks mirrored; "
    "speck_removed: a predicted instance under 10% of its family's median size, removed",
}


def instance_case(
    case_id: str,
    pred_ids: np.ndarray,
    truth_ids: np.ndarray,
    spacing_mm: Sequence[float],
    task: SegmentationTask,
    findings: Sequence[InstanceFinding],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-tooth rows and per-family counts of one case (label-id maps, same grid)."""
    from dentpy.metrics.instance import match_instances

    rows: list[dict[str, Any]] = []
    counts: dict[str, Any] = {"case_id": case_id, "findings": [f.to_dict() for f in findings]}
    for family in FAMILIES:
        ids = task.instance_label_ids(family)
        if not ids:
            continue
        # A tooth is scored whole: its pulp's voxels (100 + FDI) count as the tooth's.
        pred, truth = (
            (_whole_teeth(pred_ids), _whole_teeth(truth_ids))
            if family == "teeth"
            else (pred_ids, truth_ids)
        )
        result = match_instances(
            pred, truth, spacing_mm, label_ids=ids, iou_threshold=IOU_THRESHOLD
        )
        counts[family] = {
            "tp": result.tp,
            "fp": result.fp,
            "fn": result.fn,
            "misnumbered": result.misnumbered,
            "iou_sum": float(sum(m.iou for m in result.matched)),
        }
        matched = {m.truth_label: m for m in result.matched}
        for label, volume_true in sorted(result.volumes_true_mm3.items()):
            pair = matched.get(label)
            volume_same = result.volumes_pred_mm3.get(label, 0.0)
            rows.append(
                {
                    "case_id": case_id,
                    "family": family,
                    "fdi": tooth_of(label),
                    "label": label,
                    "status": "missed" if pair is None else "found",
                    "predicted_label": "" if pair is None else pair.pred_label,
                    "misnumbered": pair is not None and pair.misnumbered,
                    "iou": 0.0 if pair is None else pair.iou,
                    "dice": 0.0 if pair is None else pair.dice,
                    "hd95_mm": "" if pair is None else pair.hd95_mm,
                    "volume_true_mm3": volume_true,
                    "volume_pred_same_number_mm3": volume_same,
                    "volume_error_pct": 100.0 * abs(volume_same - volume_true) / volume_true,
                }
            )
        for label in result.extra:
            rows.append(
                {
                    "case_id": case_id,
                    "family": family,
                    "fdi": tooth_of(label),
                    "label": label,
                    "status": "extra",
                    "predicted_label": label,
                    "misnumbered": False,
                    "iou": 0.0,
                    "dice": 0.0,
                    "hd95_mm": "",
                    "volume_true_mm3": 0.0,
                    "volume_pred_same_number_mm3": result.volumes_pred_mm3[label],
                    "volume_error_pct": "",
                }
            )
    return rows, counts


def _whole_teeth(labels: np.ndarray) -> np.ndarray:
    """Label map with every pulp id (100 + FDI) replaced by its tooth's id (FDI)."""
    lookup = np.arange(int(labels.max(initial=0)) + 1, dtype=np.int64)
    pulps = [v for v in range(len(lookup)) if family_of(v) == "pulp"]
    lookup[pulps] = [v - PULP_OFFSET for v in pulps]
    return lookup.astype(labels.dtype)[labels]


def summarize_instances(rows: list[dict[str, Any]], cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled detection figures, matched-instance quality and volume errors per family."""
    out: dict[str, Any] = {"iou_threshold": IOU_THRESHOLD, "definitions": DEFINITIONS}
    for family in FAMILIES:
        per_case = [c[family] for c in cases if family in c]
        if not per_case:
            continue
        tp, fp, fn = (sum(c[k] for c in per_case) for k in ("tp", "fp", "fn"))
        misnumbered = sum(c["misnumbered"] for c in per_case)
        iou_sum = sum(c["iou_sum"] for c in per_case)
        reference = [r for r in rows if r["family"] == family and r["status"] != "extra"]
        found = [r for r in reference if r["status"] == "found"]
        errors = [float(r["volume_error_pct"]) for r in reference]
        out[family] = {
            "n_reference": tp + fn,
            "n_predicted": tp + fp,
            "tp": tp,
            "fp_extra": fp,
            "fn_missed": fn,
            "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / (tp + fn) if tp + fn else 1.0,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
            "misnumbered": misnumbered,
            "misnumbering_rate": misnumbered / tp if tp else 0.0,
            "pq": iou_sum / (tp + 0.5 * fp + 0.5 * fn) if tp + fp + fn else 1.0,
            "matched_dice_mean": _mean([float(r["dice"]) for r in found]),
            "matched_hd95_mm_mean": _mean([float(r["hd95_mm"]) for r in found]),
            "volume_error_pct_mean": _mean(errors),
            "volume_error_pct_median": float(np.median(errors)) if errors else None,
        }
    kinds = [f["kind"] for c in cases for f in c["findings"]]
    out["findings"] = {kind: kinds.count(kind) for kind in sorted(set(kinds))}
    out["n_cases_with_findings"] = sum(1 for c in cases if c["findings"])
    return out


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def render_instance_summary(summary: dict[str, Any]) -> Any:
    """A rich table: one row per instance family."""
    from rich.table import Table

    table = Table(title=f"instances (matched at IoU >= {summary['iou_threshold']})")
    columns = (
        "family",
        "F1",
        "found",
        "missed",
        "extra",
        "misnumbered",
        "PQ",
        "Dice (found)",
        "volume error %",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "family" else "right")
    for family in FAMILIES:
        row = summary.get(family)
        if row is None:
            continue
        dice = row["matched_dice_mean"]
        error = row["volume_error_pct_mean"]
        table.add_row(
            family,
            f"{row['f1']:.3f}",
            f"{row['tp']}/{row['n_reference']}",
            str(row["fn_missed"]),
            str(row["fp_extra"]),
            f"{row['misnumbered']} ({row['misnumbering_rate']:.1%})",
            f"{row['pq']:.3f}",
            "-" if dice is None else f"{dice:.3f}",
            "-" if error is None else f"{error:.1f}",
        )
    found = summary["findings"]
    table.caption = (
        "findings: " + ", ".join(f"{k} {v}" for k, v in found.items()) if found else "no findings"
    ) + "; per-tooth rows in per_tooth.csv"
    return table
