"""Report sections of 2D detection runs: COCO AP (with the evaluation's bootstrap CIs)
next to the blob-box baseline, precision /
recall / F1 at the validation-chosen confidence with image-bootstrap 95% CIs, per-image F1,
and the best, median and worst image with their boxes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dentpy.errors import DentpyError
from dentpy.report import html_page as h
from dentpy.report.run_inputs import RunInputs, as_float, fmt, unreadable_note, with_ci

AP_KEYS = (("ap", "AP@[.50:.95]"), ("ap50", "AP50"), ("ap75", "AP75"))
DEFINITION_KEYS = (
    "ap",
    "ap50",
    "ap75",
    "ar",
    "matching",
    "score_threshold",
    "precision",
    "recall",
    "f1",
    "micro",
    "classes_without_truth",
)


def _ap_cells(values: Mapping[str, Any], cis: Mapping[str, Any] | None) -> list[Any]:
    """AP, AP50, AP75 with their bootstrap interval (from `dentpy evaluate`) when known."""
    return [with_ci(values.get(key), (cis or {}).get(key)) for key, _ in AP_KEYS]


def _ar(values: Mapping[str, Any], k: str) -> str:
    return fmt((values.get("ar") or {}).get(k))


def operating_point_cis(
    rows: Sequence[Mapping[str, str]], n_boot: int, seed: int = 0
) -> dict[str, Any]:
    """Micro precision, recall and F1 from per_image.csv, with a 95% percentile bootstrap
    over images (each image resampled whole, its TP/FP/FN together)."""
    from dentpy.metrics.classification import bootstrap_cis

    counts = np.asarray(
        [[as_float(r.get("tp")), as_float(r.get("fp")), as_float(r.get("fn"))] for r in rows]
    )
    if not len(counts) or not np.all(np.isfinite(counts)) or n_boot < 1:
        return {}

    def micro(index: np.ndarray) -> dict[str, float | None]:
        tp, fp, fn = counts[index].sum(axis=0)
        return {
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else None,
        }

    found = bootstrap_cis(micro, len(counts), np.arange(len(counts)), n_boot=n_boot, seed=seed)
    return {k: {"low": i.low, "high": i.high, "n_valid": i.n_valid} for k, i in found.items()}


def metrics_section(inputs: RunInputs) -> h.Section:
    summary = inputs.summary
    model = summary["model"]
    baselines = summary.get("baselines", {})
    section = h.Section("metrics", "Metrics with 95% confidence intervals")
    section.add(
        h.paragraph(
            f"{summary.get('n_images')} {inputs.split} images with {summary.get('n_boxes')} "
            f"reference boxes; checkpoint at iteration {summary.get('checkpoint_iteration')} "
            f"({summary.get('model_selection', '')}).",
            "lead",
        )
    )
    headers = ["method", *[k[1] for k in AP_KEYS], "AR@1", "AR@10", "AR@100", "predicted boxes"]
    rows = [
        [
            "model",
            *_ap_cells(model, model.get("ci95")),
            _ar(model, "1"),
            _ar(model, "10"),
            _ar(model, "100"),
            model.get("n_predicted", "-"),
        ]
    ]
    styles: list[str | None] = [None]
    for name, baseline in baselines.items():
        values = baseline.get("summary", {})
        rows.append(
            [
                f"{name} baseline",
                *_ap_cells(values, baseline.get("ci95")),
                _ar(values, "1"),
                _ar(values, "10"),
                _ar(values, "100"),
                values.get("n_predicted", "-"),
            ]
        )
        styles.append("baseline")
    section.add(
        h.heading("average precision (all confidences)"),
        h.table(
            headers,
            rows,
            "COCO AP and AR, mean over the classes with a reference box; "
            + str(
                summary.get("ci_definition")
                or "no confidence interval (evaluated before dentpy computed them: "
                "run dentpy evaluate again)"
            ),
            styles,
        ),
    )
    for name, baseline in baselines.items():
        section.add(
            h.paragraph(
                f"{name} baseline: bright blobs boxed by a fixed rule fitted on "
                f"{baseline.get('fitted_on', 'training images')} (no learning).",
                "note",
            )
        )
    point = summary.get("at_threshold", {})
    micro = point.get("micro", {})
    n_boot = int(inputs.spec.get("evaluation", {}).get("bootstrap") or 1000)
    cis = operating_point_cis(inputs.csv_rows("per_image.csv"), n_boot)
    rows = []
    for key in ("precision", "recall", "f1"):
        rows.append([key, with_ci(micro.get(key), cis.get(key))])
    rows.append(["TP / FP / FN", f"{micro.get('tp')} / {micro.get('fp')} / {micro.get('fn')}"])
    section.add(
        h.heading(
            f"at the confidence threshold {fmt(summary.get('score_threshold'))} "
            f"(chosen on validation), IoU ≥ {point.get('iou', 0.5)}"
        ),
        h.table(
            ["metric", "model [95% CI]"],
            rows,
            f"micro over all classes and images; 95% CI: percentile bootstrap over images, "
            f"{n_boot} resamples",
        ),
    )
    section.add(h.details("per class", _per_class_table(summary)))
    pr = inputs.evaluation / "pr_curves.png"
    if pr.is_file():
        section.add(
            h.image(
                pr.read_bytes(),
                "precision-recall curves",
                "precision-recall per class at IoU 0.5 (from dentpy evaluate)",
            )
        )
    definitions = summary.get("definitions", {})
    section.add(
        h.heading("definitions"),
        h.definition_list((k, definitions[k]) for k in DEFINITION_KEYS if k in definitions),
    )
    return section


def _per_class_table(summary: dict[str, Any]) -> str:
    model = summary["model"].get("per_class", {})
    point = summary.get("at_threshold", {}).get("per_class", {})
    blob = summary.get("baselines", {}).get("blob_boxes", {}).get("summary", {}).get("per_class")
    rows = []
    for name in summary.get("classes", []):
        per, at = model.get(name, {}), point.get(name, {})
        rows.append(
            [
                name,
                per.get("n_true", "-"),
                per.get("n_predicted", "-"),
                fmt(per.get("ap")),
                fmt(per.get("ap50")),
                fmt(per.get("ap75")),
                fmt(at.get("precision")),
                fmt(at.get("recall")),
                fmt(at.get("f1")),
                fmt(blob[name]["ap50"]) if blob and name in blob else "-",
            ]
        )
    return h.table(
        [
            "class",
            "reference",
            "predicted",
            "AP",
            "AP50",
            "AP75",
            "precision",
            "recall",
            "F1",
            "blob AP50",
        ],
        rows,
        "precision / recall / F1 at the chosen confidence; 'undefined': zero denominator",
    )


def cases_section(inputs: RunInputs) -> h.Section:
    from dentpy.report.run_plots import box_strip

    rows = inputs.csv_rows("per_image.csv")
    section = h.Section("cases", "Per-image distributions")
    rows = [r for r in rows if r.get("case_id")]
    if not rows:
        return section.add(h.paragraph("per_image.csv holds no image.", "note"))
    f1 = [as_float(r.get("f1")) for r in rows]
    picture = box_strip(
        ["all images"], {"model": [f1]}, "F1 per image at the chosen confidence", "F1", (0.0, 1.0)
    )
    counts = box_strip(
        ["true positives", "false positives", "false negatives"],
        {"model": [[as_float(r.get(k)) for r in rows] for k in ("tp", "fp", "fn")]},
        "boxes per image",
        "count",
    )
    section.add(h.grid([h.image(picture, "F1 per image"), h.image(counts, "TP, FP, FN")]))
    table = [
        [
            r["case_id"],
            r.get("n_true"),
            r.get("n_predicted"),
            r.get("tp"),
            r.get("fp"),
            r.get("fn"),
            fmt(r.get("f1") or None),
        ]
        for r in rows
    ]
    section.add(
        h.details(
            f"every image ({len(rows)})",
            h.table(["image", "reference", "predicted", "TP", "FP", "FN", "F1"], table),
        )
    )
    return section


def examples_section(inputs: RunInputs) -> h.Section:
    from dentpy.report.sections_segmentation import best_median_worst

    section = h.Section("examples", "Best, median and worst images")
    rows = [r for r in inputs.csv_rows("per_image.csv") if r.get("case_id")]
    scores = sorted(
        ((r["case_id"], as_float(r.get("f1"))) for r in rows),
        key=lambda item: (-(item[1] if np.isfinite(item[1]) else 1.0), item[0]),
    )
    chosen = best_median_worst(scores)
    section.add(
        h.paragraph(
            "Images ranked by their F1 at the chosen confidence, predicted afresh with the "
            "evaluated checkpoint: reference boxes green dashed, predictions red with class and "
            "confidence.",
            "note",
        )
    )
    try:
        png = _box_pictures(inputs, chosen)
    except (DentpyError, OSError) as exc:
        return section.add(unreadable_note(exc, "example pictures"))
    if png is not None:
        section.add(h.image(png, "best, median and worst image with boxes"))
    examples = inputs.evaluation / "examples.png"
    if examples.is_file():
        section.add(
            h.details(
                "the evaluation's example grid (worst first)",
                h.image(examples.read_bytes(), "worst images"),
            )
        )
    return section


def _box_pictures(inputs: RunInputs, chosen: Sequence[tuple[str, str, float]]) -> bytes | None:
    """One figure, a panel per chosen image (predicted afresh): reference boxes green
    dashed, kept predictions red with class and confidence."""
    from matplotlib.patches import Rectangle

    from dentpy.data.prepare_boxes import prepare_box_records
    from dentpy.evaluate_detection import load_detector
    from dentpy.report.html_page import figure_png
    from dentpy.report.run_plots import pyplot
    from dentpy.train_detection import annotated_pool, network_detections, open_detection_data

    if not chosen:
        return None
    trained = load_detector(inputs.root, str(inputs.summary.get("checkpoint", "best")))
    by_id = {r.case_id: r for r in annotated_pool(open_detection_data(trained.spec))}
    data = prepare_box_records(
        [by_id[c] for _, c, _ in chosen],
        trained.task,
        trained.image_size,
        trained.clip_percentiles,
    )
    found = network_detections(
        trained.model, data.images, trained.device, trained.amp_dtype, trained.spec
    )
    classes = list(trained.task.classes)
    threshold = trained.score_threshold
    plt = pyplot()
    figure, axes = plt.subplots(1, len(chosen), figsize=(5.2 * len(chosen), 4.4), squeeze=False)
    for axis, (role, case, score), mapping, truth, (boxes, scores, labels) in zip(
        axes[0], chosen, data.letterboxes, data.boxes, found, strict=True
    ):
        pixels = by_id[case].load().image.grayscale
        low, high = np.percentile(pixels, (1, 99.5))
        axis.imshow(pixels, cmap="gray", vmin=low, vmax=max(high, low + 1e-6))
        for x0, y0, x1, y1 in mapping.boxes_to_image(truth):
            axis.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="lime", ls="--", lw=1)
            )
        keep = scores >= threshold
        for (x0, y0, x1, y1), s, c in zip(
            mapping.boxes_to_image(boxes[keep]), scores[keep], labels[keep], strict=True
        ):
            axis.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="red", lw=1))
            axis.text(x0, y0, f"{classes[int(c)]} {s:.2f}", color="red", fontsize=6, va="bottom")
        axis.set_title(
            f"{role}: {case}\nF1 {fmt(score, 2)}, {int(keep.sum())} kept "
            f"prediction(s), {len(truth)} reference box(es)",
            fontsize=9,
        )
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(
        f"green dashed: reference; red: predicted with confidence ≥ {threshold:.2f}", fontsize=9
    )
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    return figure_png(figure, 80)
