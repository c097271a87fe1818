"""Pictures of 2D datasets: a grid of images with their boxes or class labels drawn on.

Images are shown as stored (display orientation, EXIF applied), gray values windowed to
their 1st-99.5th percentile so 16-bit X-rays are visible. Titles carry the case pseudonym,
never the file name (file names often hold patient names).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dentpy.data.samples2d import ImageSample
from dentpy.report.overlay import COLORS


def save_montage(
    samples: Sequence[ImageSample], classes: Sequence[str], path: Path, title: str
) -> Path:
    """One panel per sample (at most a few dozen are sensible), boxes coloured by class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    count = max(1, len(samples))
    columns = min(4, count)
    rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.4 * rows), squeeze=False)
    color_of = {name: COLORS[i % len(COLORS)] for i, name in enumerate(classes)}
    for axis in axes.ravel():
        axis.axis("off")
    for axis, sample in zip(axes.ravel(), samples, strict=False):
        pixels = sample.image.array
        if pixels.ndim == 2:
            low, high = np.percentile(pixels, (1, 99.5))
            axis.imshow(pixels, cmap="gray", vmin=low, vmax=max(high, low + 1e-6))
        else:
            axis.imshow(pixels)
        caption = sample.case_id
        if sample.class_label is not None:
            caption += f"\nclass: {sample.class_label}"
        for box in sample.boxes or ():
            color = color_of.get(box.label, "#ffffff")
            axis.add_patch(
                Rectangle(
                    (box.x_min, box.y_min), box.width, box.height, fill=False, lw=1.2, ec=color
                )
            )
            tag = box.label if box.fdi is None else f"{box.fdi} {box.label}"
            axis.text(box.x_min, box.y_min, tag, color=color, fontsize=6, va="bottom")
        if sample.boxes is not None:
            caption += f"\n{len(sample.boxes)} box(es)"
        axis.set_title(caption, fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
