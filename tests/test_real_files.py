"""Real files nobody here wrote: the test data bundled with nibabel and pydicom.

Every NIfTI file nibabel ships, and every folder of DICOM image slices pydicom ships, is
either read by dentpy -- and then agrees with SimpleITK's reading of the same file on
voxels, spacing and the voxel -> world mapping -- or refused with dentpy's own
InputDataError, whose message says what/expected/found/fix. Nothing else may happen.
Nothing is downloaded: only files installed with the packages are used.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import pytest

nibabel = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")
sitk = pytest.importorskip("SimpleITK")

from dentpy.data.io import read_image  # noqa: E402
from dentpy.data.volume import IntensityImage  # noqa: E402
from dentpy.errors import InputDataError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")

MAX_BYTES = 20 * 1024 * 1024  # keep the run short: larger bundled files are skipped
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
NIBABEL_DATA = Path(nibabel.__file__).parent / "tests" / "data"
PYDICOM_DATA = Path(pydicom.__file__).parent / "data" / "test_files"


def _nifti_files() -> list[Path]:
    if not NIBABEL_DATA.is_dir():
        return []
    return sorted(
        p for p in NIBABEL_DATA.iterdir() if p.is_file() and p.name.endswith((".nii", ".nii.gz"))
    )


def _dicom_slices(folder: Path) -> int:
    """How many files in `folder` are DICOM image slices (with a patient position)."""
    count = 0
    for path in folder.iterdir():
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # not DICOM, or damaged: pydicom's own tests cover those
            continue
        count += "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds
    return count


def _dicom_folders() -> list[Path]:
    """Folders of pydicom's test data holding at least two image slices."""
    if not PYDICOM_DATA.is_dir():
        return []
    folders = [PYDICOM_DATA, *sorted(p for p in PYDICOM_DATA.rglob("*") if p.is_dir())]
    return [f for f in folders if _dicom_slices(f) >= 2]


NIFTI_FILES = _nifti_files()
DICOM_FOLDERS = _dicom_folders()


def _sitk_ras(image: sitk.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SimpleITK's voxels as (i, j, k), its spacing, and its geometry as voxel -> RAS."""
    dim = image.GetDimension()
    array = sitk.GetArrayFromImage(image)
    array = array.transpose(tuple(range(array.ndim))[::-1])
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
    spacing = np.array(image.GetSpacing(), dtype=np.float64)[:3]
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing
    lps[:3, 3] = np.array(image.GetOrigin(), dtype=np.float64)[:3]
    return array, spacing, LPS_TO_RAS @ lps


def _check_refusal(error: InputDataError, *names: str) -> None:
    """A refusal names the file (the folder, or one of its slices) and says what was
    expected, what was found, and the fix."""
    assert any(name in error.what for name in names), error.what
    assert error.expected and error.found and error.fix, str(error)


def _compare(ours: IntensityImage, image: sitk.Image) -> None:
    array, spacing, affine = _sitk_ras(image)
    assert ours.shape == array.shape
    np.testing.assert_array_equal(ours.array.astype(np.float64), array.astype(np.float64))
    np.testing.assert_allclose(ours.spacing_mm, spacing, atol=1e-4)
    np.testing.assert_allclose(ours.affine, affine, atol=1e-4)


def _sform_qform_conflict(path: Path) -> str | None:
    """Why nibabel and ITK may legitimately disagree on this file's geometry, from its
    header: both sform and qform are set and map voxels to different places. nibabel uses
    the sform; ITK's NIfTI reader may use the qform. None when there is no conflict."""
    header = nibabel.load(str(path)).header
    if not hasattr(header, "get_qform"):
        return None
    qcode, scode = int(header["qform_code"]), int(header["sform_code"])
    if qcode <= 0 or scode <= 0:
        return None
    diff = float(np.abs(header.get_qform() - header.get_sform()).max())
    if diff <= 1e-4:
        return None
    return (
        f"{path.name}: sform (code {scode}) and qform (code {qcode}) differ by up to "
        f"{diff:.4g} (affine entries); nibabel uses the sform, ITK may use the qform"
    )


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in NIFTI_FILES])
def test_bundled_nifti_is_read_like_simpleitk_or_refused_clearly(path: Path) -> None:
    if path.stat().st_size > MAX_BYTES:
        pytest.skip(f"{path.name}: {path.stat().st_size / 2**20:.1f} MB, over the 20 MB budget")
    try:
        ours = read_image(path)
    except InputDataError as error:
        _check_refusal(error, path.name)
        return
    # dentpy read it: it must agree with an independent reader.
    try:
        theirs = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        pytest.skip(f"{path.name}: SimpleITK cannot read it ({str(exc).splitlines()[0][:80]})")
    conflict = _sform_qform_conflict(path)
    if conflict is not None:
        np.testing.assert_array_equal(ours.array.shape, _sitk_ras(theirs)[0].shape)
        pytest.skip(conflict)
    _compare(ours, theirs)


def test_bundled_nifti_files_were_found() -> None:
    """The parametrized test above is not vacuous: nibabel ships readable 3D files."""
    assert len(NIFTI_FILES) >= 3, f"too few NIfTI files under {NIBABEL_DATA}"
    read = []
    for path in NIFTI_FILES:
        with contextlib.suppress(InputDataError):
            read.append(read_image(path).shape)
    assert len(read) >= 3


def _series_id(folder: Path) -> str:
    return folder.relative_to(PYDICOM_DATA).as_posix() or "."


@pytest.mark.parametrize("folder", [pytest.param(f, id=_series_id(f)) for f in DICOM_FOLDERS])
def test_bundled_dicom_folder_is_read_like_simpleitk_or_refused_clearly(folder: Path) -> None:
    try:
        ours = read_image(folder)
    except InputDataError as error:
        # pydicom's folders mix series, orientations and positions on purpose.
        _check_refusal(error, folder.name, *(p.name for p in folder.iterdir()))
        return
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(folder))
    if len(names) != ours.shape[2]:
        pytest.skip(f"{_series_id(folder)}: GDCM groups {len(names)} files, dentpy {ours.shape[2]}")
    reader.SetFileNames(names)
    _compare(ours, reader.Execute())


def test_at_least_one_real_dicom_series_is_compared() -> None:
    """pydicom ships multi-slice series (dicomdirtests/); one of them is a clean, uniformly
    spaced single series that dentpy reads (and the test above compares with SimpleITK)."""
    if not DICOM_FOLDERS:
        pytest.skip("pydicom ships no folder with two or more DICOM image slices here")
    read = []
    for folder in DICOM_FOLDERS:
        with contextlib.suppress(InputDataError):
            read.append((_series_id(folder), read_image(folder).shape))
    if not read:
        pytest.skip("no bundled DICOM folder forms one clean multi-slice series")
    assert all(len(shape) == 3 and shape[2] >= 2 for _, shape in read)
