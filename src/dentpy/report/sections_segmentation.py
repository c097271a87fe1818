"""Report sections of 3D segmentation runs (semantic and FDI instance): metric tables with
95% CIs next to the threshold baseline, per-case distributions, best/median/worst cases
drawn from a fresh prediction, and volumes."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dentpy.errors import DentpyError
from dentpy.report import html_page as h
from dentpy.report.run_inputs import RunInputs, as_float, fmt, unreadable_note

# (column in per_case.csv / summary, heading, digits)
METRICS = (
    ("dice", "Dice", 3),
    ("iou", "IoU", 3),
    ("hd95_mm", "HD95 (mm)", 1),
    ("precision", "precision", 3),
    ("recall", "recall", 3),
    ("specificity", "specificity", 4),
    ("abs_volume_error_mm3", "|ΔV| (mm³)", 0),
)
TABLE_ROWS = 120


def _cis(inputs: RunInputs, stored: Any, rows: list[dict[str, str]]) -> tuple[dict[str, Any], str]:
    """Per-class CIs: the evaluation's own when it stored them, else computed here from the
    per-case rows with the same patient-level bootstrap."""
    if stored:
        return stored, "stored by `dentpy evaluate`"
    if not rows:
        return {}, "none"
    from dentpy.metrics.case_ci import class_mean_cis

    numeric = []
    for row in rows:
        converted: dict[str, Any] = {"case_id": row["case_id"], "class": row["class"]}
        for key, _, _ in METRICS:
            if key in row:
                converted[key] = as_float(row[key])
        numeric.append(converted)
    n_boot = int(inputs.spec.get("evaluation", {}).get("bootstrap") or 1000)
    try:
        return class_mean_cis(numeric, n_boot=n_boot), "computed by the report from per_case.csv"
    except ValueError:
        return {}, "not computable (non-finite per-case values)"


def _cell(row: dict[str, Any], ci: dict[str, Any], key: str, digits: int) -> tuple[str, ...]:
    mean, sd = row.get(f"{key}_mean"), row.get(f"{key}_sd")
    text = f"{fmt(mean, digits)} ± {fmt(sd, digits)}"
    interval = ci.get(key)
    if interval and interval.get("low") is not None:
        return (text, f"[{fmt(interval['low'], digits)}, {fmt(interval['high'], digits)}]")
    return (text,)


def _metric_table(
    inputs: RunInputs, model_rows: Sequence[dict[str, Any]], classes: set[str] | None
) -> tuple[str, str]:
    summary = inputs.summary
    model_ci, model_source = _cis(inputs, summary.get("ci95"), inputs.csv_rows("per_case.csv"))
    threshold = summary.get("baselines", {}).get("threshold", {})
    baseline = {r["class"]: r for r in threshold.get("summary", [])}
    baseline_ci, _ = _cis(inputs, threshold.get("ci95"), inputs.csv_rows("baseline_per_case.csv"))
    headers = ["class", "method", "n", *[m[1] for m in METRICS], "missed / extra"]
    rows: list[list[Any]] = []
    styles: list[str | None] = []
    for row in model_rows:
        name = row["class"]
        if classes is not None and name not in classes:
            continue
        entries: list[tuple[str, dict[str, Any], dict[str, Any], str | None]] = [
            ("model", row, model_ci.get(name, {}), None)
        ]
        if name in baseline:
            entries.append(
                ("threshold baseline", baseline[name], baseline_ci.get(name, {}), "baseline")
            )
        for label, values, ci, style in entries:
            rows.append(
                [name if label == "model" else "", label, values.get("n_cases", "-")]
                + [_cell(values, ci, key, digits) for key, _, digits in METRICS]
                + [f"{values.get('n_pred_empty', 0)} / {values.get('n_true_empty', 0)}"]
            )
            styles.append(style)
    caption = (
        "mean ± SD over cases, [95% CI of the mean: patient-level bootstrap; "
        f"{model_source}]. missed: structure in the reference but not predicted; "
        "extra: predicted where the reference has none."
    )
    return h.table(headers, rows, caption, styles), model_source


def metrics_section(inputs: RunInputs) -> h.Section:
    summary = inputs.summary
    section = h.Section("metrics", "Metrics with 95% confidence intervals")
    section.add(
        h.paragraph(
            f"{summary.get('n_cases')} {inputs.split} cases, checkpoint at iteration "
            f"{summary.get('checkpoint_iteration')} ({summary.get('model_selection', '')}).",
            "lead",
        )
    )
    model_rows = summary.get("model", [])
    if inputs.kind == "instance":
        section.add(*_instance_tables(inputs))
        numbered = set(summary["instances"].get("classes", []))
        others = {r["class"] for r in model_rows} - numbered
        if others:
            section.add(h.heading("other structures"), _metric_table(inputs, model_rows, others)[0])
        section.add(
            h.details(
                f"every numbered tooth and pulp ({len(numbered)} classes), voxel metrics",
                _metric_table(inputs, model_rows, numbered)[0],
            )
        )
    else:
        baselines = summary.get("baselines", {})
        if not baselines:
            section.add(h.paragraph("This evaluation holds no baseline.", "note"))
        else:
            fitted = baselines.get("threshold", {}).get("fitted_on", "training cases")
            section.add(
                h.paragraph(
                    "Baseline: an intensity window per class fitted on "
                    f"{fitted} (no learning); the model should clear it.",
                    "note",
                )
            )
        section.add(_metric_table(inputs, model_rows, None)[0])
    section.add(h.heading("definitions"))
    definitions = [(k, v) for k, v in summary.get("definitions", {}).items()]
    for key in ("empty_mask_policy", "hd95_definition", "ci_definition", "model_selection"):
        if summary.get(key):
            definitions.append((key.replace("_", " "), summary[key]))
    if not summary.get("ci_definition"):
        definitions.append(
            ("95% CI", "percentile bootstrap of the mean over cases, resampling whole patients")
        )
    if summary.get("postprocess", {}).get("keep_largest"):
        definitions.append(
            (
                "postprocessing",
                "largest connected component kept for: "
                + ", ".join(summary["postprocess"]["keep_largest"]),
            )
        )
    section.add(h.definition_list(definitions))
    return section


def _instance_tables(inputs: RunInputs) -> list[str]:
    instances = inputs.summary["instances"]
    keys = (
        ("n_reference", "reference", 0),
        ("n_predicted", "predicted", 0),
        ("tp", "TP", 0),
        ("fp_extra", "FP", 0),
        ("fn_missed", "FN", 0),
        ("precision", "precision", 3),
        ("recall", "recall", 3),
        ("f1", "F1", 3),
        ("misnumbering_rate", "misnumbered", 3),
        ("pq", "PQ", 3),
        ("matched_dice_mean", "matched Dice", 3),
        ("volume_error_pct_median", "median vol. error %", 1),
    )
    rows = []
    for family in ("teeth", "pulp"):
        if family in instances:
            values = instances[family]
            rows.append([family] + [fmt(values.get(k), d) for k, _, d in keys])
    parts = [
        h.heading(f"instances (pairs at IoU ≥ {instances.get('iou_threshold', 0.5)})"),
        h.paragraph(
            "No intensity baseline exists for tooth numbering (an intensity window cannot tell "
            "one tooth's number from another's).",
            "note",
        ),
        h.table(["family"] + [k[1] for k in keys], rows, "pooled over the split's cases"),
    ]
    findings = instances.get("findings", {})
    if findings:
        parts.append(
            h.table(
                ["finding", "count"],
                [[k, v] for k, v in findings.items()],
                f"{instances.get('n_cases_with_findings', 0)} case(s) with findings",
            )
        )
    parts.append(h.definition_list(instances.get("definitions", {}).items()))
    return parts


def case_scores(rows: Sequence[dict[str, str]]) -> list[tuple[str, float]]:
    """(case, mean Dice over its classes), best first: the primary per-case metric."""
    by_case: dict[str, list[float]] = {}
    for row in rows:
        by_case.setdefault(row["case_id"], []).append(as_float(row.get("dice")))
    scores = [(c, float(np.mean(v))) for c, v in by_case.items()]
    return sorted(scores, key=lambda item: (-item[1], item[0]))


def best_median_worst(scores: Sequence[tuple[str, float]]) -> list[tuple[str, str, float]]:
    """[(role, case, score)] for the best, median and worst of `scores` (sorted best
    first). A case filling several roles is shown once, e.g. "median, worst" of two."""
    if not scores:
        return []
    picks = [("best", 0), ("median", len(scores) // 2), ("worst", len(scores) - 1)]
    roles: dict[int, list[str]] = {}
    for role, index in picks:
        roles.setdefault(index, []).append(role)
    return [(", ".join(r), scores[i][0], scores[i][1]) for i, r in roles.items()]


def cases_section(inputs: RunInputs) -> h.Section:
    from dentpy.report.run_plots import box_strip

    section = h.Section("cases", "Per-case distributions")
    rows = inputs.csv_rows("per_case.csv")
    baseline_rows = inputs.csv_rows("baseline_per_case.csv")
    figures = []
    for key, label, limits in (
        ("dice", "Dice", (0.0, 1.0)),
        ("hd95_mm", "HD95 (mm)", None),
    ):
        if inputs.kind == "instance":
            groups, series = _instance_groups(inputs, rows, key)
            what = f"{label} per tooth / pulp instance (reference numbers) and per case"
        else:
            groups = list(dict.fromkeys(r["class"] for r in rows))
            series = {"model": _by_class(rows, groups, key)}
            if baseline_rows:
                series["threshold baseline"] = _by_class(baseline_rows, groups, key)
            what = f"{label} per case"
        figures.append(
            h.image(box_strip(groups, series, what, label, limits), f"{label} distribution")
        )
    section.add(h.grid(figures))
    if inputs.kind == "instance":
        section.add(
            h.paragraph(
                "Teeth and pulps: one dot per reference instance (a missed one has Dice 0 and "
                "no HD95). Other structures: one dot per case.",
                "note",
            )
        )
    scores = case_scores(rows)
    table_rows = [[i + 1, case, fmt(score)] for i, (case, score) in enumerate(scores)]
    section.add(
        h.details(
            f"cases ranked by mean Dice over classes ({len(scores)} cases)",
            h.table(["rank", "case", "mean Dice"], table_rows[:TABLE_ROWS]),
        )
    )
    return section


def _by_class(
    rows: Sequence[dict[str, str]], classes: Sequence[str], key: str
) -> list[list[float]]:
    return [[as_float(r[key]) for r in rows if r["class"] == c] for c in classes]


def _instance_groups(
    inputs: RunInputs, rows: Sequence[dict[str, str]], key: str
) -> tuple[list[str], dict[str, list[list[float]]]]:
    """Teeth and pulps pooled per family from per_tooth.csv (32 numbered classes would be
    32 near-empty rows), plus the structures without a number, per case."""
    teeth = [r for r in inputs.csv_rows("per_tooth.csv") if r.get("status") != "extra"]
    families = list(dict.fromkeys(r["family"] for r in teeth))
    numbered = set(inputs.summary.get("instances", {}).get("classes", []))
    others = list(dict.fromkeys(r["class"] for r in rows if r["class"] not in numbered))
    values = [[as_float(r.get(key)) for r in teeth if r["family"] == f] for f in families]
    return [f"{f} (each instance)" for f in families] + others, {
        "model": values + _by_class(rows, others, key)
    }


def examples_section(inputs: RunInputs) -> h.Section:
    section = h.Section("examples", "Best, median and worst cases")
    chosen = best_median_worst(case_scores(inputs.csv_rows("per_case.csv")))
    section.add(
        h.paragraph(
            "Cases ranked by their mean Dice over classes; each is predicted afresh with the "
            "evaluated checkpoint and drawn through the slices where the reference structure "
            "is largest.",
            "note",
        )
    )
    try:
        pictures = _example_pictures(inputs, chosen)
    except (DentpyError, OSError) as exc:
        # The dataset may have moved since training; the rest of the report stands alone.
        return section.add(unreadable_note(exc, "example pictures"))
    for (role, case, score), images in zip(chosen, pictures, strict=True):
        section.add(h.heading(f"{role}: {case} (mean Dice {score:.3f})"))
        for png, alt in images:
            section.add(h.image(png, alt))
    return section


def _example_pictures(
    inputs: RunInputs, chosen: Sequence[tuple[str, str, float]]
) -> list[list[tuple[bytes, str]]]:
    from dentpy.data.dataset import open_dataset
    from dentpy.data.volume import LabelMap
    from dentpy.engine.run import load_trained
    from dentpy.inference import postprocess, predict_with_run
    from dentpy.instances import instance_postprocess
    from dentpy.preprocess import map_classes
    from dentpy.report.case_slices import truth_vs_prediction_png
    from dentpy.report.instance_overlay import save_instance_overlay

    trained = load_trained(inputs.root, checkpoint=str(inputs.summary.get("checkpoint", "best")))
    spec, task = trained.spec, trained.task
    dataset = open_dataset(spec.input.data, spec.input.layout, spec.input.assume_spacing_mm)
    records = {r.case_id: r for r in (*dataset.records, *dataset.test_records)}
    class_ids = [list(ids) for ids in task.class_label_ids]
    out: list[list[tuple[bytes, str]]] = []
    for role, case_id, _ in chosen:
        case = dataset.load(records[case_id])
        prediction = predict_with_run(trained, case.image)
        prediction = postprocess(prediction, list(task.class_names), spec.postprocess.keep_largest)
        label = np.asarray(case.label.array)  # type: ignore[union-attr]
        images = []
        if task.instances:
            predicted_ids, _ = instance_postprocess(prediction, task)
            truth = np.isin(label, [i for ids in class_ids for i in ids])
            images.append(
                (
                    truth_vs_prediction_png(
                        case.image, truth, predicted_ids.array > 0, f"{role}: {case_id}"
                    ),
                    f"{role} case, reference and predicted outlines",
                )
            )
            with tempfile.TemporaryDirectory() as folder:
                path = save_instance_overlay(
                    case.image,
                    LabelMap(array=predicted_ids.array, affine=case.image.affine),
                    Path(folder) / "instances.png",
                )
                images.append((path.read_bytes(), f"{role} case, predicted FDI numbers"))
        else:
            truth = map_classes(label, class_ids)
            images.append(
                (
                    truth_vs_prediction_png(
                        case.image, truth, np.asarray(prediction.array), f"{role}: {case_id}"
                    ),
                    f"{role} case, reference and predicted outlines",
                )
            )
        out.append(images)
    return out


def volumes_section(inputs: RunInputs) -> h.Section:
    from dentpy.report.run_plots import volume_agreement

    section = h.Section("volumes", "Volumes")
    rows = inputs.csv_rows("per_case.csv")
    if not rows or "volume_true_mm3" not in rows[0]:
        return section.add(h.paragraph("per_case.csv holds no volumes.", "note"))
    true = [as_float(r["volume_true_mm3"]) for r in rows]
    pred = [as_float(r["volume_pred_mm3"]) for r in rows]
    classes = [r["class"] for r in rows]
    section.add(
        h.paragraph(
            "Volume = voxel count × voxel volume (product of the scan's spacing), in mm³, of "
            "the prediction and of the reference, per case and class.",
            "note",
        )
    )
    section.add(h.image(volume_agreement(true, pred, classes), "predicted against true volume"))
    table_rows = []
    for row, t, p in zip(rows, true, pred, strict=True):
        percent = f"{100 * (p - t) / t:+.1f} %" if t > 0 else "undefined (empty reference)"
        table_rows.append(
            [row["case_id"], row["class"], fmt(t, 0), fmt(p, 0), fmt(p - t, 0), percent]
        )
    table = h.table(
        ["case", "class", "true (mm³)", "predicted (mm³)", "difference", "difference %"],
        table_rows[:TABLE_ROWS],
        f"{len(table_rows)} rows"
        + (
            f", first {TABLE_ROWS} shown; all in per_case.csv"
            if len(table_rows) > TABLE_ROWS
            else ""
        ),
    )
    if len(table_rows) > 12:
        section.add(h.details(f"volume table ({len(table_rows)} rows)", table))
    else:
        section.add(table)
    return section
