"""Truth against prediction on one scan: three orthogonal slices through the structure,
reference outlined in green, prediction filled in magenta, so a reader sees where they
part. Radiological view (patient's right on the picture's left), as in overlay.py."""

from __future__ import annotations

from typing import Any

import numpy as np

from dentpy.data.volume import IntensityImage
from dentpy.preprocess import orientation_of, to_canonical
from dentpy.report.html_page import figure_png
from dentpy.report.run_plots import pyplot

TRUTH_COLOUR = "#39ff14"
PREDICTION_COLOUR = "#ff00d4"


def truth_vs_prediction_png(
    image: IntensityImage,
    truth: np.ndarray,
    prediction: np.ndarray,
    title: str,
    dpi: int = 72,
) -> bytes:
    """One row of three panels (axial, coronal, sagittal) through the largest cross-section
    of the reference foreground (of the prediction when the reference is empty)."""
    plt = pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    orientation = orientation_of(image)
    gray = to_canonical(np.asarray(image.array, dtype=np.float32), orientation)
    true_mask = to_canonical(np.asarray(truth) > 0, orientation)
    pred_mask = to_canonical(np.asarray(prediction) > 0, orientation)
    anchor = true_mask if true_mask.any() else pred_mask
    low, high = np.percentile(gray, (1, 99.5))
    spacing = orientation.canonical_spacing_mm

    def best(axes: tuple[int, int]) -> int:
        if not anchor.any():
            return gray.shape[3 - sum(axes)] // 2
        return int(anchor.sum(axis=axes).argmax())

    k, j, i = best((0, 1)), best((0, 2)), best((1, 2))
    views = (
        ("axial", (slice(None), slice(None), k), k, spacing[1] / spacing[0]),
        ("coronal", (slice(None), j, slice(None)), j, spacing[2] / spacing[0]),
        ("sagittal", (i, slice(None), slice(None)), i, spacing[2] / spacing[1]),
    )
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.9))
    for axis, (name, cut, index, aspect) in zip(axes, views, strict=True):

        def show(array: np.ndarray, cut: tuple[Any, ...] = cut) -> np.ndarray:
            # Transposed and x-flipped: patient's right on the picture's left (radiological).
            return np.asarray(array[cut]).T[:, ::-1]

        axis.imshow(show(gray), cmap="gray", vmin=low, vmax=high, origin="lower", aspect=aspect)
        # The prediction is filled (a small or scattered prediction stays visible), the
        # reference outlined on top (where the two disagree shows at a glance).
        predicted_plane = show(pred_mask)
        axis.imshow(
            np.ma.masked_equal(predicted_plane.astype(np.uint8), 0),
            cmap=ListedColormap([PREDICTION_COLOUR]),
            alpha=0.35,
            origin="lower",
            aspect=aspect,
            interpolation="nearest",
        )
        plane = show(true_mask).astype(float)
        if plane.any() and plane.min() < 1:
            axis.contour(plane, levels=[0.5], colors=[TRUTH_COLOUR], linewidths=1.8)
        axis.set_title(f"{name} slice {index}", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    handles = [
        Line2D([], [], color=TRUTH_COLOUR, label="reference"),
        Patch(color=PREDICTION_COLOUR, alpha=0.35, label="prediction"),
    ]
    figure.legend(handles=handles, loc="lower center", ncol=2, fontsize=9)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0.07, 1, 0.95))
    return figure_png(figure, dpi)
