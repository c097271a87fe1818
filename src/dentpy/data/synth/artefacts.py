"""CBCT artefacts applied to the gray values only; labels are never passed in here.

The scanner's rotation axis is the grid's third axis (K, world z), so rings, cupping, metal
streaks and the field-of-view cylinder are all drawn in axial (I, J) planes around one axis.
Every parameter is drawn from the caller's generator in a fixed order, so a seed gives the
same artefacts byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

Arr = np.ndarray


@dataclass(frozen=True)
class MetalSource:
    """A metal restoration: where streaks radiate from (voxel units) and which slices."""

    centre_ij: tuple[float, float]
    k_range: tuple[int, int]


@dataclass(frozen=True)
class FieldOfView:
    """The reconstruction cylinder: axis (voxel units, I and J) and radius (mm)."""

    centre_ij: tuple[float, float]
    radius_mm: float


def field_of_view(footprint: Arr, spacing_mm: float, margin_mm: float) -> FieldOfView:
    """Smallest axis-centred cylinder that keeps every labelled voxel (footprint: (I, J))."""
    ii, jj = np.nonzero(footprint)
    if ii.size == 0:
        centre = ((footprint.shape[0] - 1) / 2, (footprint.shape[1] - 1) / 2)
        return FieldOfView(centre, float(max(footprint.shape)) * spacing_mm)
    centre = ((ii.min() + ii.max()) / 2, (jj.min() + jj.max()) / 2)
    reach = np.sqrt((ii - centre[0]) ** 2 + (jj - centre[1]) ** 2).max() * spacing_mm
    return FieldOfView((float(centre[0]), float(centre[1])), float(reach + margin_mm))


def _radius_mm(shape: tuple[int, ...], spacing_mm: float, centre: tuple[float, float]) -> Arr:
    i = (np.arange(shape[0], dtype=np.float32) - centre[0])[:, None]
    j = (np.arange(shape[1], dtype=np.float32) - centre[1])[None, :]
    return np.sqrt(i * i + j * j) * np.float32(spacing_mm)


def metal_streaks(
    shape: tuple[int, ...],
    spacing_mm: float,
    metal: Sequence[MetalSource],
    rng: np.random.Generator,
) -> Arr:
    """Bright/dark lines through each restoration plus a dark halo, in its axial slices."""
    out = np.zeros(shape, dtype=np.float32)
    k = np.arange(shape[2], dtype=np.float32)
    for source in metal:
        n_lines = int(rng.integers(5, 11))
        angles = rng.uniform(0.0, np.pi, n_lines)
        amps = rng.normal(0.0, 1.0, n_lines) * rng.uniform(300.0, 800.0)
        width = rng.uniform(0.5, 1.0)
        halo = rng.uniform(150.0, 400.0)
        di = ((np.arange(shape[0]) - source.centre_ij[0]) * spacing_mm)[:, None]
        dj = ((np.arange(shape[1]) - source.centre_ij[1]) * spacing_mm)[None, :]
        r = np.sqrt(di * di + dj * dj)
        pattern = -halo * np.exp(-0.5 * (r / 4.0) ** 2)
        for angle, amp in zip(angles, amps, strict=True):
            perp = -np.sin(angle) * di + np.cos(angle) * dj
            pattern = pattern + amp * np.exp(-0.5 * (perp / width) ** 2) * np.exp(-r / 25.0)
        # Streaks start at the metal's edge: the restoration itself keeps its value.
        pattern = pattern * (1.0 - np.exp(-0.5 * (r / 2.5) ** 2))
        k0, k1 = source.k_range
        beyond = np.maximum(np.maximum(k0 - k, k - k1), 0.0) * spacing_mm
        z_profile = np.exp(-0.5 * (beyond / 1.5) ** 2)
        out += pattern.astype(np.float32)[:, :, None] * z_profile[None, None, :]
    return out


def apply_artefacts(
    image: Arr,
    spacing_mm: float,
    footprint: Arr,
    metal: Sequence[MetalSource],
    rng: np.random.Generator,
    air: float = -1000.0,
) -> Arr:
    """Streaks, cupping, rings, blur, correlated noise, gray drift and FOV truncation."""
    img = image.astype(np.float32, copy=True)
    shape = img.shape
    fov = field_of_view(footprint, spacing_mm, rng.uniform(2.0, 5.0))
    radius = _radius_mm(shape, spacing_mm, fov.centre_ij)
    rel = np.minimum(radius / fov.radius_mm, 1.0)

    img += metal_streaks(shape, spacing_mm, metal, rng)

    # Cupping: beam hardening lowers attenuation toward the centre of the cylinder.
    cup = rng.uniform(0.0, 0.08)
    gain = (1.0 - cup * (1.0 - rel * rel)).astype(np.float32)
    img = (img - air) * gain[:, :, None] + air

    # Rings: a miscalibrated detector element draws a circle in every axial slice.
    if rng.random() < 0.35:
        rings = np.zeros(radius.shape, dtype=np.float32)
        for _ in range(int(rng.integers(2, 6))):
            r0, amp, width = (
                rng.uniform(3.0, fov.radius_mm),
                rng.uniform(-100, 100),
                rng.uniform(0.4, 0.8),
            )
            rings += (amp * np.exp(-0.5 * ((radius - r0) / width) ** 2)).astype(np.float32)
        img += rings[:, :, None]

    # Point spread, then noise that is partly white and partly spatially correlated.
    img = gaussian_filter(img, rng.uniform(0.25, 0.5) / spacing_mm)
    white = rng.uniform(10.0, 35.0)
    corr_std, corr_sigma = rng.uniform(20.0, 60.0), rng.uniform(0.6, 1.2) / spacing_mm
    img += rng.standard_normal(shape, dtype=np.float32) * np.float32(white)
    corr = gaussian_filter(rng.standard_normal(shape, dtype=np.float32), corr_sigma)
    img += corr * np.float32(corr_std / max(float(corr.std()), 1e-6))

    # Gray values are not calibrated HU: scale and offset drift per scan.
    scale, offset = rng.uniform(0.85, 1.15), rng.uniform(-150.0, 150.0)
    img = img * np.float32(scale) + np.float32(offset)

    # Outside the reconstruction cylinder the scanner writes one constant value.
    outside = radius > fov.radius_mm
    img[outside, :] = np.float32(air * scale + offset)
    return img
