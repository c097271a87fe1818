"""What a run folder holds that a tracker shows: params, curves, results, files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from dentpy.tracking.privacy import PATH_FIELDS

# Keys whose values are prose or raw lists, not results.
_NOT_RESULTS = {"definitions", "iou_thresholds", "ap_per_iou", "fitted_on", "windows", "note"}


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def params_of(spec: dict[str, Any], plan: dict[str, Any]) -> dict[str, str]:
    """The resolved spec as dotted keys and text values, without any path field and
    without `tracking` (where a run is logged is not what it is); plus the data and spec
    identity hashes from plan.json, which name the dataset without revealing it."""
    body = {k: v for k, v in spec.items() if k != "tracking"}
    params = {
        key: json.dumps(value) if isinstance(value, list | dict) else str(value)
        for key, value in _flatten(body).items()
        if key not in PATH_FIELDS
    }
    identity = plan.get("identity", {})
    for part in ("data", "spec"):
        if isinstance(identity, dict) and identity.get(part):
            params[f"identity.{part}"] = str(identity[part])
    return params


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    # NaN is kept: an undefined result logged as such, never silently dropped.
    return None if math.isinf(number) else number


def curve_rows(log: Path, after: int) -> list[tuple[int, dict[str, float]]]:
    """training_log.csv rows with iteration > `after`: (iteration, {column: value})."""
    if not log.is_file():
        return []
    rows: list[tuple[int, dict[str, float]]] = []
    with log.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            iteration = _number(row.get("iteration"))
            if iteration is None or math.isnan(iteration) or int(iteration) <= after:
                continue
            values = {
                key: number
                for key, raw in row.items()
                if key and key != "iteration" and raw not in (None, "")
                for number in [_number(raw)]
                if number is not None
            }
            rows.append((int(iteration), values))
    return sorted(rows, key=lambda item: item[0])


def numbers(data: Any, prefix: str) -> dict[str, float]:
    """Every numeric leaf of nested dicts as prefix/key/... (lists and prose skipped)."""
    found: dict[str, float] = {}
    if not isinstance(data, dict):
        return found
    for key, value in data.items():
        if key in _NOT_RESULTS:
            continue
        # classification keeps its scores under "metrics": test/roc_auc reads better.
        name = prefix if key == "metrics" else f"{prefix}/{key}"
        if isinstance(value, dict):
            found.update(numbers(value, name))
        else:
            number = _number(value) if not isinstance(value, str) else None
            if number is not None:
                found[name] = number
    return found


def _class_rows(rows: list[Any], prefix: str) -> dict[str, float]:
    """Segmentation rows {class, dice_mean, dice_sd, ...} as prefix/dice/CLASS."""
    found: dict[str, float] = {}
    for row in rows:
        if not isinstance(row, dict) or "class" not in row:
            continue
        name = str(row["class"])
        for key, value in row.items():
            number = None if isinstance(value, str) else _number(value)
            if key == "class" or number is None:
                continue
            metric = key.removesuffix("_mean")
            found[f"{prefix}/{metric}/{name}"] = number
    return found


def _results(model: Any, prefix: str) -> dict[str, float]:
    if isinstance(model, list):
        return _class_rows(model, prefix)
    return numbers(model, prefix)


def evaluation_metrics(summary: dict[str, Any], split: str) -> dict[str, float]:
    """An evaluation summary.json as final metrics: split/metric[/class] for the model,
    split/baseline/NAME/... for each baseline (segmentation: per-class means and SDs;
    classification: model.metrics; detection: AP, AR and per-class AP)."""
    found = _results(summary.get("model"), split)
    for name, baseline in (summary.get("baselines") or {}).items():
        body = baseline.get("summary", baseline) if isinstance(baseline, dict) else baseline
        found.update(_results(body, f"{split}/baseline/{name}"))
    for section in ("at_threshold", "instances"):
        found.update(numbers(summary.get(section), f"{split}/{section}"))
    for key in ("n_cases", "n_images", "n_patients", "n_boxes", "checkpoint_iteration"):
        number = _number(summary.get(key))
        if number is not None:
            found[f"{split}/{key}"] = number
    return found


def train_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """train_summary.json's top-level numbers (best validation score, seconds, ...)."""
    return {
        f"train/{key}": number
        for key, value in summary.items()
        if not isinstance(value, dict | list | str)
        for number in [_number(value)]
        if number is not None
    }


def best_model(run_dir: Path) -> tuple[Path, Path] | None:
    """The best checkpoint's manifest and weights file (checkpoints/best.json says which;
    last.json when no validation ever chose one)."""
    for manifest_name in ("best.json", "last.json"):
        manifest = run_dir / "checkpoints" / manifest_name
        weights = read_json(manifest).get("weights")
        if isinstance(weights, str) and weights:
            path = run_dir / "checkpoints" / Path(weights).name
            if path.is_file():
                return manifest, path
    return None


def evaluation_splits(run_dir: Path) -> list[Path]:
    folder = run_dir / "evaluation"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if (p / "summary.json").is_file())
