"""DICOM series reader: geometry vs SimpleITK, and clear errors without identifiers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
sitk = pytest.importorskip("SimpleITK")

from dentpy.data.dicom_series import read_dicom_series  # noqa: E402
from dentpy.errors import InputDataError  # noqa: E402

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
ROW = np.array([0.8, 0.6, 0.0])
COL = np.array([0.0, 0.0, -1.0])
NORMAL = np.cross(ROW, COL)


def _write(folder: Path, n: int = 6, series: str = "1.2.3.4", skip: int | None = None) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        if k == skip:
            continue
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"s{k:02d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientName = "DOE^JOHN"
        ds.PatientID = "CANARY123"
        ds.SeriesInstanceUID = series
        ds.StudyInstanceUID = "1.2.3"
        ds.Rows, ds.Columns = 10, 8
        ds.PixelSpacing = [0.5, 0.4]
        ds.SliceThickness = 9.0
        ds.ImageOrientationPatient = [*ROW.tolist(), *COL.tolist()]
        ds.ImagePositionPatient = (np.array([10.0, -20.0, 30.0]) + k * 1.5 * NORMAL).tolist()
        ds.InstanceNumber = k + 1
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope = 2
        ds.RescaleIntercept = -1024
        ds.PixelData = rng.integers(0, 3000, (10, 8), dtype=np.uint16).tobytes()
        ds.save_as(folder / f"s{k:02d}.dcm", enforce_file_format=True)


def _sitk(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    im = reader.Execute()
    arr = sitk.GetArrayFromImage(im).transpose(2, 1, 0)
    aff = np.eye(4)
    aff[:3, :3] = np.array(im.GetDirection()).reshape(3, 3) * np.array(im.GetSpacing())
    aff[:3, 3] = im.GetOrigin()
    return arr, _LPS_TO_RAS @ aff


def test_matches_simpleitk(tmp_path: Path) -> None:
    _write(tmp_path)
    arr, aff = read_dicom_series(tmp_path)
    ref, ref_aff = _sitk(tmp_path)
    assert arr.shape == (8, 10, 6)
    np.testing.assert_allclose(aff, ref_aff, atol=1e-4)
    np.testing.assert_array_equal(arr, ref)


def test_bundled_ct_small(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    shutil.copy(str(get_testdata_file("CT_small.dcm")), tmp_path / "a.dcm")
    arr, aff = read_dicom_series(tmp_path)
    im = sitk.ReadImage(str(tmp_path / "a.dcm"))
    np.testing.assert_array_equal(arr, sitk.GetArrayFromImage(im).transpose(2, 1, 0))
    np.testing.assert_allclose(aff[:3, 3], (_LPS_TO_RAS[:3, :3] @ im.GetOrigin()), atol=1e-4)


def _err(folder: Path) -> str:
    with pytest.raises(InputDataError) as ei:
        read_dicom_series(folder)
    text = str(ei.value)
    assert "CANARY123" not in text and "DOE" not in text
    return text


def test_missing_slice(tmp_path: Path) -> None:
    _write(tmp_path, skip=3)
    assert "missing" in _err(tmp_path)


def test_duplicate_slice(tmp_path: Path) -> None:
    _write(tmp_path)
    shutil.copy(tmp_path / "s02.dcm", tmp_path / "copy.dcm")
    text = _err(tmp_path)
    assert "duplicate" in text and "copy.dcm" in text


def test_mixed_series(tmp_path: Path) -> None:
    _write(tmp_path)
    _write(tmp_path / "x", series="9.9")
    shutil.move(tmp_path / "x" / "s00.dcm", tmp_path / "other.dcm")
    shutil.rmtree(tmp_path / "x")
    assert "2 DICOM series" in _err(tmp_path)


def test_truncated(tmp_path: Path) -> None:
    _write(tmp_path)
    data = (tmp_path / "s01.dcm").read_bytes()
    (tmp_path / "s01.dcm").write_bytes(data[: len(data) - 50])
    _err(tmp_path)


def test_mixed_orientation(tmp_path: Path) -> None:
    _write(tmp_path)
    ds = pydicom.dcmread(tmp_path / "s04.dcm")
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.save_as(tmp_path / "s04.dcm")
    text = _err(tmp_path)
    assert "orientation" in text and "s04.dcm" in text


def test_series_folders_are_detected_as_scans_to_predict_on(tmp_path: Path) -> None:
    from dentpy.data.dataset import open_dataset
    from dentpy.data.layouts.detect import detect_layout

    clinic = tmp_path / "export"
    _write(clinic / "scan_a", series="1.2.3.4")
    _write(clinic / "scan_b", n=4, series="1.2.3.5")
    (clinic / "notes.txt").write_text("not a scan")
    assert detect_layout(clinic) == "files"
    assert detect_layout(clinic / "scan_a") == "files"
    dataset = open_dataset(clinic)
    assert sorted(r.source_name for r in dataset.test_records) == ["scan_a", "scan_b"]
    shapes = sorted(dataset.load(r).image.shape for r in dataset.test_records)
    assert shapes == [(8, 10, 4), (8, 10, 6)]
    single = open_dataset(clinic / "scan_a")
    assert [r.source_name for r in single.test_records] == ["scan_a"]
    # No patient name from the DICOM headers reaches the record.
    assert "DOE" not in repr(single.test_records) and "CANARY" not in repr(single.test_records)
