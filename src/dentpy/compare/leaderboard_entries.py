"""Leaderboard lines per task: a run's model and the baselines its evaluation wrote.

Segmentation: per class and macro Dice and HD95 means with 95% CIs (summary.json "ci95"
when present, else dentpy.metrics.case_ci.class_mean_cis on the per-case rows).
Classification: metrics and CIs as summary.json holds them. Detection: COCO AP, AP50,
AR@100 and the micro F1 at the chosen confidence; AP and AP50 with the summary's bootstrap
CIs (model["ci95"], baselines' "ci95") when present.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dentpy.compare.per_case import RunTable, segmentation_table
from dentpy.errors import InputDataError

MACRO = "macro"
CI_N_BOOT = 1000  # resamples for CIs a summary.json lacks (same default as `dentpy evaluate`)
CI_SEED = 0


@dataclass
class Entry:
    """One leaderboard line: a run's model or a baseline."""

    name: str
    kind: str  # model | baseline
    runs: list[str]
    values: dict[str, float | None]
    cis: dict[str, tuple[float, float] | None] = field(default_factory=dict)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# ---------------------------------------------------------------------- segmentation


def _seg_entry(table: RunTable, name: str, kind: str, stored_ci: dict[str, Any] | None) -> Entry:
    from dentpy.metrics.case_ci import class_mean_cis

    values: dict[str, float | None] = {}
    cis: dict[str, tuple[float, float] | None] = {}
    rows: list[dict[str, Any]] = []
    for case in table.case_ids:
        per_metric: dict[str, list[float]] = {"dice": [], "hd95_mm": []}
        for cls in table.classes:
            row: dict[str, Any] = {"case_id": case, "class": cls}
            for metric in ("dice", "hd95_mm"):
                value = table.values.get((metric, cls), {}).get(case, math.nan)
                row[metric] = value
                per_metric[metric].append(value)
            rows.append(row)
        rows.append(
            {"case_id": case, "class": MACRO, **{m: sum(v) / len(v) for m, v in per_metric.items()}}
        )
    for row in rows:
        if not all(math.isfinite(row[m]) for m in ("dice", "hd95_mm")):
            raise InputDataError(
                f"{name}: a Dice or HD95 value is missing for case {row['case_id']}, "
                f"class {row['class']}",
                expected="one finite value per case and class",
                found="an empty or non-finite cell",
                fix="re-run `dentpy evaluate` for this run",
            )
    computed = class_mean_cis(rows, ("dice", "hd95_mm"), n_boot=CI_N_BOOT, seed=CI_SEED)
    for cls in [*table.classes, MACRO]:
        for metric in ("dice", "hd95_mm"):
            key = f"{metric}[{cls}]"
            class_rows = [r[metric] for r in rows if r["class"] == cls]
            values[key] = sum(class_rows) / len(class_rows) if class_rows else None
            interval = ((stored_ci or {}).get(cls, {}) or {}).get(metric) or computed.get(
                cls, {}
            ).get(metric)
            cis[key] = (float(interval["low"]), float(interval["high"])) if interval else None
    return Entry(name, kind, [table.name], values, cis)


def segmentation_entries(tables: list[RunTable], run_dirs: list[Path], split: str) -> list[Entry]:
    entries = []
    for table, run_dir in zip(tables, run_dirs, strict=True):
        entries.append(_seg_entry(table, table.name, "model", table.summary.get("ci95")))
        baseline = table.summary.get("baselines", {}).get("threshold")
        if baseline and (run_dir / "evaluation" / split / "baseline_per_case.csv").is_file():
            base = segmentation_table(run_dir, split, table.task, "baseline_per_case.csv")
            entries.append(_seg_entry(base, "threshold", "baseline", baseline.get("ci95")))
    return entries


# -------------------------------------------------------------------- classification

CLASSIFICATION_COLUMNS: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "balanced_accuracy", "sensitivity", "specificity"),
    "ordinal": ("quadratic_weighted_kappa", "balanced_accuracy", "accuracy"),
    "multiclass": ("balanced_accuracy", "accuracy", "macro_f1"),
}


def _metric_entry(
    name: str, kind: str, run: str, block: dict[str, Any], columns: tuple[str, ...]
) -> Entry:
    metrics, ci95 = block.get("metrics", {}), block.get("ci95", {}) or {}
    values = {c: _number(metrics.get(c)) for c in columns}
    cis: dict[str, tuple[float, float] | None] = {}
    for column in columns:
        interval = ci95.get(column)
        low = _number(interval.get("low")) if interval else None
        high = _number(interval.get("high")) if interval else None
        cis[column] = (low, high) if low is not None and high is not None else None
    return Entry(name, kind, [run], values, cis)


def classification_entries(tables: list[RunTable]) -> list[Entry]:
    columns = CLASSIFICATION_COLUMNS.get(
        tables[0].output or "", CLASSIFICATION_COLUMNS["multiclass"]
    )
    entries = []
    for table in tables:
        entries.append(
            _metric_entry(table.name, "model", table.name, table.summary["model"], columns)
        )
        for name, block in (table.summary.get("baselines") or {}).items():
            entries.append(_metric_entry(name, "baseline", table.name, block, columns))
    return entries


# ------------------------------------------------------------------------- detection

DETECTION_COLUMNS = ("ap", "ap50", "ar", "f1")


def _detection_entry(
    name: str,
    kind: str,
    run: str,
    coco: dict[str, Any],
    at: dict[str, Any] | None,
    ci95: dict[str, Any] | None,
) -> Entry:
    ar = coco.get("ar")
    values = {
        "ap": _number(coco.get("ap")),
        "ap50": _number(coco.get("ap50")),
        "ar": _number(ar.get("100") if isinstance(ar, dict) else ar),
        "f1": _number(((at or {}).get("micro") or {}).get("f1")),
    }
    cis: dict[str, tuple[float, float] | None] = dict.fromkeys(DETECTION_COLUMNS)
    for column, interval in (ci95 or {}).items():
        low, high = _number(interval.get("low")), _number(interval.get("high"))
        if column in cis and low is not None and high is not None:
            cis[column] = (low, high)
    return Entry(name, kind, [run], values, cis)


def detection_entries(tables: list[RunTable]) -> list[Entry]:
    entries = []
    for table in tables:
        summary = table.summary
        entries.append(
            _detection_entry(
                table.name,
                "model",
                table.name,
                summary["model"],
                summary.get("at_threshold"),
                summary["model"].get("ci95"),
            )
        )
        for name, block in (summary.get("baselines") or {}).items():
            entries.append(
                _detection_entry(
                    name,
                    "baseline",
                    table.name,
                    block.get("summary", {}),
                    block.get("at_threshold"),
                    block.get("ci95"),
                )
            )
    return entries
