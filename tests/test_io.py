"""Reading and writing volumes keeps voxels and geometry; bad files get clear errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from nibabel.testing import data_path

from dentpy.data.io import read_image, read_label, write_volume
from dentpy.data.volume import IntensityImage, LabelMap
from dentpy.errors import InputDataError

NIBABEL_DATA = Path(str(data_path))


def oblique_affine() -> np.ndarray:
    """Anisotropic voxels (0.3, 0.45, 1.2 mm), rotated about two axes, off-origin."""
    a, b = np.deg2rad(17.0), np.deg2rad(-8.0)
    rot_z = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rot_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rot_z @ rot_x @ np.diag([0.3, 0.45, 1.2])
    affine[:3, 3] = (-12.5, 40.25, 7.0)
    return affine


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_round_trip_keeps_voxels_and_affine(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(1)
    image = IntensityImage(rng.normal(size=(9, 11, 13)).astype(np.float32), oblique_affine())
    label = LabelMap(rng.integers(0, 4, size=(9, 11, 13)).astype(np.uint8), oblique_affine())

    back = read_image(write_volume(image, tmp_path / f"image{suffix}"))
    back_label = read_label(write_volume(label, tmp_path / f"label{suffix}"))

    np.testing.assert_array_equal(back.array, image.array)
    np.testing.assert_allclose(back.affine, image.affine, atol=1e-5)
    np.testing.assert_array_equal(back_label.array, label.array)
    np.testing.assert_allclose(back_label.affine, label.affine, atol=1e-5)
    assert back.spacing_mm == pytest.approx((0.3, 0.45, 1.2), abs=1e-5)


def sitk_ras_affine(image: sitk.Image) -> np.ndarray:
    """SimpleITK's geometry (LPS) as a voxel -> RAS affine."""
    lps = np.eye(4)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    lps[:3, :3] = direction * np.array(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


@pytest.mark.parametrize("name", ["anatomical.nii", "standard.nii.gz", "reoriented_anat_moved.nii"])
def test_nibabel_test_files_agree_with_simpleitk(name: str) -> None:
    path = NIBABEL_DATA / name
    ours = read_image(path)
    theirs = sitk.ReadImage(str(path))

    np.testing.assert_allclose(ours.affine, sitk_ras_affine(theirs), atol=1e-4)
    np.testing.assert_array_equal(ours.array, sitk.GetArrayFromImage(theirs).transpose(2, 1, 0))


def test_nan_voxels_are_counted(tmp_path: Path) -> None:
    array = np.zeros((8, 8, 8), dtype=np.float32)
    array[0, 0, :3] = np.nan
    array[1, 1, 1] = np.inf
    nib.save(nib.Nifti1Image(array, np.eye(4)), tmp_path / "scan.nii.gz")

    with pytest.raises(InputDataError) as error:
        read_image(tmp_path / "scan.nii.gz")

    assert "scan.nii.gz: image contains 4 NaN or infinite voxels" in error.value.what
    assert error.value.found == "4 of 512 voxels are NaN/Inf"


def test_real_file_with_nan_voxels_is_refused() -> None:
    with pytest.raises(InputDataError) as error:
        read_image(NIBABEL_DATA / "resampled_anat_moved.nii")
    assert "153 NaN or infinite voxels" in error.value.what


def test_truncated_gzip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scan.nii.gz"
    array = np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32)
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(InputDataError) as error:
        read_image(path)

    assert error.value.what.startswith("scan.nii.gz: file cannot be read completely")
    assert error.value.expected == "a complete, uncorrupted volume file"


def test_corrupted_gzip_crc_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scan.nii.gz"
    raw = nib.Nifti1Image(np.ones((8, 8, 8), dtype=np.float32), np.eye(4)).to_bytes()
    data = bytearray(gzip.compress(raw, mtime=0))
    data[-8] ^= 0xFF  # the CRC32 of the uncompressed data sits in the gzip trailer
    path.write_bytes(bytes(data))

    with pytest.raises(InputDataError) as error:
        read_image(path)

    assert "file cannot be read completely" in error.value.what


def test_fractional_mask_is_refused(tmp_path: Path) -> None:
    mask = np.zeros((8, 8, 8), dtype=np.float32)
    mask[2:4, 2:4, 2:4] = 1.0
    mask[5, 5, 5] = 0.5
    nib.save(nib.Nifti1Image(mask, np.eye(4)), tmp_path / "mask.nii.gz")

    with pytest.raises(InputDataError) as error:
        read_label(tmp_path / "mask.nii.gz")

    assert error.value.what == "mask.nii.gz: label map holds non-integer values"
    assert error.value.found == "values such as 0.5"


def test_four_dimensional_volume_is_refused(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 2), np.float32), np.eye(4)), tmp_path / "t.nii")

    with pytest.raises(InputDataError) as error:
        read_image(tmp_path / "t.nii")

    assert error.value.what == "t.nii: expected a 3D volume"
    assert error.value.found == "4 dimensions, shape (8, 8, 8, 2)"


def test_real_four_dimensional_file_is_refused() -> None:
    with pytest.raises(InputDataError) as error:
        read_image(NIBABEL_DATA / "example_nifti2.nii.gz")
    assert error.value.found is not None and error.value.found.startswith("4 dimensions")


def test_write_failure_is_an_output_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dentpy.data.io import write_volume
    from dentpy.data.volume import LabelMap
    from dentpy.errors import OutputError

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("dentpy.data.io._save_reproducible", disk_full)
    with pytest.raises(OutputError) as error:
        write_volume(LabelMap(np.zeros((4, 4, 4), np.uint8), np.eye(4)), tmp_path / "seg.nii.gz")
    assert "No space left on device" in (error.value.found or "")
    assert list(tmp_path.iterdir()) == []
