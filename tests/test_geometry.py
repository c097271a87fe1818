"""The same scan stored in RAS, LPS or permuted-axis order gives the same prediction,
written back with the input's own affine (RELIABILITY A6)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from dentpy.data.io import read_image, read_label, write_volume
from dentpy.data.volume import IntensityImage
from dentpy.inference import predict_volume
from dentpy.models import build_model
from dentpy.preprocess import PreprocessPlan, from_canonical, orientation_of, to_canonical
from dentpy.spec import Model


def _reoriented(
    array: np.ndarray, affine: np.ndarray, perm: tuple[int, ...], flips: tuple[bool, ...]
):
    """The same world data with voxel axes permuted and flipped, and the matching affine."""
    out = np.transpose(array, perm)
    new_affine = affine[:, [*perm, 3]].copy()
    for axis, flip in enumerate(flips):
        if flip:
            out = np.flip(out, axis)
            # voxel i -> n-1-i: origin moves to the far end along that axis
            new_affine[:3, 3] += new_affine[:3, axis] * (out.shape[axis] - 1)
            new_affine[:3, axis] *= -1
    return np.ascontiguousarray(out), new_affine


def _world_to_reference(
    pred: np.ndarray, perm: tuple[int, ...], flips: tuple[bool, ...]
) -> np.ndarray:
    out = pred
    for axis, flip in enumerate(flips):
        if flip:
            out = np.flip(out, axis)
    return np.transpose(out, np.argsort(perm))


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model(Model(channels=[8, 16]), in_channels=1, out_channels=3)
    return net.eval()


CASES = [
    ((0, 1, 2), (False, False, False)),
    ((0, 1, 2), (True, True, False)),  # RAS -> LPS
    ((2, 0, 1), (False, True, False)),
    ((1, 2, 0), (True, False, True)),
]


@pytest.mark.parametrize(("perm", "flips"), CASES)
def test_reoriented_input_gives_same_prediction_in_its_own_geometry(
    tmp_path: Path, model: torch.nn.Module, perm: tuple[int, ...], flips: tuple[bool, ...]
) -> None:
    rng = np.random.default_rng(0)
    array = rng.normal(size=(20, 18, 14)).astype(np.float32)
    affine = np.diag([0.5, 0.6, 0.7, 1.0])
    affine[:3, 3] = (-4.0, 3.0, 10.0)
    plan = PreprocessPlan(target_spacing_mm=(0.8, 0.8, 0.8))
    reference = predict_volume(
        model, IntensityImage(array, affine), plan, (16, 16, 16), torch.device("cpu")
    )

    moved, moved_affine = _reoriented(array, affine, perm, flips)
    path = write_volume(IntensityImage(moved, moved_affine), tmp_path / "scan.nii.gz")
    image = read_image(path)
    prediction = predict_volume(model, image, plan, (16, 16, 16), torch.device("cpu"))
    out = write_volume(prediction, tmp_path / "scan_seg.nii.gz")

    written = read_label(out)
    assert np.allclose(written.affine, image.affine, atol=1e-5)
    assert written.shape == image.shape
    assert np.array_equal(_world_to_reference(written.array, perm, flips), reference.array)


def test_canonical_round_trip_is_exact() -> None:
    array = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    affine = np.array([[0, -0.3, 0, 5], [0, 0, 0.5, 6], [-0.4, 0, 0, 7], [0, 0, 0, 1.0]])
    orientation = orientation_of(IntensityImage(array, affine))
    assert orientation.canonical_spacing_mm == pytest.approx((0.3, 0.5, 0.4))
    assert np.array_equal(from_canonical(to_canonical(array, orientation), orientation), array)
