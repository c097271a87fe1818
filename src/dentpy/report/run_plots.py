"""Small matplotlib figures for the HTML report, returned as PNG bytes (Agg backend).

Training curves, per-case distributions (box + every case as a dot, so a mean over three
cases never hides that there are three) and predicted-vs-true volume plots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dentpy.report.html_page import figure_png

DPI = 72
MODEL_COLOUR = "#0b5cad"
BASELINE_COLOUR = "#b0641a"


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _column(rows: Sequence[Mapping[str, str]], key: str) -> np.ndarray:
    values = []
    for row in rows:
        try:
            values.append(float(row.get(key) or "nan"))
        except ValueError:
            values.append(float("nan"))
    return np.asarray(values, dtype=float)


def training_curves(rows: Sequence[Mapping[str, str]]) -> bytes:
    """Loss, validation metrics and learning rate against iteration, three panels."""
    plt = pyplot()
    iterations = _column(rows, "iteration")
    keys = list(rows[0]) if rows else []
    val_keys = [k for k in keys if k.startswith("val_") and k != "val_score"]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    loss = _column(rows, "train_loss")
    axes[0].plot(iterations, loss, marker="o", ms=3, color=MODEL_COLOUR)
    axes[0].set_title("training loss")
    if (
        np.nanmin(loss, initial=np.inf) > 0
        and np.nanmax(loss, initial=0) / max(np.nanmin(loss, initial=1.0), 1e-12) > 20
    ):
        axes[0].set_yscale("log")
    # Many per-class curves (e.g. 32 teeth) are drawn thin and unlabelled; the selection
    # score stays the one bold, labelled line.
    many = len(val_keys) > 6
    for key in val_keys:
        axes[1].plot(
            iterations,
            _column(rows, key),
            lw=0.7 if many else 1.4,
            alpha=0.35 if many else 1.0,
            color="gray" if many else None,
            label=None if many else key.removeprefix("val_"),
            marker=None if many else "o",
            ms=3,
        )
    if "val_score" in keys:
        axes[1].plot(
            iterations,
            _column(rows, "val_score"),
            color="black",
            lw=2,
            marker="o",
            ms=3,
            label="selection score",
        )
    axes[1].set_title(
        "validation" + (f" ({len(val_keys)} per-class curves in gray)" if many else "")
    )
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=7, loc="best")
    axes[2].plot(iterations, _column(rows, "lr"), color="#555555")
    axes[2].set_title("learning rate")
    axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    for axis in axes:
        axis.set_xlabel("iteration")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure_png(figure, DPI)


def box_strip(
    groups: Sequence[str],
    series: Mapping[str, Sequence[Sequence[float]]],
    title: str,
    xlabel: str,
    limits: tuple[float, float] | None = None,
    marker: tuple[float, str] | None = None,
) -> bytes:
    """Horizontal box plots, one row per group, one box per series (model, baseline...),
    every value drawn as a jittered dot."""
    plt = pyplot()
    n_series = max(1, len(series))
    height = max(3.0, 0.32 * len(groups) * n_series + 1.6)
    figure, axis = plt.subplots(figsize=(8, min(height, 16)))
    rng = np.random.default_rng(0)
    colours = [MODEL_COLOUR, BASELINE_COLOUR, "#2f8f46", "#8e3fa3"]
    width = 0.8 / n_series
    for s, (name, values_per_group) in enumerate(series.items()):
        positions = [g - 0.4 + width * (s + 0.5) for g in range(len(groups))]
        data = [np.asarray(v, dtype=float) for v in values_per_group]
        data = [d[np.isfinite(d)] for d in data]
        shown = [(p, d) for p, d in zip(positions, data, strict=True) if d.size]
        if shown:
            axis.boxplot(
                [d for _, d in shown],
                positions=[p for p, _ in shown],
                orientation="horizontal",
                widths=width * 0.8,
                showfliers=False,
                medianprops={"color": colours[s % len(colours)]},
                boxprops={"color": colours[s % len(colours)]},
                whiskerprops={"color": colours[s % len(colours)]},
                capprops={"color": colours[s % len(colours)]},
            )
        for p, d in shown:
            jitter = rng.uniform(-width * 0.25, width * 0.25, d.size)
            axis.scatter(d, p + jitter, s=10, color=colours[s % len(colours)], alpha=0.6, lw=0)
        axis.scatter([], [], color=colours[s % len(colours)], label=name)
    axis.set_yticks(range(len(groups)))
    axis.set_yticklabels([_short(g) for g in groups], fontsize=8)
    axis.set_ylim(-0.6, len(groups) - 0.4)
    axis.invert_yaxis()
    if limits is not None:
        axis.set_xlim(*limits)
    if marker is not None:
        axis.axvline(marker[0], color="black", ls="--", lw=1, label=marker[1])
    axis.set_xlabel(xlabel)
    axis.set_title(title, fontsize=10, loc="left")
    axis.grid(axis="x", alpha=0.3)
    if len(series) > 1 or marker is not None:
        # Above the axes, right of the title: a legend inside would cover the dots.
        axis.legend(
            fontsize=8,
            loc="lower right",
            bbox_to_anchor=(1.0, 1.0),
            ncol=4,
            frameon=False,
            borderaxespad=0.2,
        )
    figure.tight_layout()
    return figure_png(figure, DPI)


def _short(label: str, width: int = 34) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def volume_agreement(
    true_mm3: Sequence[float], pred_mm3: Sequence[float], classes: Sequence[str]
) -> bytes:
    """Left: predicted vs true volume with the identity line. Right: Bland-Altman
    (difference against mean, with the mean difference and ±1.96 SD limits)."""
    plt = pyplot()
    true = np.asarray(true_mm3, dtype=float)
    pred = np.asarray(pred_mm3, dtype=float)
    names = sorted(set(classes))
    colour_of = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}
    colours = [colour_of[c] for c in classes]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    axes[0].scatter(true, pred, c=colours, s=18)
    top = float(max(np.max(true, initial=0), np.max(pred, initial=0), 1.0)) * 1.05
    axes[0].plot([0, top], [0, top], color="gray", ls="--", lw=1, label="predicted = true")
    axes[0].set_xlim(0, top)
    axes[0].set_ylim(0, top)
    axes[0].set_xlabel("true volume (mm³)")
    axes[0].set_ylabel("predicted volume (mm³)")
    axes[0].set_title("predicted vs true volume, one dot per case and class", fontsize=10)
    mean = (true + pred) / 2
    difference = pred - true
    axes[1].scatter(mean, difference, c=colours, s=18)
    if difference.size:
        bias = float(difference.mean())
        sd = float(difference.std(ddof=1)) if difference.size > 1 else 0.0
        axes[1].axhline(bias, color="black", lw=1, label=f"mean difference {bias:.0f} mm³")
        if sd > 0:
            for limit in (bias - 1.96 * sd, bias + 1.96 * sd):
                axes[1].axhline(limit, color="gray", ls=":", lw=1)
            axes[1].plot([], [], color="gray", ls=":", label="mean ± 1.96 SD")
    axes[1].axhline(0, color="gray", lw=0.5)
    axes[1].set_xlabel("mean of predicted and true (mm³)")
    axes[1].set_ylabel("predicted − true (mm³)")
    axes[1].set_title("Bland-Altman", fontsize=10)
    axes[1].legend(fontsize=8, loc="best")
    if len(names) <= 10:
        handles = [
            plt.Line2D([], [], marker="o", ls="", color=colour_of[n], label=_short(n, 24))
            for n in names
        ]
        axes[0].legend(handles=handles, fontsize=7, loc="upper left")
    for axis in axes:
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure_png(figure, DPI)
