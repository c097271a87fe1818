"""`dentpy data check --suspicious RUN`: the training and validation cases whose labels
disagree most with a trained model, ranked for a human to review (possible label noise).

Segmentation (semantic and instance): per case and class, in network space (the run's
resampled grid), Dice between the model's argmax and the label, the mean cross-entropy
-log p(label class) over the labelled voxels, and the share of labelled voxels the model
confidently (p > 0.9) assigns to another class. Rows rank by disagreement = 1 - Dice (ties:
the confident share, then the cross-entropy). Classification: per image, the model's
probability of the given label ("self-confidence", as in cleanlab), lowest first, with the
predicted class and its probability. Detection runs are not supported yet.

The model trained on the training cases, so those are scored in-sample: it may have
memorised a wrong label, which hides it (disagreement is underestimated there). Validation
cases are out-of-sample. For a thorough review, train k runs on k folds (different
`evaluation.split_seed` or a dataset splits.json) and review each run's validation cases.

Written to RUN/suspicious_labels.csv and RUN/suspicious_labels.json (definitions, counts,
the top rows). Cases appear by their pseudonymous case id only, as everywhere in run
folders; the terminal table can add the dataset-relative file (`--show-files`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dentpy.engine.run import RunFolder, require_run_folder, run_task
from dentpy.errors import InputDataError, SpecError

if TYPE_CHECKING:
    from dentpy.spec import Spec

CONFIDENT = 0.9
# A label this many times the predicted volume (or the reverse) is named in the reason.
VOLUME_RATIO = 1.5
SPLITS = ("train", "val")
CSV_NAME = "suspicious_labels.csv"
JSON_NAME = "suspicious_labels.json"

IN_SAMPLE_NOTE = (
    "Training cases are scored by a model that was trained on them (in-sample): it may have "
    "learned a wrong label, so their disagreement is underestimated and a clean-looking "
    "training case is no proof of a clean label. Validation cases are out-of-sample. For a "
    "thorough review, train one run per fold (e.g. different evaluation.split_seed) and "
    "review each run's validation cases (cross-validation style)."
)
SEGMENTATION_DEFINITIONS = {
    "space": "network space: the run's resampled voxel grid (voxel counts are in that grid)",
    "dice": "2|P∩L| / (|P| + |L|) between the model's argmax P and the label L, per class; "
    "1 when both are empty",
    "disagreement": "1 - dice; rows are ranked by it (ties: confidently_other_fraction, "
    "then mean_ce)",
    "mean_ce": "mean over the voxels labelled with the class of -ln p(class); empty when the "
    "label has none",
    "confidently_other_fraction": f"share of the voxels labelled with the class that the "
    f"model assigns to another class with probability > {CONFIDENT}",
}
CLASSIFICATION_DEFINITIONS = {
    "label_probability": "the model's probability of the image's given label "
    "(self-confidence); rows are ranked lowest first",
    "disagreement": "1 - label_probability",
    "predicted_class": "the class of highest probability (argmax, not the binary decision "
    "threshold)",
}


@dataclass(frozen=True)
class SuspiciousReport:
    task: str
    rows: list[dict[str, Any]]  # ranked, most suspicious first
    definitions: dict[str, str]
    files: dict[str, str]  # case id -> dataset-relative file (terminal only, never written)

    @property
    def score_name(self) -> str:
        return "dice" if self.task == "segmentation" else "label_probability"

    @property
    def median_score(self) -> float:
        """Median Dice / self-confidence over all rows: low means the model itself is weak,
        and then every case looks suspicious (the ranking says little)."""
        return float(np.median([row[self.score_name] for row in self.rows]))

    def summary(self, top: int) -> dict[str, Any]:
        return {
            "task": self.task,
            "splits": list(SPLITS),
            "n_rows": len(self.rows),
            f"median_{self.score_name}": round(self.median_score, 4),
            "in_sample_note": IN_SAMPLE_NOTE,
            "definitions": self.definitions,
            "top": self.rows[:top],
        }


def segmentation_rows(
    case_id: str,
    split: str,
    probabilities: np.ndarray,
    label: np.ndarray,
    class_names: Sequence[str],
) -> list[dict[str, Any]]:
    """One row per foreground class: how far the label (class indices, same grid) is from
    the model's probabilities (C, *grid), background at index 0."""
    prediction = probabilities.argmax(0)
    confident = probabilities.max(0) > CONFIDENT
    rows = []
    for c, name in enumerate(class_names, start=1):
        truth, predicted = label == c, prediction == c
        n_label, n_pred = int(truth.sum()), int(predicted.sum())
        overlap = int((truth & predicted).sum())
        dice = 1.0 if n_label + n_pred == 0 else 2 * overlap / (n_label + n_pred)
        if n_label:
            p = np.clip(probabilities[c][truth].astype(np.float64), 1e-7, 1.0)
            mean_ce: float | None = round(float(-np.log(p).mean()), 4)
            other: float | None = round(float((truth & confident & ~predicted).sum()) / n_label, 4)
        else:
            mean_ce = other = None
        rows.append(
            {
                "case_id": case_id,
                "split": split,
                "class": name,
                "disagreement": round(1.0 - dice, 4),
                "dice": round(dice, 4),
                "label_voxels": n_label,
                "predicted_voxels": n_pred,
                "mean_ce": mean_ce,
                "confidently_other_fraction": other,
                "reason": _segmentation_reason(name, dice, n_label, n_pred, other),
            }
        )
    return rows


def _segmentation_reason(
    name: str, dice: float, n_label: int, n_pred: int, other: float | None
) -> str:
    if n_label == 0 and n_pred == 0:
        return f"no {name} in label or prediction"
    if n_pred == 0:
        return f"model finds 0 voxels of {name} where the label has {n_label:,}"
    if n_label == 0:
        return f"label has no {name}; the model finds {n_pred:,} voxels"
    ratio = n_label / n_pred
    if ratio >= VOLUME_RATIO:
        return f"label volume {ratio:.1f}x the predicted"
    if 1 / ratio >= VOLUME_RATIO:
        return f"predicted volume {1 / ratio:.1f}x the label's"
    if other is not None and other >= 0.1:
        return f"{other:.0%} of the labelled voxels are confidently another class"
    if dice < 0.5:
        return f"similar volumes but little overlap (Dice {dice:.2f})"
    return f"Dice {dice:.2f}"


def classification_rows(
    case_ids: Sequence[str],
    splits: Sequence[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
) -> list[dict[str, Any]]:
    """One row per image: the probability of its given label and the model's choice."""
    rows = []
    for case_id, split, y, probs in zip(case_ids, splits, labels, probabilities, strict=True):
        given = float(probs[int(y)])
        chosen = int(np.argmax(probs))
        if chosen == int(y):
            reason = f"model agrees, but gives '{classes[int(y)]}' only {given:.2f}"
        else:
            reason = (
                f"model says '{classes[chosen]}' ({float(probs[chosen]):.2f}); "
                f"the label '{classes[int(y)]}' gets {given:.2f}"
            )
        rows.append(
            {
                "case_id": case_id,
                "split": split,
                "class": classes[int(y)],
                "label_probability": round(given, 4),
                "predicted_class": classes[chosen],
                "predicted_probability": round(float(probs[chosen]), 4),
                "disagreement": round(1.0 - given, 4),
                "reason": reason,
            }
        )
    return rows


def rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Most suspicious first (see module docstring); stable for equal scores."""

    def key(row: dict[str, Any]) -> tuple[float, float, float, str, str]:
        return (
            -float(row["disagreement"]),
            -float(row.get("confidently_other_fraction") or 0.0),
            -float(row.get("mean_ce") or 0.0),
            str(row["case_id"]),
            str(row["class"]),
        )

    ranked = sorted(rows, key=key)
    return [{"rank": i, **row} for i, row in enumerate(ranked, start=1)]


def _case_splits(run: RunFolder) -> list[tuple[str, str]]:
    splits = run.read_json(run.splits)
    return [(case_id, name) for name in SPLITS for case_id in splits.get(name, [])]


def _missing(gone: list[str], run: RunFolder, dataset_name: str) -> InputDataError:
    return InputDataError(
        f"{len(gone)} case(s) of {run.root.name}'s split file are not in the dataset",
        expected=f"every training and validation case of {run.splits.name} in {dataset_name}",
        found=f"missing: {', '.join(gone[:5])}{' …' if len(gone) > 5 else ''}",
        fix="point at the dataset the run was trained on (the PATH argument, or the run "
        "spec's input.data)",
    )


def _with_data(spec: Spec, data: Path | None) -> Spec:
    if data is not None:
        spec.input.data = str(data)
    return spec


def _segmentation(
    run: RunFolder, data: Path | None, on_case: Callable[[], None] | None
) -> SuspiciousReport:
    from dentpy.data.cache import default_cache_dir
    from dentpy.data.dataset import open_dataset
    from dentpy.engine.run import load_trained
    from dentpy.inference import network_probabilities
    from dentpy.train import prepare

    trained = load_trained(run.root)
    spec = _with_data(trained.spec, data)
    dataset = open_dataset(spec.input.data, spec.input.layout, spec.input.assume_spacing_mm)
    records = {r.case_id: r for r in dataset.records}
    wanted = _case_splits(run)
    gone = [case_id for case_id, _ in wanted if case_id not in records]
    if gone:
        raise _missing(gone, run, dataset.root.name)
    prepared = prepare(
        dataset, trained.task, trained.plan, [c for c, _ in wanted], default_cache_dir()
    )
    rows: list[dict[str, Any]] = []
    for case, (case_id, split) in zip(prepared, wanted, strict=True):
        probabilities = network_probabilities(
            trained.model,
            case.image,
            spec,
            trained.task.out_channels,
            trained.device,
            trained.amp_dtype,
        )
        rows += segmentation_rows(
            case_id,
            split,
            probabilities.cpu().numpy(),
            np.asarray(case.label),
            trained.task.class_names,
        )
        if on_case is not None:
            on_case()
    files = {}
    for case_id, _ in wanted:
        record = records[case_id]
        path = record.label_path or (
            record.label_parts[0][1] if record.label_parts else record.image_path
        )
        files[case_id] = record.name_of(path)
    return SuspiciousReport("segmentation", rank(rows), SEGMENTATION_DEFINITIONS, files)


def _classification(
    run: RunFolder, data: Path | None, on_case: Callable[[], None] | None
) -> SuspiciousReport:
    from dentpy.data.prepare2d import prepare_records
    from dentpy.evaluate_classification import load_classifier
    from dentpy.train_classification import (
        labelled_pool,
        open_classification_data,
        predict_probabilities,
    )

    trained = load_classifier(run.root)
    spec = _with_data(trained.spec, data)
    dataset = open_classification_data(spec)
    by_id = {r.case_id: r for r in labelled_pool(dataset)}
    wanted = _case_splits(run)
    gone = [case_id for case_id, _ in wanted if case_id not in by_id]
    if gone:
        raise _missing(gone, run, dataset.root.name)
    records = [by_id[case_id] for case_id, _ in wanted]
    prepared = prepare_records(records, trained.image_size, trained.clip_percentiles)
    probabilities = predict_probabilities(
        trained.model, trained.task, prepared.images, trained.device, trained.amp_dtype
    )
    if on_case is not None:
        for _ in wanted:
            on_case()
    rows = classification_rows(
        [c for c, _ in wanted],
        [s for _, s in wanted],
        prepared.labels(trained.task.classes),
        probabilities,
        trained.task.classes,
    )
    files = {r.case_id: r.name_of(r.image_path) for r in records}
    return SuspiciousReport("classification", rank(rows), CLASSIFICATION_DEFINITIONS, files)


def n_cases(run_dir: Path) -> int:
    """How many cases the report will score (for a progress bar)."""
    return len(_case_splits(require_run_folder(Path(run_dir))))


def suspicious_labels(
    run_dir: Path,
    data: Path | None = None,
    top: int = 20,
    on_case: Callable[[], None] | None = None,
) -> SuspiciousReport:
    """Score the run's training and validation cases, write RUN/suspicious_labels.csv and
    .json, and return the ranked report. `data`: the dataset, if not the spec's."""
    run = require_run_folder(Path(run_dir))
    task = run_task(run.root)
    if task == "segmentation":
        report = _segmentation(run, data, on_case)
    elif task == "classification":
        report = _classification(run, data, on_case)
    else:
        raise SpecError(
            f"the suspicious-label report does not support {task or 'this'} runs yet",
            expected="a segmentation (semantic or instance) or classification run",
            found=f"a {task} run" if task else "a run folder without plan.json",
            fix="for detection, review `dentpy evaluate`'s per-image errors instead",
        )
    if not report.rows:
        raise InputDataError(
            f"{run.root.name} has no training or validation cases to score",
            expected="cases in the train/val lists of splits.json",
            found="empty train and val splits",
        )
    with open(run.root / CSV_NAME, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(report.rows[0]))
        writer.writeheader()
        writer.writerows(report.rows)
    (run.root / JSON_NAME).write_text(json.dumps(report.summary(top), indent=2))
    return report


def render(report: SuspiciousReport, top: int, show_files: bool) -> Any:
    """The top rows as a rich table (file names only with `show_files`)."""
    from rich.markup import escape
    from rich.table import Table

    score = "Dice" if report.task == "segmentation" else "p(label)"
    table = Table(title=f"Most suspicious labels ({report.task}; top {top} of {len(report.rows)})")
    for column in ("rank", "case", "split", "class", score, "reason"):
        table.add_column(column)
    if show_files:
        table.add_column("file")
    for row in report.rows[:top]:
        value = row[report.score_name]
        cells = [
            str(row["rank"]),
            str(row["case_id"]),
            str(row["split"]),
            str(row["class"]),
            f"{value:.3f}",
            str(row["reason"]),
        ]
        if show_files:
            cells.append(report.files.get(str(row["case_id"]), ""))
        table.add_row(*(escape(cell) for cell in cells))
    return table
