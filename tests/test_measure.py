"""Volumes per label and per instance, from arrays and from files with real geometry."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from dentpy.measure import LabelVolume, label_volumes, volumes_of_file


def ball(shape: tuple[int, ...], spacing: tuple[float, ...], radius_mm: float) -> np.ndarray:
    """Voxels whose centre lies within radius_mm of the array centre."""
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing, strict=True)]
    grids = np.meshgrid(*axes, indexing="ij")
    return sum(g**2 for g in grids) <= radius_mm**2


@pytest.mark.parametrize("spacing", [(0.3, 0.3, 0.3), (0.3, 0.3, 0.4)])
def test_sphere_volume_within_one_percent(spacing: tuple[float, float, float]) -> None:
    radius = 4.0
    shape = tuple(math.ceil(2 * radius / s) + 3 for s in spacing)
    labels = ball(shape, spacing, radius).astype(np.uint8)
    (volume,) = label_volumes(labels, spacing)
    assert volume.label == 1 and volume.instance is None
    assert volume.volume_mm3 == pytest.approx(4 / 3 * math.pi * radius**3, rel=0.01)
    assert volume.volume_mm3 == pytest.approx(volume.voxels * math.prod(spacing))
    centre = tuple((n - 1) / 2 * s for n, s in zip(labels.shape, spacing, strict=True))
    assert volume.centroid_mm == pytest.approx(centre)


def test_instances_largest_first() -> None:
    labels = np.zeros((20, 20, 20), dtype=np.uint16)
    labels[1:3, 1:3, 1:3] = 1  # 8 voxels
    labels[10:13, 10:13, 10:13] = 1  # 27 voxels
    labels[15, 15, 15] = 7
    labels[16, 16, 16] = 7  # touches the previous voxel by a corner only
    spacing = (0.5, 0.5, 1.0)
    got = label_volumes(labels, spacing, instances=True)
    assert [(v.label, v.instance, v.voxels) for v in got] == [(1, 1, 27), (1, 2, 8), (7, 1, 2)]
    assert got[0].volume_mm3 == pytest.approx(27 * 0.25)
    assert got[0].centroid_mm == pytest.approx((11 * 0.5, 11 * 0.5, 11.0))
    faces_only = label_volumes(labels, spacing, instances=True, connectivity=6)
    assert [(v.label, v.instance, v.voxels) for v in faces_only][-2:] == [(7, 1, 1), (7, 2, 1)]
    # Touching components of different labels stay separate instances of their own label.
    labels[13, 10:13, 10:13] = 2
    got = label_volumes(labels, spacing, instances=True)
    assert [(v.label, v.voxels) for v in got if v.label in (1, 2)] == [(1, 27), (1, 8), (2, 9)]


def test_per_label_and_background_excluded() -> None:
    labels = np.zeros((6, 7), dtype=np.int32)
    labels[0:2, 0:3] = 3
    labels[4, 4] = 1
    got = label_volumes(labels, (0.2, 0.5))
    assert [(v.label, v.voxels) for v in got] == [(1, 1), (3, 6)]
    assert got[1].volume_mm3 == pytest.approx(6 * 0.1)
    assert len(got[1].centroid_mm or ()) == 2
    assert label_volumes(np.zeros((4, 4, 4), np.uint8), (1, 1, 1)) == []
    diagonal_pair = np.eye(3, dtype=np.uint8)
    assert len(label_volumes(diagonal_pair, (1, 1), instances=True)) == 1
    assert len(label_volumes(diagonal_pair, (1, 1), instances=True, connectivity=4)) == 3


def test_large_label_values() -> None:
    labels = np.zeros((3, 3, 3), dtype=np.int32)
    labels[0, 0, 0] = 1000  # above the voxel count: exercises the remapping path
    labels[2, 2, :] = 48
    got = label_volumes(labels, (1, 1, 1), instances=True)
    assert [(v.label, v.voxels, v.instance) for v in got] == [(48, 3, 1), (1000, 1, 1)]
    assert [(v.label, v.voxels) for v in label_volumes(labels, (1, 1, 1))] == [(48, 3), (1000, 1)]


def test_refuses_bad_labels() -> None:
    with pytest.raises(ValueError, match="integer"):
        label_volumes(np.full((3, 3, 3), 0.5), (1, 1, 1))
    with pytest.raises(ValueError, match=">= 0"):
        label_volumes(np.full((3, 3, 3), -1), (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        label_volumes(np.zeros((3, 3, 3), np.uint8), (1, 1))
    with pytest.raises(ValueError, match="connectivity"):
        label_volumes(np.zeros((3, 3, 3), np.uint8), (1, 1, 1), connectivity=8)


def _rotated_affine(spacing: tuple[float, float, float], flip: bool) -> np.ndarray:
    angle = math.radians(30)
    rotation = np.array(
        [
            [math.cos(angle), -math.sin(angle), 0.0],
            [math.sin(angle), math.cos(angle), 0.0],
            [0.0, 0.0, 1.0],
        ]
    )
    if flip:
        rotation[:, 0] *= -1  # negative determinant: volume must use |det|
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = (-12.0, 40.5, 7.25)
    return affine


@pytest.mark.parametrize("flip", [False, True])
def test_volumes_of_file_uses_affine_determinant(tmp_path: Path, flip: bool) -> None:
    spacing = (0.3, 0.5, 0.7)
    affine = _rotated_affine(spacing, flip)
    labels = np.zeros((10, 12, 8), dtype=np.uint8)
    labels[2:5, 3:7, 1:3] = 4  # 24 voxels
    labels[8, 10, 6] = 4
    path = tmp_path / "mask.nii.gz"
    nib.Nifti1Image(labels, affine).to_filename(str(path))

    voxel_mm3 = abs(np.linalg.det(affine[:3, :3]))
    assert voxel_mm3 == pytest.approx(0.105)
    (total,) = volumes_of_file(path)
    assert (total.label, total.voxels) == (4, 25)
    assert total.volume_mm3 == pytest.approx(25 * voxel_mm3)

    first, second = volumes_of_file(path, instances=True)
    assert (first.instance, first.voxels, second.instance, second.voxels) == (1, 24, 2, 1)
    world = affine @ np.array([8.0, 10.0, 6.0, 1.0])
    assert second.centroid_mm == pytest.approx(tuple(world[:3]))
    assert isinstance(first, LabelVolume)
