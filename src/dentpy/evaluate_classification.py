"""`dentpy evaluate` for classification: clinical metrics with patient-level 95% CIs.

- The decision threshold (binary) is chosen on the **validation** split only, by Youden's J
  or a target sensitivity (`evaluation.threshold`), then applied unchanged to the split
  being evaluated.
- Every metric comes with a cluster-bootstrap 95% interval that resamples **patients**
  (all images of a patient together), since images of one patient are not independent.
- Baselines fitted on the training split only: the majority class, and logistic
  regression on gray-value features. The model has to clear them.
- Pictures: ROC and PR curves (binary), the confusion matrix, the most confident errors.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dentpy.engine.run import RunFolder
from dentpy.errors import InputDataError, SpecError

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Spec
    from dentpy.tasks.classification import ClassificationTask

# Metrics given a bootstrap interval (the headline ones; all others are point estimates).
CI_METRICS = {
    "binary": ("roc_auc", "pr_auc", "sensitivity", "specificity", "balanced_accuracy", "f1"),
    "multiclass": ("balanced_accuracy", "accuracy", "macro_f1", "macro_roc_auc"),
    "ordinal": (
        "quadratic_weighted_kappa",
        "mae_grade",
        "within_one_accuracy",
        "balanced_accuracy",
        "accuracy",
    ),
}
ERROR_GRID_IMAGES = 16


@dataclass(frozen=True)
class TrainedClassifier:
    spec: Spec
    task: ClassificationTask
    model: torch.nn.Module
    device: torch.device
    amp_dtype: torch.dtype | None
    iteration: int
    image_size: tuple[int, int]
    clip_percentiles: tuple[float, float]


def is_classification_run(run_dir: Path) -> bool:
    from dentpy.engine.run import run_task

    return run_task(run_dir) == "classification"


def load_classifier(run_dir: Path, checkpoint: str = "best") -> TrainedClassifier:
    from dentpy.engine.run import load_weights, require_run_folder
    from dentpy.spec import load_spec
    from dentpy.tasks.classification import ClassificationTask

    run = require_run_folder(Path(run_dir))
    spec = load_spec(run.spec)
    plan = run.read_json(run.plan)
    task = ClassificationTask.from_dict(plan["task"])
    weights = load_weights(run, spec, task.build_model(spec), checkpoint)
    size = plan["preprocess"]["image_size"]
    clip = plan["preprocess"]["clip_percentiles"]
    return TrainedClassifier(
        spec=spec,
        task=task,
        model=weights.model,
        device=weights.device,
        amp_dtype=weights.amp_dtype,
        iteration=weights.iteration,
        image_size=(int(size[0]), int(size[1])),
        clip_percentiles=(float(clip[0]), float(clip[1])),
    )


def positive_index(task: ClassificationTask) -> int:
    """The positive class's index of a binary task."""
    index = task.positive_index
    if index is None:
        raise ValueError(f"{task.output} task has no positive class")
    return index


def _metrics(
    task: ClassificationTask, y: np.ndarray, probs: np.ndarray, threshold: float
) -> dict[str, Any]:
    from dentpy.metrics.classification import binary_metrics, multiclass_metrics, ordinal_metrics

    if task.output == "binary":
        positive = positive_index(task)
        return binary_metrics((y == positive).astype(int), probs[:, positive], threshold)
    if task.output == "ordinal":
        return ordinal_metrics(y, probs)
    return multiclass_metrics(y, probs)


def _predicted(task: ClassificationTask, probs: np.ndarray, threshold: float) -> np.ndarray:
    if task.output == "binary":
        positive = positive_index(task)
        return np.where(probs[:, positive] >= threshold, positive, 1 - positive)
    return probs.argmax(axis=1)


def evaluate_classification(
    run_dir: Path, split: str = "test", checkpoint: str = "best"
) -> dict[str, Any]:
    from dentpy.baselines_classification import IntensityLogistic, MajorityBaseline
    from dentpy.data.prepare2d import prepare_records
    from dentpy.metrics.classification import METRIC_DEFINITIONS, bootstrap_cis, choose_threshold
    from dentpy.train_classification import (
        labelled_pool,
        open_classification_data,
        predict_probabilities,
    )

    run = RunFolder(Path(run_dir))
    trained = load_classifier(run.root, checkpoint)
    spec, task = trained.spec, trained.task
    splits = run.read_json(run.splits)
    if split not in splits or not splits[split]:
        raise SpecError(
            f"split '{split}' of {run.root.name} is {'empty' if split in splits else 'unknown'}",
            expected=f"a non-empty split: {', '.join(k for k, v in splits.items() if v)}",
            found=split,
            fix="choose another split (--split val); the split came from the dataset's own "
            "split or from evaluation.test_fraction",
        )
    dataset = open_classification_data(spec)
    by_id = {r.case_id: r for r in labelled_pool(dataset)}
    gone = [c for c in splits["train"] + splits["val"] + splits[split] if c not in by_id]
    if gone:
        raise InputDataError(
            f"{len(gone)} image(s) of {run.root.name}'s split file are no longer in the dataset",
            expected=f"every image listed in {run.splits.name} present in {dataset.root.name}",
            found=f"missing: {', '.join(gone[:5])}{' …' if len(gone) > 5 else ''}",
            fix="restore the dataset the run was trained on",
        )

    def prepared(name: str) -> Any:
        records = [by_id[c] for c in splits[name]]
        return records, prepare_records(records, trained.image_size, trained.clip_percentiles)

    _, train = prepared("train")
    _, val = prepared("val")
    records, target = prepared(split)
    y_train, y_val, y = (d.labels(task.classes) for d in (train, val, target))
    groups = np.asarray(target.patients)

    def probabilities(images: np.ndarray) -> np.ndarray:
        return predict_probabilities(trained.model, task, images, trained.device, trained.amp_dtype)

    predictors: dict[str, Callable[[np.ndarray], np.ndarray]] = {"model": probabilities}
    majority: Any = None
    logistic: Any = None
    fitted: dict[str, str] = {}
    for name in spec.evaluation.baselines:
        if name == "majority":
            majority = MajorityBaseline().fit(y_train, task.n_classes)
            predictors[name] = _majority_predictor(majority)
        elif name == "intensity_logistic":
            logistic = IntensityLogistic().fit(train.images[:, 0], y_train, task.n_classes)
            predictors[name] = _logistic_predictor(logistic)
        fitted[name] = f"{len(y_train)} training images"

    results: dict[str, Any] = {}
    model_probs = np.zeros((0, task.n_classes))
    for name, predict in predictors.items():
        threshold: float = 0.5
        how: dict[str, Any] = {}
        if task.output == "binary" and name == "majority":
            # Constant scores: the baseline's own rule (always the commonest class) applies.
            how = {"method": "argmax: always the commonest training class"}
        elif task.output == "binary":
            positive = positive_index(task)
            val_probs = predict(val.images)
            threshold, how = choose_threshold(
                (y_val == positive).astype(int),
                val_probs[:, positive],
                spec.evaluation.threshold,
                spec.evaluation.target_sensitivity,
            )
        probs = predict(target.images)
        if name == "model":
            model_probs = probs
        point = _metrics(task, y, probs, threshold)
        keys = [k for k in CI_METRICS[task.output] if k in point]
        intervals: dict[str, dict[str, Any]] = {}
        if spec.evaluation.bootstrap > 0:
            found = bootstrap_cis(
                _metric_subset(task, y, probs, threshold, tuple(keys)),
                len(y),
                groups,
                n_boot=spec.evaluation.bootstrap,
                seed=spec.evaluation.split_seed,
            )
            intervals = {
                k: {"low": i.low, "high": i.high, "n_valid": i.n_valid, "n_boot": i.n_boot}
                for k, i in found.items()
            }
        results[name] = {
            "metrics": point,
            "ci95": intervals,
            "threshold": threshold,
            "threshold_choice": how,
        }

    out = run.evaluation / split
    out.mkdir(parents=True, exist_ok=True)
    predicted = _predicted(task, model_probs, results["model"]["threshold"])
    _write_rows(out / "per_case.csv", task, target, y, predicted, model_probs)
    pictures = _pictures(out, task, y, model_probs, predicted, results["model"], records)
    summary = {
        "run": run.root.name,
        "task": "classification",
        "output": task.output,
        "classes": list(task.classes),
        "positive_class": task.positive_class,
        "split": split,
        "checkpoint": checkpoint,
        "checkpoint_iteration": trained.iteration,
        "n_images": len(y),
        "n_patients": len(set(target.patients)),
        "class_counts": {c: int(np.sum(y == i)) for i, c in enumerate(task.classes)},
        "model": results["model"],
        "baselines": {k: {**v, "fitted_on": fitted[k]} for k, v in results.items() if k != "model"},
        "definitions": METRIC_DEFINITIONS,
        "model_selection": f"best checkpoint chosen on the validation split by "
        f"{spec.metrics.select_by}",
        "threshold_policy": "binary decision threshold chosen on the validation split only "
        f"({spec.evaluation.threshold}); never on the evaluated split",
        "confidence_intervals": f"95% cluster bootstrap over patients, "
        f"{spec.evaluation.bootstrap} resamples",
        "pictures": [p.name for p in pictures],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_jsonable))
    return summary


def _majority_predictor(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    return lambda images: np.asarray(model.predict_proba(images.shape[0]))


def _logistic_predictor(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    return lambda images: np.asarray(model.predict_proba(images[:, 0]))


def _metric_subset(
    task: ClassificationTask,
    y: np.ndarray,
    probs: np.ndarray,
    threshold: float,
    keys: tuple[str, ...],
) -> Callable[[np.ndarray], dict[str, Any]]:
    """The headline metrics of one bootstrap resample (given by its indices)."""

    def metrics(index: np.ndarray) -> dict[str, Any]:
        values = _metrics(task, y[index], probs[index], threshold)
        return {k: v for k, v in values.items() if k in keys}

    return metrics


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value).__name__)


def _write_rows(
    path: Path,
    task: ClassificationTask,
    data: Any,
    y: np.ndarray,
    predicted: np.ndarray,
    probs: np.ndarray,
) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["case_id", "patient_id", "true", "predicted", *(f"p_{c}" for c in task.classes)]
        )
        for i, case_id in enumerate(data.case_ids):
            writer.writerow(
                [
                    case_id,
                    data.patients[i],
                    task.classes[y[i]],
                    task.classes[predicted[i]],
                    *(f"{p:.6f}" for p in probs[i]),
                ]
            )


def _pictures(
    out: Path,
    task: ClassificationTask,
    y: np.ndarray,
    probs: np.ndarray,
    predicted: np.ndarray,
    result: dict[str, Any],
    records: list[Any],
) -> list[Path]:
    from dentpy.metrics.classification import confusion_matrix
    from dentpy.report.classification_plots import (
        save_confusion,
        save_error_grid,
        save_pr,
        save_roc,
    )

    written = []
    if task.output == "binary":
        positive = positive_index(task)
        truth, scores = (y == positive).astype(int), probs[:, positive]
        metrics = result["metrics"]
        if metrics.get("roc_auc") is not None:
            written.append(
                save_roc(
                    out / "roc.png", truth, scores, metrics["roc_auc"], task.positive_class or ""
                )
            )
            written.append(
                save_pr(out / "pr.png", truth, scores, metrics["pr_auc"], task.positive_class or "")
            )
    matrix = confusion_matrix(y, predicted, task.n_classes)
    written.append(save_confusion(out / "confusion.png", matrix, list(task.classes)))
    wrong = np.flatnonzero(predicted != y)
    if wrong.size:
        confidence = probs[wrong, predicted[wrong]]
        worst = wrong[np.argsort(-confidence)][:ERROR_GRID_IMAGES]
        images = [records[i].load().image.grayscale for i in worst]
        captions = [
            f"{records[i].case_id}\ntrue {task.classes[y[i]]}, said "
            f"{task.classes[predicted[i]]} ({probs[i, predicted[i]]:.2f})"
            for i in worst
        ]
        written.append(
            save_error_grid(
                out / "errors.png", images, captions, "most confident errors (pseudonymised)"
            )
        )
    return written


def render_classification_summary(summary: dict[str, Any]) -> Any:
    """A rich table: each headline metric with its 95% CI, model vs baselines."""
    from rich.table import Table

    output = summary["output"]
    keys = CI_METRICS[output]
    table = Table(
        title=f"{summary['run']} — {summary['split']} split, {summary['n_images']} images of "
        f"{summary['n_patients']} patients (checkpoint @ iteration "
        f"{summary['checkpoint_iteration']}, selected on val)"
    )
    table.add_column("metric")
    table.add_column("model (95% CI)", justify="right")
    baselines = list(summary["baselines"])
    for name in baselines:
        table.add_column(name, justify="right")
    for key in keys:
        model = summary["model"]
        value = model["metrics"].get(key)
        if value is None and key not in model["metrics"]:
            continue
        ci = model["ci95"].get(key, {})
        cell = _fmt(value)
        if ci.get("low") is not None:
            cell += f" ({_fmt(ci['low'])}-{_fmt(ci['high'])})"
        row = [key, cell] + [_fmt(summary["baselines"][b]["metrics"].get(key)) for b in baselines]
        table.add_row(*row)
    return table


def _fmt(value: Any) -> str:
    return "undefined" if value is None else f"{float(value):.3f}"
