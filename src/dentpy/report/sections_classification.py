"""Report sections of 2D classification runs (binary, multiclass, ordinal severity): metrics
with patient-bootstrap 95% CIs next to the baselines, the evaluation's ROC/PR/confusion
pictures, score distributions, and Grad-CAM of a confident hit, a borderline case and a
confident error."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dentpy.errors import DentpyError
from dentpy.report import html_page as h
from dentpy.report.run_inputs import RunInputs, as_float, fmt, unreadable_note, with_ci

# Counts and bookkeeping, shown apart from the rated metrics.
NOT_RATES = {"n", "n_classes", "tp", "fp", "tn", "fn", "n_defined", "per_class", "confusion_matrix"}
PICTURES = (
    ("roc.png", "ROC curve"),
    ("pr.png", "precision-recall curve"),
    ("confusion.png", "confusion matrix"),
)


def metrics_section(inputs: RunInputs) -> h.Section:
    summary = inputs.summary
    model = summary["model"]
    baselines = summary.get("baselines", {})
    section = h.Section("metrics", "Metrics with 95% confidence intervals")
    section.add(
        h.paragraph(
            f"{summary.get('n_images')} {inputs.split} images of {summary.get('n_patients')} "
            f"patients; class counts: "
            + ", ".join(f"{k} {v}" for k, v in summary.get("class_counts", {}).items())
            + f". Checkpoint at iteration {summary.get('checkpoint_iteration')} "
            f"({summary.get('model_selection', '')}).",
            "lead",
        )
    )
    metrics = model["metrics"]
    keys_with_ci = list(model.get("ci95", {}))
    keys = keys_with_ci + [
        k
        for k, v in metrics.items()
        if k not in keys_with_ci
        and k not in NOT_RATES
        and (v is None or isinstance(v, int | float))
    ]
    definitions = summary.get("definitions", {})
    headers = ["metric", "model [95% CI]"] + [f"{b} baseline" for b in baselines] + ["definition"]
    rows = []
    for key in keys:
        row: list[Any] = [key, with_ci(metrics.get(key), model.get("ci95", {}).get(key))]
        for name in baselines:
            other = baselines[name]
            row.append(with_ci(other["metrics"].get(key), other.get("ci95", {}).get(key)))
        row.append(definitions.get(key, ""))
        rows.append(row)
    section.add(
        h.table(
            headers,
            rows,
            f"{summary.get('confidence_intervals', '95% CI: patient-level bootstrap')}; "
            "metrics without an interval are point estimates. 'undefined': the metric's "
            "denominator is zero on this split.",
        )
    )
    notes = []
    if summary.get("output") == "binary":
        notes.append(
            (
                "decision threshold",
                f"{fmt(model.get('threshold'))} — {summary.get('threshold_policy', '')}",
            )
        )
        if all(k in metrics for k in ("tp", "fp", "tn", "fn")):
            notes.append(
                (
                    "counts",
                    f"TP {metrics['tp']}, FP {metrics['fp']}, TN {metrics['tn']}, "
                    f"FN {metrics['fn']}",
                )
            )
    for name, other in baselines.items():
        notes.append((f"{name} baseline", f"fitted on {other.get('fitted_on', 'training data')}"))
    section.add(h.definition_list(notes))
    per_class = metrics.get("per_class")
    if per_class:
        section.add(h.heading("per class (one vs rest)"), _per_class_table(summary, per_class))
    pictures = [
        h.image((inputs.evaluation / name).read_bytes(), title, f"{title} (from dentpy evaluate)")
        for name, title in PICTURES
        if (inputs.evaluation / name).is_file()
    ]
    if pictures:
        section.add(h.grid(pictures))
    return section


def _per_class_table(summary: dict[str, Any], per_class: dict[str, Any]) -> str:
    columns = ("support", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc")
    classes = summary.get("classes", [])
    rows = []
    for index, values in per_class.items():
        name = classes[int(index)] if str(index).isdigit() and int(index) < len(classes) else index
        rows.append(
            [name] + [fmt(values.get(c)) if c != "support" else values.get(c, "-") for c in columns]
        )
    return h.table(["class", *columns], rows)


def _probabilities(rows: Sequence[dict[str, str]], classes: Sequence[str]) -> np.ndarray:
    return np.asarray([[as_float(r.get(f"p_{c}")) for c in classes] for r in rows], dtype=float)


def cases_section(inputs: RunInputs) -> h.Section:
    from dentpy.report.run_plots import box_strip

    summary = inputs.summary
    classes = list(summary.get("classes", []))
    rows = inputs.csv_rows("per_case.csv")
    section = h.Section("cases", "Per-image score distributions")
    if not rows:
        return section.add(h.paragraph("per_case.csv is missing.", "note"))
    probs = _probabilities(rows, classes)
    truth = [r["true"] for r in rows]
    if summary.get("output") == "binary" and summary.get("positive_class") in classes:
        positive = str(summary["positive_class"])
        column = probs[:, classes.index(positive)]
        values = [[v for v, t in zip(column, truth, strict=True) if t == c] for c in classes]
        picture = box_strip(
            [f"reference: {c}" for c in classes],
            {"model": values},
            f"predicted probability of {positive}, by reference class",
            f"P({positive})",
            (0.0, 1.0),
            (float(summary["model"].get("threshold", 0.5)), "decision threshold"),
        )
        note = "Well separated groups on either side of the threshold mean few errors."
    else:
        own = probs[np.arange(len(rows)), [classes.index(t) for t in truth]]
        values = [[v for v, t in zip(own, truth, strict=True) if t == c] for c in classes]
        picture = box_strip(
            [f"reference: {c}" for c in classes],
            {"model": values},
            "probability the model gave to the reference class",
            "P(reference class)",
            (0.0, 1.0),
        )
        note = "Each dot is one image; low values are images the model got wrong or nearly so."
    section.add(h.image(picture, "score distribution per class", note))
    return section


def pick_examples(
    rows: Sequence[dict[str, str]], classes: Sequence[str], positive: str | None, threshold: float
) -> list[tuple[str, int]]:
    """[(role, row index)]: the most confident correct, a borderline and the most confident
    wrong prediction (roles without a candidate are left out)."""
    probs = _probabilities(rows, classes)
    if not len(rows):
        return []
    predicted = np.asarray([classes.index(r["predicted"]) for r in rows])
    truth = np.asarray([classes.index(r["true"]) for r in rows])
    confidence = probs[np.arange(len(rows)), predicted]
    correct = predicted == truth
    picks: list[tuple[str, int]] = []
    if correct.any():
        picks.append(
            ("most confident correct", int(np.flatnonzero(correct)[np.argmax(confidence[correct])]))
        )
    if positive is not None and positive in classes:
        distance = np.abs(probs[:, classes.index(positive)] - threshold)
    else:
        ordered = np.sort(probs, axis=1)
        distance = ordered[:, -1] - ordered[:, -2] if probs.shape[1] > 1 else confidence
    taken = {i for _, i in picks}
    borderline = [int(i) for i in np.argsort(distance, kind="stable") if int(i) not in taken]
    if borderline:
        picks.append(("borderline", borderline[0]))
    if (~correct).any():
        wrong = np.flatnonzero(~correct)
        picks.append(("most confident wrong", int(wrong[np.argmax(confidence[~correct])])))
    return picks


def examples_section(inputs: RunInputs) -> h.Section:
    summary = inputs.summary
    classes = list(summary.get("classes", []))
    rows = inputs.csv_rows("per_case.csv")
    positive = summary.get("positive_class") if summary.get("output") == "binary" else None
    threshold = float(summary["model"].get("threshold", 0.5))
    picks = pick_examples(rows, classes, positive, threshold)
    section = h.Section("examples", "Examples with Grad-CAM")
    section.add(
        h.paragraph(
            "The most confident correct prediction, the most borderline one and the most "
            "confident error; Grad-CAM shows where the network's evidence for its answer lay "
            "(a map on the image border or a label instead of the tooth is a shortcut).",
            "note",
        )
    )
    try:
        pictures = _cam_pictures(inputs, [rows[i] for _, i in picks], classes)
    except (DentpyError, OSError) as exc:
        section.add(unreadable_note(exc, "Grad-CAM pictures"))
        pictures = []
    for (role, index), (png, caption) in zip(picks, pictures, strict=False):
        row = rows[index]
        section.add(
            h.heading(
                f"{role}: {row['case_id']} — reference {row['true']}, predicted {row['predicted']}"
            ),
            h.image(png, f"{role} example with Grad-CAM", caption, narrow=True),
        )
    errors = inputs.evaluation / "errors.png"
    if errors.is_file():
        section.add(
            h.heading("the most confident errors (from dentpy evaluate)"),
            h.image(errors.read_bytes(), "most confident errors"),
        )
    return section


def _cam_pictures(
    inputs: RunInputs, rows: Sequence[dict[str, str]], classes: Sequence[str]
) -> list[tuple[bytes, str]]:
    import torch

    from dentpy.data.prepare2d import to_network
    from dentpy.evaluate_classification import load_classifier
    from dentpy.report.cam import cam_target, grad_cam, save_cam_overlay
    from dentpy.train_classification import labelled_pool, open_classification_data

    if not rows:
        return []
    trained = load_classifier(inputs.root, str(inputs.summary.get("checkpoint", "best")))
    by_id = {r.case_id: r for r in labelled_pool(open_classification_data(trained.spec))}
    out = []
    with tempfile.TemporaryDirectory() as folder:
        for number, row in enumerate(rows):
            record = by_id[row["case_id"]]
            image = record.load().image
            network = to_network(
                image, trained.image_size, trained.clip_percentiles, row["case_id"]
            )
            chosen = classes.index(row["predicted"])
            target = cam_target(chosen, trained.task.cumulative)
            explained = (
                f"evidence for 'grade above {classes[target]}'"
                if trained.task.cumulative
                else f"evidence for '{classes[target]}'"
            )
            tensor = torch.from_numpy(network[None]).to(trained.device)
            heatmap = grad_cam(trained.model, tensor, target=target)
            confidence = as_float(row.get(f"p_{row['predicted']}"))
            title = (
                f"{row['case_id']}: reference {row['true']}, predicted {row['predicted']} "
                f"(p = {confidence:.2f})"
            )
            path = save_cam_overlay(
                Path(folder) / f"cam{number}.png", image.grayscale, heatmap, title
            )
            out.append((path.read_bytes(), f"left: the image; right: Grad-CAM, {explained}"))
    return out
