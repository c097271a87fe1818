"""Detection pictures: precision-recall curves per class, and images with true and predicted
boxes (the worst images first, where a reader learns most about the model)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

GRID_IMAGES = 8


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    _pyplot().close(figure)
    return path


def save_pr_curves(curves: Mapping[str, Any], classes: Sequence[str], path: Path) -> Path:
    """One precision-recall curve (IoU 0.5) per class with its AP50 in the legend."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 5))
    for name in classes:
        curve = curves.get(name)
        if curve is None or curve.get("recall") is None:
            continue
        recall, precision = np.asarray(curve["recall"]), np.asarray(curve["precision"])
        ap50 = curve.get("ap50")
        label = f"{name} (AP50 {ap50:.2f})" if ap50 is not None else name
        axis.plot(recall, precision, label=label, linewidth=1.5)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision (interpolated)")
    axis.set_title("precision-recall at IoU 0.5")
    if len(classes) <= 16:
        axis.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    return _save(figure, path)


def _image_f1(truth: Any, predicted: Any, n_classes: int, threshold: float) -> float:
    from dentpy.metrics.detection import operating_point

    value = operating_point([truth], [predicted], n_classes, threshold)["micro"]["f1"]
    return 1.0 if value is None else float(value)


def save_box_grid(
    truth: Sequence[Any],
    predicted: Sequence[Any],
    records: Mapping[str, Any],
    classes: Sequence[str],
    threshold: float,
    path: Path,
) -> Path:
    """Up to GRID_IMAGES images, lowest per-image F1 first: true boxes green (dashed),
    predictions at or above the threshold red with class and confidence."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    order = sorted(
        range(len(truth)),
        key=lambda i: _image_f1(truth[i], predicted[i], len(classes), threshold),
    )[:GRID_IMAGES]
    columns = min(4, max(1, len(order)))
    rows = max(1, int(np.ceil(len(order) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.6 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.set_axis_off()
    for slot, i in enumerate(order):
        axis = axes.ravel()[slot]
        image = records[truth[i].image_id].load().image.array
        gray = image[..., 0] if image.ndim == 3 else image
        low, high = np.percentile(gray, (1, 99.5))
        axis.imshow(gray, cmap="gray", vmin=low, vmax=high)
        for box in truth[i].boxes:
            x0, y0, x1, y1 = (float(v) for v in box)
            axis.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="lime", ls="--", lw=1)
            )
        scores = predicted[i].scores if predicted[i].scores is not None else np.zeros(0)
        for box, label, score in zip(predicted[i].boxes, predicted[i].labels, scores, strict=True):
            if score < threshold:
                continue
            x0, y0, x1, y1 = (float(v) for v in box)
            axis.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="red", lw=1))
            axis.text(
                x0, y0, f"{classes[int(label)]} {score:.2f}", color="red", fontsize=6, va="bottom"
            )
        f1 = _image_f1(truth[i], predicted[i], len(classes), threshold)
        axis.set_title(f"{truth[i].image_id}  F1 {f1:.2f}", fontsize=8)
    figure.suptitle(
        f"green dashed: reference; red: predicted (confidence ≥ {threshold:.2f}); worst first",
        fontsize=9,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    return _save(figure, path)
