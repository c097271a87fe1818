"""Pictures of a classifier's results: ROC and PR curves, confusion matrix, error grid.

Each function writes one PNG (matplotlib Agg backend, dpi 80, no display needed) and
returns its path. Titles say what is shown, with n and the confidence interval when one
is given, so a picture cut out of a report still carries its sample size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dentpy.metrics.classification import pr_curve, roc_curve

DPI = 80


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: str | Path) -> Path:
    plt = _pyplot()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=DPI)
    plt.close(figure)
    return out


def _value_text(
    name: str,
    value: float | None,
    ci: tuple[float | None, float | None] | None,
    ci_level: float,
) -> str:
    if value is None:
        return f"{name} undefined"
    text = f"{name} {value:.3f}"
    if ci is not None:
        if ci[0] is None or ci[1] is None:
            text += f" ({100 * ci_level:g}% CI undefined: too few valid resamples)"
        else:
            text += f" ({100 * ci_level:g}% CI {ci[0]:.3f}-{ci[1]:.3f})"
    return text


def save_roc(
    path: str | Path,
    y_true: np.ndarray,
    scores: np.ndarray,
    auc: float | None,
    label: str,
    ci: tuple[float | None, float | None] | None = None,
    operating_threshold: float | None = None,
    ci_level: float = 0.95,
) -> Path:
    """Binary ROC curve (FPR vs TPR) with the chance diagonal.

    ``ci`` is the (low, high) bootstrap interval of ``auc`` at ``ci_level``, shown in the
    title (a None bound is shown as an undefined interval).
    ``operating_threshold`` (e.g. from ``choose_threshold`` on validation data) marks the
    operating point reached on these data (predict positive when score >= threshold).
    """
    plt = _pyplot()
    y = np.asarray(y_true).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64)
    fpr, tpr, _ = roc_curve(y, s)
    n_pos = int(y.sum())
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    if np.all(np.isfinite(fpr)) and np.all(np.isfinite(tpr)):
        axis.plot(fpr, tpr, drawstyle="default", linewidth=2, label=label)
    if operating_threshold is not None and n_pos and y.size - n_pos:
        pred = s >= operating_threshold
        op_tpr = np.count_nonzero(pred & (y == 1)) / n_pos
        op_fpr = np.count_nonzero(pred & (y == 0)) / (y.size - n_pos)
        axis.plot(
            [op_fpr],
            [op_tpr],
            "o",
            color="#e6194b",
            label=f"threshold {operating_threshold:.3g}: sens {op_tpr:.2f}, spec {1 - op_fpr:.2f}",
        )
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.01)
    axis.set_xlabel("false positive rate (1 - specificity)")
    axis.set_ylabel("true positive rate (sensitivity)")
    axis.set_title(
        f"ROC, {label}: n={y.size} ({n_pos} positive)\n{_value_text('AUC', auc, ci, ci_level)}",
        fontsize=9,
    )
    axis.legend(loc="lower right", fontsize=7)
    figure.tight_layout()
    return _save(figure, path)


def save_pr(
    path: str | Path,
    y_true: np.ndarray,
    scores: np.ndarray,
    ap: float | None,
    label: str,
    ci: tuple[float | None, float | None] | None = None,
    operating_threshold: float | None = None,
    ci_level: float = 0.95,
) -> Path:
    """Binary precision-recall curve (step, as average precision integrates it) with the
    prevalence line (the precision of a random classifier)."""
    plt = _pyplot()
    y = np.asarray(y_true).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64)
    precision, recall, _ = pr_curve(y, s)
    n_pos = int(y.sum())
    figure, axis = plt.subplots(figsize=(5, 5))
    if y.size:
        prevalence = n_pos / y.size
        axis.axhline(prevalence, linestyle="--", color="0.6", linewidth=1, label="prevalence")
    if n_pos:
        # Precision P_n holds on recall (R_{n-1}, R_n], as average precision integrates it.
        axis.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="pre", label=label)
        if operating_threshold is not None:
            pred = s >= operating_threshold
            tp = np.count_nonzero(pred & (y == 1))
            if pred.any():
                op_p, op_r = tp / np.count_nonzero(pred), tp / n_pos
                axis.plot(
                    [op_r],
                    [op_p],
                    "o",
                    color="#e6194b",
                    label=f"threshold {operating_threshold:.3g}: PPV {op_p:.2f}, sens {op_r:.2f}",
                )
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.01)
    axis.set_xlabel("recall (sensitivity)")
    axis.set_ylabel("precision (PPV)")
    axis.set_title(
        f"precision-recall, {label}: n={y.size} ({n_pos} positive)\n"
        f"{_value_text('average precision', ap, ci, ci_level)}",
        fontsize=9,
    )
    axis.legend(loc="lower left", fontsize=7)
    figure.tight_layout()
    return _save(figure, path)


def save_confusion(
    path: str | Path,
    matrix: np.ndarray | Sequence[Sequence[int]],
    class_names: Sequence[str],
    normalize: bool = True,
) -> Path:
    """Confusion matrix, rows = reference class, columns = predicted class.

    With ``normalize`` the colour is the row fraction (the recall of each reference class
    on the diagonal); every cell is annotated with its count (and the fraction). A class
    absent from the reference has an all-zero row, annotated "absent".
    """
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=np.int64)
    k = len(class_names)
    if counts.shape != (k, k):
        raise ValueError(f"matrix shape {counts.shape} does not match {k} class names")
    rows = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    shown = fractions if normalize else counts
    size = max(4.0, 0.8 * k + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(
        shown, cmap="Blues", vmin=0, vmax=1 if normalize else max(1, int(counts.max()))
    )
    threshold = (1.0 if normalize else max(1, int(counts.max()))) / 2
    for i in range(k):
        for j in range(k):
            fraction = f"{fractions[i, j]:.2f}" if rows[i, 0] > 0 else "absent"
            text = f"{counts[i, j]}\n{fraction}" if normalize else f"{counts[i, j]}"
            axis.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if shown[i, j] > threshold else "black",
            )
    axis.set_xticks(range(k))
    axis.set_yticks(range(k))
    axis.set_xticklabels(class_names, rotation=45, ha="right", fontsize=7)
    axis.set_yticklabels(class_names, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("reference")
    what = "row-normalised (fraction of each reference class)" if normalize else "counts"
    axis.set_title(f"confusion matrix, n={int(counts.sum())}\n{what}", fontsize=9)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    figure.tight_layout()
    return _save(figure, path)


def save_error_grid(
    path: str | Path,
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    title: str,
) -> Path:
    """Grid of up to 16 grayscale images (e.g. the most confident errors) with captions.

    Each image is windowed to its own 1st-99.5th intensity percentile. A 3-D image with a
    trailing channel axis of 1, 3 or 4 is reduced to its mean over channels.
    """
    plt = _pyplot()
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    shown = list(images)[:16]
    n = len(shown)
    columns = min(4, max(1, n))
    rows = max(1, -(-n // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for index, axis in enumerate(axes.ravel()):
        axis.set_xticks([])
        axis.set_yticks([])
        if index >= n:
            axis.axis("off")
            continue
        picture = np.asarray(shown[index], dtype=np.float64)
        if picture.ndim == 3 and picture.shape[-1] in (1, 3, 4):
            picture = picture.mean(axis=-1)
        if picture.ndim != 2:
            raise ValueError(f"image {index} has shape {picture.shape}; expected 2-D")
        finite = picture[np.isfinite(picture)]
        low, high = np.percentile(finite, (1, 99.5)) if finite.size else (0.0, 1.0)
        if high <= low:
            high = low + 1.0
        axis.imshow(picture, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
        axis.set_title(captions[index], fontsize=7)
    suffix = f" (first 16 of {len(images)})" if len(images) > 16 else f" (n={n})"
    figure.suptitle(title + suffix, fontsize=9)
    figure.tight_layout()
    return _save(figure, path)
