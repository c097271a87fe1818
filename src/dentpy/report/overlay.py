"""Overlay PNGs: a segmentation drawn on its scan, through the slices where it matters.

For each class the picture shows the slice (axial, coronal and sagittal, in canonical RAS order so
the patient's left is on the picture's right, radiological convention) that contains the
most voxels of that class. Written with matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dentpy.data.volume import IntensityImage, LabelMap
from dentpy.preprocess import orientation_of, to_canonical

COLORS = ["#e6194b", "#ffe119", "#4363d8", "#3cb44b", "#f58231", "#911eb4", "#46f0f0"]


def save_overlay(
    image: IntensityImage, labels: LabelMap, class_names: Sequence[str], path: str | Path
) -> Path:
    """Write a PNG with one row per class present: axial, coronal and sagittal slices
    through the class's largest cross-section."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    orientation = orientation_of(image)
    gray = to_canonical(np.asarray(image.array, dtype=np.float32), orientation)
    seg = to_canonical(np.asarray(labels.array), orientation)
    low, high = np.percentile(gray, (1, 99.5))
    spacing = orientation.canonical_spacing_mm
    present = [(i, n) for i, n in enumerate(class_names, start=1) if (seg == i).any()]
    rows = max(1, len(present))
    figure, axes = plt.subplots(rows, 3, figsize=(14, 4 * rows), squeeze=False)
    colormap = ListedColormap(["none", *COLORS[: len(class_names)]])
    for row, (index, name) in enumerate(present or [(0, "no structure predicted")]):
        mask = seg == index
        k = int(mask.sum(axis=(0, 1)).argmax()) if index else gray.shape[2] // 2
        j = int(mask.sum(axis=(0, 2)).argmax()) if index else gray.shape[1] // 2
        i = int(mask.sum(axis=(1, 2)).argmax()) if index else gray.shape[0] // 2
        views = (
            (gray[:, :, k], seg[:, :, k], f"{name}: axial slice {k}", spacing[1] / spacing[0]),
            (gray[:, j, :], seg[:, j, :], f"{name}: coronal slice {j}", spacing[2] / spacing[0]),
            # Sagittal: anterior on the left, superior up.
            (gray[i, :, :], seg[i, :, :], f"{name}: sagittal slice {i}", spacing[2] / spacing[1]),
        )
        for column, (picture, overlay, title, aspect) in enumerate(views):
            axis = axes[row][column]
            # Transposed and x-flipped: patient's right on the picture's left (radiological).
            axis.imshow(
                picture.T[:, ::-1], cmap="gray", vmin=low, vmax=high, origin="lower", aspect=aspect
            )
            axis.imshow(
                np.ma.masked_equal(overlay.T[:, ::-1], 0),
                cmap=colormap,
                vmin=0,
                vmax=len(class_names),
                alpha=0.55,
                origin="lower",
                aspect=aspect,
                interpolation="nearest",
            )
            axis.set_title(title)
            axis.set_xticks([])
            axis.set_yticks([])
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=COLORS[i - 1]) for i, _ in enumerate(class_names, start=1)
    ]
    figure.legend(handles, list(class_names), loc="lower center", ncol=len(class_names))
    figure.suptitle("patient's right on the left (radiological view)", fontsize=9)
    figure.tight_layout(rect=(0, 0.04, 1, 0.98))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
