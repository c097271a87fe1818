"""Volumes per label and per connected instance (DESIGN.md §4).

Volume = voxel count x voxel volume in mm³. For a file, the voxel volume is |det| of the
affine's 3x3 part, which is right for rotated and sheared grids too (the product of the
spacings is only right for orthogonal ones). Background (label 0) is never reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import numpy as np

if TYPE_CHECKING:
    from dentpy.data.volume import LabelMap

# A 2D array is measured as a single slice (I, J, 1); these 2D connectivities map onto the
# 3D ones that behave the same on one slice.
_CONNECTIVITY_2D = {4: 6, 8: 26, 6: 6, 18: 26, 26: 26}


@dataclass(frozen=True)
class LabelVolume:
    """One label (instance None) or one connected instance of it (1-based, largest first).

    centroid_mm: mean voxel position in mm; world RAS coordinates when measured from a
    file (its affine), otherwise index x spacing from voxel (0, 0, 0).
    """

    label: int
    voxels: int
    volume_mm3: float
    instance: int | None = None
    centroid_mm: tuple[float, ...] | None = None


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must be 2D or 3D, got shape {labels.shape}")
    if labels.dtype == np.bool_:
        return labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer array, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, found {labels.min()}")
    return labels


def _statistics(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, voxel counts, centroids in index units) of each value present in `ids`."""
    import cc3d

    if int(ids.max(initial=0)) >= ids.size:
        # cc3d.statistics indexes its tables by value; remap sparse huge ids to 0..n-1.
        values, inverse = np.unique(ids, return_inverse=True)
        stats = cc3d.statistics(
            inverse.reshape(ids.shape).astype(np.uint32), no_slice_conversion=True
        )
    else:
        stats = cc3d.statistics(ids, no_slice_conversion=True)
        values = np.arange(len(stats["voxel_counts"]))
    counts = np.asarray(stats["voxel_counts"], dtype=np.int64)
    present = counts > 0
    return values[present], counts[present], np.asarray(stats["centroids"])[present]


def _measure(
    labels: np.ndarray,
    voxel_mm3: float,
    affine: np.ndarray,
    instances: bool,
    connectivity: int,
) -> list[LabelVolume]:
    import cc3d

    labels = _check_labels(labels)
    ndim = labels.ndim
    if ndim == 2:
        if connectivity not in _CONNECTIVITY_2D:
            raise ValueError(f"connectivity for 2D labels must be 4 or 8, got {connectivity}")
        connectivity = _CONNECTIVITY_2D[connectivity]
        labels = labels[..., None]
    elif connectivity not in (6, 18, 26):
        raise ValueError(f"connectivity for 3D labels must be 6, 18 or 26, got {connectivity}")
    if labels.size == 0:
        return []

    def centroid_mm(index_centroid: np.ndarray) -> tuple[float, ...]:
        world = affine[:3, :3] @ index_centroid + affine[:3, 3]
        return tuple(float(c) for c in world[:ndim])

    if not instances:
        values, counts, centroids = _statistics(labels)
        return [
            LabelVolume(int(v), int(n), float(n * voxel_mm3), None, centroid_mm(c))
            for v, n, c in zip(values, counts, centroids, strict=True)
            if v != 0
        ]

    # Multi-label connected components: voxels join only neighbours of the same label.
    components = cc3d.connected_components(
        labels, connectivity=cast(Literal[6, 18, 26], connectivity)
    )
    comp_ids, counts, centroids = _statistics(components)
    owner = np.zeros(int(components.max(initial=0)) + 1, dtype=np.int64)
    owner[components.ravel()] = labels.ravel()
    comp_labels = owner[comp_ids]
    # By label, then largest first; equal sizes keep scan order so numbering is reproducible.
    order = np.lexsort((comp_ids, -counts, comp_labels))
    result: list[LabelVolume] = []
    rank, previous = 0, -1
    for i in order:
        label = int(comp_labels[i])
        if label == 0:
            continue
        rank = rank + 1 if label == previous else 1
        previous = label
        n = int(counts[i])
        result.append(LabelVolume(label, n, n * voxel_mm3, rank, centroid_mm(centroids[i])))
    return result


def label_volumes(
    labels: np.ndarray,
    spacing_mm: Sequence[float],
    instances: bool = False,
    connectivity: int = 26,
) -> list[LabelVolume]:
    """Volume of every non-zero label, sorted by label; with `instances`, one entry per
    connected component of each label (numbered 1.. largest first).

    Voxel volume = product of `spacing_mm` (one value per array axis). `connectivity`:
    6/18/26 in 3D, 4/8 in 2D (26, the default, means 8 in 2D).

    >>> labels = np.zeros((4, 4, 4), dtype=np.uint8); labels[:2, :2, :2] = 3
    >>> label_volumes(labels, (0.5, 0.5, 0.5))[0].volume_mm3
    1.0
    """
    labels = np.asarray(labels)
    spacing = [float(s) for s in spacing_mm]
    if len(spacing) != labels.ndim or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"need one positive spacing per axis of {labels.shape}, got {spacing}")
    affine = np.diag([*spacing, *([1.0] * (4 - len(spacing)))])
    return _measure(labels, math.prod(spacing), affine, instances, connectivity)


def volumes_of_file(
    path: str | Path, instances: bool = False, connectivity: int = 26
) -> list[LabelVolume]:
    """label_volumes of a label file, using the file's own geometry.

    Voxel volume is |det| of the affine (`LabelMap.voxel_volume_mm3`); centroids are in
    world RAS millimetres.
    """
    from dentpy.data.io import read_label

    return volumes_of_map(read_label(path), instances, connectivity)


def volumes_of_map(
    label_map: LabelMap, instances: bool = False, connectivity: int = 26
) -> list[LabelVolume]:
    """label_volumes of a label map already read, using its own geometry."""
    return _measure(
        label_map.array, label_map.voxel_volume_mm3, label_map.affine, instances, connectivity
    )
