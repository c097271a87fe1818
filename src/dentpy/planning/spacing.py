"""Target spacing from the training cases' spacings and shapes (nnU-Net's rule).

The median spacing per axis, except for strongly anisotropic data (thick-slice CT: e.g.
0.4 x 0.4 x 2.5 mm): resampling every case to the median slice thickness would interpolate
most cases' thin slices away or, for the thicker ones, invent slices that carry no
information. nnU-Net's answer, kept here: when the coarsest axis is more than 3x coarser
than every other axis *and* has fewer than a third of their voxels, that axis takes the
10th percentile of its spacings (finer than the median, but never finer than the other
axes). Dental CBCT is isotropic, so the rule normally changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ANISOTROPY_RATIO = 3.0
ANISOTROPIC_PERCENTILE = 10.0


@dataclass(frozen=True)
class SpacingChoice:
    mm: tuple[float, float, float]
    rule: str


def choose_target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> SpacingChoice:
    """`spacings` (mm) and `shapes` (voxels): one row per training case, canonical axes."""
    spacings = np.asarray(spacings, dtype=np.float64).reshape(-1, 3)
    shapes = np.asarray(shapes, dtype=np.float64).reshape(-1, 3)
    target = np.median(spacings, axis=0)
    sizes = np.median(shapes, axis=0)
    coarse = int(np.argmax(target))
    others = [a for a in range(3) if a != coarse]
    finest_other = float(max(target[a] for a in others))
    thick_slices = target[coarse] > ANISOTROPY_RATIO * finest_other
    few_slices = sizes[coarse] * ANISOTROPY_RATIO < min(sizes[a] for a in others)
    rounded = _rounded(target)
    if not (thick_slices and few_slices):
        return SpacingChoice(rounded, f"median training spacing {list(rounded)} mm")
    percentile = float(np.percentile(spacings[:, coarse], ANISOTROPIC_PERCENTILE))
    target[coarse] = max(percentile, finest_other)
    chosen = _rounded(target)
    return SpacingChoice(
        chosen,
        f"anisotropic data: median spacing {list(rounded)} mm, axis {coarse} more than "
        f"{ANISOTROPY_RATIO:g}x coarser with fewer than 1/{ANISOTROPY_RATIO:g} of the voxels, "
        f"so it takes the {ANISOTROPIC_PERCENTILE:g}th percentile of its spacings "
        f"({chosen[coarse]} mm)",
    )


def _rounded(values: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(round(float(v), 4)) for v in values)  # type: ignore[return-value]
