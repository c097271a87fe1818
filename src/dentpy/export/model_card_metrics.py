"""The card's metrics section, read from `RUN/evaluation/SPLIT/summary.json`: values with
their 95% confidence intervals and definitions, nothing recomputed."""

from __future__ import annotations

from typing import Any

from dentpy.export.loaded_run import CLASSIFICATION, DETECTION

SEGMENTATION_METRICS = (
    "dice", "iou", "precision", "recall", "specificity", "hd95_mm", "abs_volume_error_mm3",
)  # fmt: skip


def metrics_section(task: str, summary: dict[str, Any]) -> dict[str, Any]:
    common = {
        "split": summary.get("split"),
        "checkpoint": summary.get("checkpoint"),
        "checkpoint_iteration": summary.get("checkpoint_iteration"),
        "model_selection": summary.get("model_selection"),
    }
    if task == CLASSIFICATION:
        return {**common, **_classification(summary)}
    if task == DETECTION:
        return {**common, **_detection(summary)}
    return {**common, **_segmentation(summary)}


def _segmentation(summary: dict[str, Any]) -> dict[str, Any]:
    cis = summary.get("ci95", {})
    per_class = {}
    for row in summary.get("model", []):
        name = str(row["class"])
        values = {}
        for metric in SEGMENTATION_METRICS:
            if f"{metric}_mean" not in row:
                continue
            ci = cis.get(name, {}).get(metric)
            values[metric] = {
                "mean": row[f"{metric}_mean"],
                "sd": row.get(f"{metric}_sd"),
                "ci95": None if ci is None else {k: ci[k] for k in ci if k != "n_cases"},
            }
        per_class[name] = {"n_cases": row.get("n_cases"), "metrics": values}
    definitions = summary.get("definitions", {})
    section: dict[str, Any] = {
        "n_cases": summary.get("n_cases"),
        "per_class": per_class,
        "ci_definition": summary.get("ci_definition")
        if cis
        else "no confidence intervals in this evaluation (re-run `dentpy evaluate RUN`)",
        "definitions": {m: definitions[m] for m in SEGMENTATION_METRICS if m in definitions},
        "empty_mask_policy": summary.get("empty_mask_policy"),
    }
    if "instances" in summary:
        instances = summary["instances"]
        section["instances"] = {
            key: instances[key] for key in ("iou_threshold", "teeth", "pulp", "definitions")
            if key in instances
        }  # fmt: skip
    return section


def _classification(summary: dict[str, Any]) -> dict[str, Any]:
    model = summary.get("model", {})
    definitions = summary.get("definitions", {})
    metrics = model.get("metrics", {})
    return {
        "n_images": summary.get("n_images"),
        "n_patients": summary.get("n_patients"),
        "class_counts": summary.get("class_counts"),
        "metrics": metrics,
        "ci95": model.get("ci95", {}),
        "threshold": model.get("threshold"),
        "threshold_policy": summary.get("threshold_policy"),
        "ci_definition": summary.get("confidence_intervals"),
        "definitions": {k: v for k, v in definitions.items() if k in metrics},
    }


def _detection(summary: dict[str, Any]) -> dict[str, Any]:
    model = summary.get("model", {})
    at = summary.get("at_threshold", {})
    definitions = summary.get("definitions", {})
    return {
        "n_images": summary.get("n_images"),
        "n_boxes": summary.get("n_boxes"),
        "metrics": {k: model[k] for k in ("ap", "ap50", "ap75", "ar") if k in model},
        "per_class_ap": {
            name: {k: row.get(k) for k in ("n_true", "ap", "ap50", "ap75")}
            for name, row in model.get("per_class", {}).items()
        },
        "at_threshold": {"score_threshold": at.get("score_threshold"), "micro": at.get("micro")},
        "ci95": model.get("ci95", "not computed by `dentpy evaluate` for detection"),
        "definitions": definitions,
    }
