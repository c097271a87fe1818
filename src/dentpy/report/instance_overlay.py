"""Overlay PNG of an FDI instance prediction: the arch seen from above, each tooth in its
own colour with its number written on it (and the pulps likewise, when predicted).

A number on the wrong tooth is what a reader must be able to spot at a glance, so the
picture is a projection of the whole arch rather than one slice per structure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dentpy.data.volume import IntensityImage, LabelMap
from dentpy.preprocess import orientation_of, to_canonical
from dentpy.tasks.instance import family_of, tooth_of


def _tooth_numbers(labels: np.ndarray, family: str) -> np.ndarray:
    """Label map -> FDI number per voxel for one family (0 elsewhere)."""
    top = int(labels.max(initial=0))
    lookup = np.zeros(top + 1, dtype=np.int64)
    for value in np.unique(labels):
        value = int(value)
        if value and family_of(value) == family:
            lookup[value] = tooth_of(value) or 0
    return lookup[labels]


def save_instance_overlay(image: IntensityImage, labels: LabelMap, path: str | Path) -> Path:
    """Write a PNG with one axial projection per predicted family (teeth, pulp)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    orientation = orientation_of(image)
    gray = to_canonical(np.asarray(image.array, dtype=np.float32), orientation)
    seg = to_canonical(np.asarray(labels.array), orientation)
    spacing = orientation.canonical_spacing_mm
    families = [f for f in ("teeth", "pulp") if _tooth_numbers(seg, f).any()]
    figure, axes = plt.subplots(
        1, max(1, len(families)), figsize=(7 * max(1, len(families)), 6), squeeze=False
    )
    colours = plt.get_cmap("tab20")
    for column, family in enumerate(families or ["teeth"]):
        axis = axes[0][column]
        numbers = _tooth_numbers(seg, family)
        slab = np.flatnonzero(numbers.any(axis=(0, 1)))
        k0, k1 = (slab[0], slab[-1] + 1) if slab.size else (0, gray.shape[2])
        # Maximum intensity over the teeth's height: crowns and roots both show.
        background = gray[:, :, k0:k1].max(axis=2)
        low, high = np.percentile(background, (1, 99.5))
        projection = numbers.max(axis=2)
        rgba = np.zeros((*projection.shape, 4))
        for fdi in np.unique(projection[projection > 0]):
            # One hue per position (incisor ... third molar), light/dark by side; tab20's
            # grey pair is skipped so no tooth looks unlabelled.
            hue = (0, 2, 4, 6, 8, 10, 12, 16)[(fdi % 10) - 1]
            colour_index = hue + (1 if (fdi // 10) in (2, 3, 6, 7) else 0)
            rgba[projection == fdi] = (*colours(colour_index)[:3], 0.6)
        aspect = spacing[1] / spacing[0]
        # Transposed and x-flipped: patient's right on the picture's left (radiological).
        axis.imshow(
            background.T[:, ::-1], cmap="gray", vmin=low, vmax=high, origin="lower", aspect=aspect
        )
        axis.imshow(
            rgba.transpose(1, 0, 2)[:, ::-1], origin="lower", aspect=aspect, interpolation="nearest"
        )
        width = projection.shape[0]
        for fdi in np.unique(numbers[numbers > 0]):
            where = np.argwhere(numbers == fdi)
            i, j = where[:, 0].mean(), where[:, 1].mean()
            axis.text(
                width - 1 - i,
                j,
                str(fdi),
                ha="center",
                va="center",
                fontsize=9,
                fontweight="bold",
                color="white",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0},
            )
        title = "teeth (FDI numbers)" if family == "teeth" else "pulps (number of their tooth)"
        axis.set_title(title if families else "no tooth predicted")
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle("seen from above; patient's right on the left (radiological view)", fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
