"""`dentpy evaluate` for detection runs: COCO-style AP on a split, in each image's own pixels,
next to the blob-box baseline, with the validation-chosen confidence threshold.

Written to RUN/evaluation/<split>/: summary.json (AP@[.50:.95], AP50, AP75, per class,
AR@1/10/100, precision/recall/F1 at the threshold, definitions, baseline), per_image.csv,
pr_curves.png (per class, IoU 0.5) and examples.png (images with true and predicted
boxes, worst first). The threshold and the best checkpoint were chosen on validation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dentpy.engine.run import RunFolder
from dentpy.errors import CheckpointError, SpecError

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Spec
    from dentpy.tasks.detection import DetectionTask


@dataclass(frozen=True)
class TrainedDetector:
    spec: Spec
    task: DetectionTask
    model: torch.nn.Module
    device: torch.device
    amp_dtype: torch.dtype | None
    iteration: int
    image_size: tuple[int, int]
    clip_percentiles: tuple[float, float]
    score_threshold: float


def is_detection_run(run_dir: Path) -> bool:
    from dentpy.engine.run import run_task

    return run_task(run_dir) == "detection"


def load_detector(run_dir: Path, checkpoint: str = "best") -> TrainedDetector:
    from dentpy.engine.run import load_weights, require_run_folder
    from dentpy.spec import load_spec
    from dentpy.tasks.detection import DetectionTask
    from dentpy.train_detection import THRESHOLD_FILE

    run = require_run_folder(Path(run_dir))
    spec = load_spec(run.spec)
    plan = run.read_json(run.plan)
    task = DetectionTask.from_dict(plan["task"])
    threshold_file = run.root / THRESHOLD_FILE
    if not threshold_file.is_file():
        raise CheckpointError(
            f"{run.root.name}: training did not finish (no {THRESHOLD_FILE})",
            expected="the confidence threshold chosen on validation at the end of training",
            found=f"no {THRESHOLD_FILE}",
            fix=f"finish the run with `dentpy train {run.spec} --resume`",
        )
    weights = load_weights(run, spec, task.build_model(spec), checkpoint)
    size = plan["preprocess"]["image_size"]
    clip = plan["preprocess"]["clip_percentiles"]
    return TrainedDetector(
        spec=spec,
        task=task,
        model=weights.model,
        device=weights.device,
        amp_dtype=weights.amp_dtype,
        iteration=weights.iteration,
        image_size=(int(size[0]), int(size[1])),
        clip_percentiles=(float(clip[0]), float(clip[1])),
        score_threshold=float(json.loads(threshold_file.read_text())["score_threshold"]),
    )


def evaluate_detection(
    run_dir: Path, split: str = "test", checkpoint: str = "best"
) -> dict[str, Any]:
    from dentpy.baselines_detection import fit_blob_boxes
    from dentpy.data.prepare_boxes import prepare_box_records
    from dentpy.evaluate import write_csv
    from dentpy.metrics.detection import (
        DETECTION_DEFINITIONS,
        evaluate_detections,
        operating_point,
    )
    from dentpy.metrics.detection_ci import DETECTION_CI_DEFINITION, detection_cis
    from dentpy.train_detection import (
        annotated_pool,
        as_image_boxes,
        network_detections,
        open_detection_data,
    )

    run = RunFolder(Path(run_dir))
    trained = load_detector(run.root, checkpoint)
    spec, task = trained.spec, trained.task
    splits = run.read_json(run.splits)
    if split not in splits or not splits[split]:
        raise SpecError(
            f"split '{split}' of {run.root.name} is missing or empty",
            expected=f"a non-empty split among: {', '.join(k for k, v in splits.items() if v)}",
            found=split,
            fix="choose another split (--split val)",
        )
    by_id = {r.case_id: r for r in annotated_pool(open_detection_data(spec))}
    missing = [c for c in splits[split] + splits["train"] if c not in by_id]
    if missing:
        raise SpecError(
            f"{len(missing)} image(s) of {run.root.name}'s split file are no longer in the dataset",
            expected="every image the run was split over",
            found=f"missing: {', '.join(missing[:5])}",
            fix="restore the dataset the run was trained on",
        )
    size, clip = trained.image_size, trained.clip_percentiles
    data = prepare_box_records([by_id[c] for c in splits[split]], task, size, clip)
    found = network_detections(trained.model, data.images, trained.device, trained.amp_dtype, spec)
    # Back to each image's own pixels (the letterbox is inverted exactly).
    predicted_boxes = [
        mapping.boxes_to_image(boxes)
        for mapping, (boxes, _, _) in zip(data.letterboxes, found, strict=True)
    ]
    true_boxes = [m.boxes_to_image(b) for m, b in zip(data.letterboxes, data.boxes, strict=True)]
    truth = as_image_boxes(data.case_ids, true_boxes, data.labels)
    predicted = as_image_boxes(
        data.case_ids, predicted_boxes, [f[2] for f in found], [f[1] for f in found]
    )
    classes = list(task.classes)
    model_result = evaluate_detections(truth, predicted, classes)
    patients = [by_id[c].patient_id for c in data.case_ids]
    n_boot = spec.evaluation.bootstrap
    at_threshold = operating_point(
        truth, predicted, task.n_classes, trained.score_threshold, class_names=classes
    )

    baselines: dict[str, Any] = {}
    if "blob_boxes" in (spec.evaluation.baselines or []):
        train_data = prepare_box_records([by_id[c] for c in splits["train"][:64]], task, size, clip)
        blob = fit_blob_boxes(train_data.images, train_data.boxes, train_data.labels, classes)
        blob_found = [blob.detect(image) for image in data.images]
        blob_predicted = as_image_boxes(
            data.case_ids,
            [
                m.boxes_to_image(b)
                for m, (b, _, _) in zip(data.letterboxes, blob_found, strict=True)
            ],
            [f[2] for f in blob_found],
            [f[1] for f in blob_found],
        )
        baselines["blob_boxes"] = {
            "summary": evaluate_detections(truth, blob_predicted, classes),
            "ci95": _intervals(
                detection_cis(truth, blob_predicted, classes, n_boot, patients=patients)
            ),
            "parameters": blob.to_dict(),
            "fitted_on": f"{len(train_data.case_ids)} training images",
        }

    out = run.evaluation / split
    per_image = _per_image_rows(truth, predicted, task.n_classes, trained.score_threshold)
    write_csv(out / "per_image.csv", per_image)
    pictures = _pictures(out, truth, predicted, data, by_id, classes, trained.score_threshold)
    summary: dict[str, Any] = {
        "run": run.root.name,
        "split": split,
        "task": "detection",
        "checkpoint": checkpoint,
        "checkpoint_iteration": trained.iteration,
        "n_images": len(data.case_ids),
        "n_boxes": int(sum(len(b) for b in data.boxes)),
        "classes": classes,
        "model": {
            **model_result,
            "ci95": _intervals(detection_cis(truth, predicted, classes, n_boot, patients=patients)),
        },
        "ci_definition": DETECTION_CI_DEFINITION,
        "score_threshold": trained.score_threshold,
        "at_threshold": at_threshold,
        "baselines": baselines,
        "definitions": DETECTION_DEFINITIONS,
        "model_selection": "best checkpoint and confidence threshold chosen on the validation "
        "split only",
        "pictures": pictures,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _intervals(cis: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: asdict(interval) for name, interval in cis.items()}


def _per_image_rows(
    truth: list[Any], predicted: list[Any], n_classes: int, threshold: float
) -> list[dict[str, Any]]:
    from dentpy.metrics.detection import operating_point

    rows = []
    for t, p in zip(truth, predicted, strict=True):
        point = operating_point([t], [p], n_classes, threshold)["micro"]
        rows.append(
            {
                "case_id": t.image_id,
                "n_true": len(t.boxes),
                "n_predicted": int(np.sum(p.scores >= threshold)) if p.scores is not None else 0,
                "tp": point["tp"],
                "fp": point["fp"],
                "fn": point["fn"],
                "f1": point["f1"],
            }
        )
    return rows or [{"case_id": "", "n_true": 0}]


def _pictures(
    out: Path,
    truth: list[Any],
    predicted: list[Any],
    data: Any,
    by_id: dict[str, Any],
    classes: list[str],
    threshold: float,
) -> list[str]:
    from dentpy.metrics.detection import precision_recall_curve
    from dentpy.report.detection_plots import save_box_grid, save_pr_curves

    curves = precision_recall_curve(truth, predicted, len(classes), class_names=classes)
    written = [save_pr_curves(curves, classes, out / "pr_curves.png")]
    written.append(save_box_grid(truth, predicted, by_id, classes, threshold, out / "examples.png"))
    return [p.name for p in written]


def render_detection_summary(summary: dict[str, Any]) -> Any:
    """A rich table: one row per class and the mean, model vs the blob baseline."""
    from rich.table import Table

    table = Table(
        title=f"{summary['run']} — {summary['split']} split, {summary['n_images']} images, "
        f"{summary['n_boxes']} boxes (checkpoint @ iteration {summary['checkpoint_iteration']}, "
        "selected on val)"
    )
    for column in ("class", "AP", "AP50", "AP75", "precision", "recall", "F1", "blob AP50"):
        table.add_column(column, justify="left" if column == "class" else "right")
    model = summary["model"]
    point = summary["at_threshold"]
    blob = summary["baselines"].get("blob_boxes", {}).get("summary")

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for name in summary["classes"]:
        per = model["per_class"][name]
        at = point["per_class"][name]
        table.add_row(
            name,
            fmt(per["ap"]),
            fmt(per["ap50"]),
            fmt(per["ap75"]),
            fmt(at["precision"]),
            fmt(at["recall"]),
            fmt(at["f1"]),
            fmt(blob["per_class"][name]["ap50"]) if blob else "-",
        )
    micro = point["micro"]
    table.add_row(
        "[bold]mean / all[/bold]",
        fmt(model["ap"]),
        fmt(model["ap50"]),
        fmt(model["ap75"]),
        fmt(micro["precision"]),
        fmt(micro["recall"]),
        fmt(micro["f1"]),
        fmt(blob["ap50"]) if blob else "-",
    )
    ci = model.get("ci95", {})
    spans = [
        f"{key.upper()} {ci[key]['low']:.3f}-{ci[key]['high']:.3f}"
        for key in ("ap", "ap50")
        if ci.get(key, {}).get("low") is not None
    ]
    table.caption = (
        f"AP: COCO, mean over IoU 0.50:0.95; precision/recall/F1 at IoU 0.5 and confidence "
        f"≥ {summary['score_threshold']:.3f} (chosen on validation)"
        + (f"; 95% CI (bootstrap over patients): {', '.join(spans)}" if spans else "")
    )
    return table
