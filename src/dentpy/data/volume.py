"""Arrays that never travel without their geometry.

A `Volume` is a voxel array plus the 4x4 affine that maps voxel indices (i, j, k) to
world millimetres in RAS (the NIfTI convention). Arrays keep the file's own voxel order:
shape (I, J, K) for 3D. Spacing, origin and direction are all derived from the affine, so
they can never disagree with it.

Whether a volume is an intensity image or a label map is carried by its type: a
`LabelMap` is resampled with nearest neighbour and never intensity-transformed because it
is a `LabelMap`, not because a caller remembered a flag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Volume:
    """A voxel array (I, J, K) with its voxel -> RAS millimetre affine (4, 4)."""

    array: np.ndarray
    affine: np.ndarray

    def __post_init__(self) -> None:
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {affine.shape}")
        object.__setattr__(self, "affine", affine)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along each array axis, in millimetres."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(norms[0]), float(norms[1]), float(norms[2]))

    @property
    def origin_mm(self) -> tuple[float, float, float]:
        """World (RAS) position of voxel (0, 0, 0)."""
        o = self.affine[:3, 3]
        return (float(o[0]), float(o[1]), float(o[2]))

    @property
    def direction(self) -> np.ndarray:
        """Unit column vectors (3, 3): the world direction of each array axis."""
        return self.affine[:3, :3] / np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    def with_array(self, array: np.ndarray) -> Volume:
        """Same geometry, new voxels (same type as self)."""
        return type(self)(array=array, affine=self.affine)

    def same_geometry(self, other: Volume, atol_mm: float = 1e-3) -> bool:
        return self.shape[:3] == other.shape[:3] and bool(
            np.allclose(self.affine, other.affine, atol=atol_mm)
        )


class IntensityImage(Volume):
    """Gray values (CBCT/CT/X-ray). Intensity transforms and linear resampling apply."""


class LabelMap(Volume):
    """Integer labels. Nearest-neighbour resampling only; never intensity-transformed."""


def spacing_affine(
    spacing_mm: tuple[float, float, float], origin_mm: tuple[float, float, float] = (0, 0, 0)
) -> np.ndarray:
    """An axis-aligned RAS affine for the given spacing and origin."""
    affine = np.diag([*spacing_mm, 1.0]).astype(np.float64)
    affine[:3, 3] = origin_mm
    return affine
