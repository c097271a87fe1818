"""`dentpy evaluate`: per-case, per-class metrics of a trained run on a split, in each
scan's own geometry and spacing, next to the threshold baseline.

Written to RUN/evaluation/<split>/: per_case.csv (model), baseline_per_case.csv,
summary.json (means ± SD, empty-rule counts, definitions, baseline). Model selection
never used this split when it is `test` (train chose the best checkpoint on `val`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from dentpy.engine.run import RunFolder
from dentpy.errors import InputDataError, SpecError

EMPTY_MASK_POLICY = (
    "Empty masks: both empty -> Dice 1, IoU 1, HD95 0 mm; exactly one empty -> Dice 0, "
    "IoU 0, HD95 = image diagonal in mm. No case is ever dropped and no value is NaN."
)
HD95_DEFINITION = (
    "HD95 = max of the two directed 95th-percentile surface distances, in mm, using each "
    "scan's voxel spacing (MONAI definition)."
)
BASELINE_CASES = 8


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def evaluate_run(
    run_dir: str | Path, split: str = "test", checkpoint: str = "best"
) -> dict[str, Any]:
    """Evaluate a run on one split; returns the summary (also written to disk)."""
    from dentpy.baselines import fit_threshold_windows
    from dentpy.data.dataset import open_dataset
    from dentpy.engine.run import load_trained
    from dentpy.evaluate_instances import instance_case, summarize_instances
    from dentpy.inference import postprocess, predict_with_run
    from dentpy.instances import instance_postprocess
    from dentpy.metrics.case_ci import CI_DEFINITION, class_mean_cis
    from dentpy.metrics.segmentation import (
        METRIC_DEFINITIONS,
        binary_metrics,
        case_metrics,
        summarize,
    )
    from dentpy.preprocess import map_classes, normalize_intensity

    run = RunFolder(Path(run_dir))
    trained = load_trained(run.root, checkpoint=checkpoint)
    splits = run.read_json(run.splits)
    if split not in splits:
        raise SpecError(
            f"unknown split '{split}'",
            expected=f"one of: {', '.join(splits)}",
            found=split,
        )
    if not splits[split]:
        raise SpecError(
            f"split '{split}' of {run.root.name} is empty",
            expected="at least one case",
            found="0 cases",
            fix="choose another split (--split val); the split came from the dataset's own "
            "splits.json or from evaluation.test_fraction = 0",
        )
    spec = trained.spec
    task = trained.task
    dataset = open_dataset(spec.input.data, spec.input.layout, spec.input.assume_spacing_mm)
    records = {r.case_id: r for r in dataset.records}
    gone = [c for c in splits["train"] + splits[split] if c not in records]
    if gone:
        raise InputDataError(
            f"{len(gone)} case(s) of {run.root.name}'s split file are no longer in the dataset",
            expected=f"every case listed in {run.splits.name} present in {dataset.root.name}",
            found=f"missing: {', '.join(gone[:5])}{' …' if len(gone) > 5 else ''}",
            fix="restore the dataset the run was trained on; evaluating on a different set "
            "of cases would not be comparable",
        )
    classes = {name: i for i, name in enumerate(task.class_names, start=1)}
    class_ids = [list(ids) for ids in task.class_label_ids]

    # Baseline windows are fitted on training cases only. An intensity window cannot tell
    # one tooth's number from another's, so instance runs have no threshold baseline.
    train_images, train_masks = [], []
    for case_id in [] if task.instances else splits["train"][:BASELINE_CASES]:
        case = dataset.load(records[case_id])
        mapped = map_classes(np.asarray(case.label.array), class_ids)  # type: ignore[union-attr]
        train_images.append(np.asarray(case.image.array))
        train_masks.append([mapped == c for c in classes.values()])
    windows = (
        fit_threshold_windows(
            train_images, train_masks, list(classes), spec.preprocess.clip_percentiles
        )
        if train_images
        else []
    )

    model_rows: list[dict[str, Any]] = []
    baseline_rows: list[dict[str, Any]] = []
    tooth_rows: list[dict[str, Any]] = []
    instance_cases: list[dict[str, Any]] = []
    for case_id in splits[split]:
        case = dataset.load(records[case_id])
        truth = map_classes(np.asarray(case.label.array), class_ids)  # type: ignore[union-attr]
        prediction = predict_with_run(trained, case.image)
        prediction = postprocess(prediction, list(task.class_names), spec.postprocess.keep_largest)
        spacing = case.image.spacing_mm
        if task.instances:
            # Instance runs are scored in the dataset's own label ids (FDI numbers).
            pred_ids, findings = instance_postprocess(prediction, task)
            truth_ids = np.asarray(case.label.array)  # type: ignore[union-attr]
            by_id = {n: ids for n, ids in zip(task.class_names, class_ids, strict=True)}
            model_rows += case_metrics(pred_ids.array, truth_ids, by_id, spacing, case_id)
            rows, counts = instance_case(
                case_id, pred_ids.array, truth_ids, spacing, task, findings
            )
            tooth_rows += rows
            instance_cases.append(counts)
            continue
        model_rows += case_metrics(prediction.array, truth, classes, spacing, case_id)
        normalized = normalize_intensity(
            np.asarray(case.image.array), spec.preprocess.clip_percentiles
        )
        for window, (name, c) in zip(windows, classes.items(), strict=True):
            metrics = binary_metrics(window.apply(normalized), truth == c, spacing)
            baseline_rows.append({"case_id": case_id, "class": name, **asdict(metrics)})

    out = run.evaluation / split
    n_boot = spec.evaluation.bootstrap
    write_csv(out / "per_case.csv", model_rows)
    if baseline_rows:
        write_csv(out / "baseline_per_case.csv", baseline_rows)
    summary: dict[str, Any] = {
        "run": run.root.name,
        "split": split,
        "checkpoint": checkpoint,
        "checkpoint_iteration": trained.iteration,
        "n_cases": len(splits[split]),
        "model": summarize(model_rows),
        "ci95": class_mean_cis(model_rows, n_boot=n_boot),
        "ci_definition": CI_DEFINITION,
        "baselines": {
            "threshold": {
                "summary": summarize(baseline_rows),
                "ci95": class_mean_cis(baseline_rows, n_boot=n_boot),
                "windows": [asdict(w) for w in windows],
                "fitted_on": f"{len(train_images)} training cases",
            }
        }
        if baseline_rows
        else {},
        "definitions": METRIC_DEFINITIONS,
        "empty_mask_policy": EMPTY_MASK_POLICY,
        "hd95_definition": HD95_DEFINITION,
        "model_selection": "best checkpoint chosen on the validation split only",
        "postprocess": {
            "keep_largest": list(spec.postprocess.keep_largest),
            "mirror_tta": spec.postprocess.mirror_tta,
        },
    }
    if task.instances:
        write_csv(out / "per_tooth.csv", tooth_rows)
        summary["instances"] = summarize_instances(tooth_rows, instance_cases)
        summary["instances"]["classes"] = [
            name
            for name, ids in zip(task.class_names, task.class_label_ids, strict=True)
            if ids[0] in task.instance_label_ids("teeth") + task.instance_label_ids("pulp")
        ]
        write_csv(out / "instance_findings.csv", _finding_rows(instance_cases))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_csv(out / "summary.csv", summarize(model_rows))
    return summary


def _finding_rows(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [{"case_id": c["case_id"], **f} for c in cases for f in c["findings"]]
    return rows or [{"case_id": "", "kind": "", "label": "", "detail": "no findings"}]


def render_summary(summary: dict[str, Any]) -> Any:
    """A rich table: one row per class, model vs threshold baseline."""
    from rich.table import Table

    table = Table(
        title=f"{summary['run']} — {summary['split']} split, {summary['n_cases']} cases "
        f"(checkpoint @ iteration {summary['checkpoint_iteration']}, selected on val)"
    )
    columns = (
        "class",
        "Dice",
        "Dice 95% CI",
        "HD95 mm",
        "precision",
        "recall",
        "|ΔV| mm³",
        "missed",
        "thr. Dice",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "class" else "right", overflow="fold")
    threshold = summary["baselines"].get("threshold", {"summary": []})
    baseline = {r["class"]: r for r in threshold["summary"]}
    cis = summary.get("ci95", {})
    for row in summary["model"]:

        def ms(key: str, row: dict[str, Any] = row, digits: int = 2) -> str:
            return f"{row[key + '_mean']:.{digits}f}±{row[key + '_sd']:.{digits}f}"

        dice_ci = cis.get(row["class"], {}).get("dice")
        table.add_row(
            str(row["class"]),
            ms("dice"),
            f"{dice_ci['low']:.2f}-{dice_ci['high']:.2f}" if dice_ci else "-",
            ms("hd95_mm", digits=1),
            ms("precision"),
            ms("recall"),
            ms("abs_volume_error_mm3", digits=0),
            f"{row['n_pred_empty']}/{row['n_cases']}",
            f"{baseline[row['class']]['dice_mean']:.2f}" if row["class"] in baseline else "-",
        )
    table.caption = (
        "mean±SD over cases; 95% CI: bootstrap over patients; IoU, specificity and volumes "
        "in per_case.csv"
    )
    return table
