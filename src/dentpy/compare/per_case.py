"""Load one evaluated run's per-case table for a split, in a task-independent shape.

Every task becomes a `RunTable`: an ordered list of case ids, optional patient ids, and
per-case values keyed by (metric, class), NaN where a value is undefined. Classification
runs also keep labels, predictions and probabilities so that aggregate metrics (ROC-AUC,
balanced accuracy, kappa) can be recomputed on bootstrap resamples.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dentpy.errors import InputDataError

SEGMENTATION_METRICS: tuple[str, ...] = (
    "dice",
    "iou",
    "precision",
    "recall",
    "specificity",
    "hd95_mm",
    "abs_volume_error_mm3",
)
CLASSIFICATION_METRICS: tuple[str, ...] = ("correct", "p_true", "brier")
DETECTION_METRICS: tuple[str, ...] = ("tp", "fp", "fn", "f1", "recall", "precision")
ALL_CLASSES = "all"

PER_CASE_DEFINITIONS: dict[str, str] = {
    "correct": "1 when the run's predicted class equals the reference class, else 0",
    "p_true": "probability the model gave to the reference class",
    "brier": "multi-class Brier score, sum over classes k of (p_k - [k = true])^2, 0..2",
    "tp": "true positive boxes in the image (at the run's chosen confidence, IoU 0.5)",
    "fp": "false positive boxes in the image",
    "fn": "missed reference boxes in the image",
    "f1": "per image F1 = 2TP / (2TP + FP + FN) as written by `dentpy evaluate`",
    "recall": "segmentation: TP / (TP + FN) voxels; detection: TP / (TP + FN) boxes per "
    "image, undefined (pair left out) when the image has no reference box",
    "precision": "segmentation: TP / (TP + FP) voxels; detection: TP / (TP + FP) boxes "
    "per image, undefined (pair left out) when the run predicts no box in the image",
}


@dataclass
class RunTable:
    """The per-case values of one run on one split."""

    name: str
    task: str  # segmentation | instance | classification | detection
    split: str
    case_ids: list[str]
    classes: list[str]
    metrics: tuple[str, ...]
    values: dict[tuple[str, str], dict[str, float]]  # (metric, class) -> case -> value
    patients: dict[str, str] = field(default_factory=dict)
    output: str | None = None  # classification: binary | multiclass | ordinal
    positive_class: str | None = None
    labels: dict[str, int] = field(default_factory=dict)  # case -> true class index
    predicted: dict[str, int] = field(default_factory=dict)
    probabilities: dict[str, list[float]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def task_label(self) -> str:
        return f"{self.task} ({self.output})" if self.output else self.task


def _float(text: str | None) -> float:
    if text is None or text.strip() == "" or text.strip().lower() in ("none", "nan", "null"):
        return math.nan
    return float(text)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def run_task_label(run_dir: Path) -> tuple[str, dict[str, Any]]:
    """("segmentation" | "instance" | "classification" | "detection", plan task dict)."""
    plan_path = run_dir / "plan.json"
    if not plan_path.is_file():
        raise InputDataError(
            f"{run_dir.name} is not a dentpy run folder",
            expected=f"{plan_path} written by `dentpy train`",
            found="no plan.json",
            fix="pass run folders made by `dentpy train` (e.g. runs/NAME)",
        )
    task = json.loads(plan_path.read_text()).get("task", {})
    name = str(task.get("task", "segmentation"))
    if name == "segmentation" and task.get("instances"):
        return "instance", task
    return name, task


def evaluation_folder(run_dir: Path, split: str, table: str) -> Path:
    """RUN/evaluation/SPLIT, or an error saying how to make it when `table` is missing."""
    folder = run_dir / "evaluation" / split
    for name in (table, "summary.json"):
        if not (folder / name).is_file():
            raise InputDataError(
                f"run {run_dir.name} is not evaluated on the {split} split",
                expected=f"evaluation/{split}/{name} in the run folder",
                found=f"no {name}",
                fix=f"dentpy evaluate {run_dir} --split {split}",
            )
    return folder


def load_run_table(run_dir: Path, split: str = "test") -> RunTable:
    """The per-case table of an evaluated run (see module docstring)."""
    run_dir = Path(run_dir)
    task, plan_task = run_task_label(run_dir)
    if task in ("segmentation", "instance"):
        return _segmentation(run_dir, split, task, "per_case.csv")
    if task == "classification":
        return _classification(run_dir, split, plan_task)
    if task == "detection":
        return _detection(run_dir, split)
    raise InputDataError(
        f"run {run_dir.name} has a task dentpy cannot compare",
        expected="segmentation, classification or detection",
        found=task,
        fix="compare runs of a supported task",
    )


def segmentation_table(
    run_dir: Path, split: str, task: str, table: str, name: str | None = None
) -> RunTable:
    """A segmentation per-case CSV (per_case.csv or baseline_per_case.csv) as a RunTable."""
    return _segmentation(run_dir, split, task, table, name)


def _segmentation(
    run_dir: Path, split: str, task: str, table: str, name: str | None = None
) -> RunTable:
    folder = evaluation_folder(run_dir, split, table)
    rows = _read_csv(folder / table)
    cases: list[str] = []
    classes: list[str] = []
    values: dict[tuple[str, str], dict[str, float]] = {}
    for row in rows:
        case, cls = row["case_id"], row["class"]
        if case not in cases:
            cases.append(case)
        if cls not in classes:
            classes.append(cls)
        for metric in SEGMENTATION_METRICS:
            if metric in row:
                values.setdefault((metric, cls), {})[case] = _float(row[metric])
    metrics = tuple(m for m in SEGMENTATION_METRICS if rows and m in rows[0])
    summary = json.loads((folder / "summary.json").read_text())
    return RunTable(
        name or run_dir.name, task, split, cases, classes, metrics, values, summary=summary
    )


def _classification(run_dir: Path, split: str, plan_task: dict[str, Any]) -> RunTable:
    folder = evaluation_folder(run_dir, split, "per_case.csv")
    summary = json.loads((folder / "summary.json").read_text())
    classes = [str(c) for c in summary.get("classes") or plan_task.get("classes") or []]
    rows = _read_csv(folder / "per_case.csv")
    index = {c: i for i, c in enumerate(classes)}
    table = RunTable(
        run_dir.name,
        "classification",
        split,
        [],
        classes,
        CLASSIFICATION_METRICS,
        {},
        output=str(summary.get("output") or plan_task.get("output") or "multiclass"),
        positive_class=summary.get("positive_class") or plan_task.get("positive_class"),
        summary=summary,
    )
    for row in rows:
        case = row["case_id"]
        true, predicted = row["true"], row["predicted"]
        if true not in index or predicted not in index:
            raise InputDataError(
                f"run {run_dir.name}: per_case.csv names a class the summary does not list",
                expected=f"one of {classes}",
                found=f"true={true!r}, predicted={predicted!r} for {case}",
                fix=f"re-run `dentpy evaluate {run_dir} --split {split}`",
            )
        probs = np.asarray([_float(row.get(f"p_{c}")) for c in classes])
        onehot = np.zeros(len(classes))
        onehot[index[true]] = 1.0
        table.case_ids.append(case)
        table.patients[case] = row.get("patient_id") or case
        table.labels[case] = index[true]
        table.predicted[case] = index[predicted]
        table.probabilities[case] = probs.tolist()
        measured = {
            "correct": float(true == predicted),
            "p_true": float(probs[index[true]]),
            "brier": float(np.sum((probs - onehot) ** 2)),
        }
        for metric, value in measured.items():
            table.values.setdefault((metric, ALL_CLASSES), {})[case] = value
    return table


def _detection(run_dir: Path, split: str) -> RunTable:
    folder = evaluation_folder(run_dir, split, "per_image.csv")
    summary = json.loads((folder / "summary.json").read_text())
    rows = _read_csv(folder / "per_image.csv")
    table = RunTable(
        run_dir.name,
        "detection",
        split,
        [],
        [str(c) for c in summary.get("classes", [])],
        DETECTION_METRICS,
        {},
        summary=summary,
    )
    for row in rows:
        case = row["case_id"]
        tp, fp, fn = _float(row["tp"]), _float(row["fp"]), _float(row["fn"])
        measured = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "f1": _float(row.get("f1")),
            "recall": tp / (tp + fn) if tp + fn > 0 else math.nan,
            "precision": tp / (tp + fp) if tp + fp > 0 else math.nan,
        }
        table.case_ids.append(case)
        for metric, value in measured.items():
            table.values.setdefault((metric, ALL_CLASSES), {})[case] = value
    return table
