"""Read a folder of DICOM slices as one (I, J, K) volume with a voxel->RAS affine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dentpy.errors import InputDataError

_SKIP_NAMES = {"DICOMDIR"}


def _header(path: Path) -> Any | None:
    """Return the dataset header, None for a non-DICOM file, raise for a malformed DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        return None
    except Exception as exc:  # malformed header: never leak a raw pydicom error
        raise InputDataError(
            f"DICOM file {path.name!r} cannot be read",
            expected="a complete DICOM file",
            found=type(exc).__name__,
            fix="remove or replace the damaged file",
        ) from None
    if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
        return None
    return ds


def read_dicom_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The series' voxels (I, J, K) and voxel->RAS affine, or an InputDataError.

    pydicom decodes a header value only when it is first used, so a damaged value surfaces
    as a ValueError/AttributeError deep in the geometry code; those become one clear error.
    """
    folder = Path(folder)
    try:
        return _read_series(folder)
    except InputDataError:
        raise
    except (
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
        IndexError,
        NotImplementedError,
        OverflowError,
    ) as exc:
        raise InputDataError(
            f"DICOM series in {folder.name!r} has a damaged or missing header value",
            expected="readable ImageOrientationPatient, ImagePositionPatient, Rows, Columns, "
            "PixelSpacing and rescale values on every slice",
            found=f"{type(exc).__name__} while reading the slice headers",
            fix="re-export the series from the scanner or PACS; one of its files is damaged",
        ) from None


def _read_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from dentpy.data.io import _LPS_TO_RAS, MAX_VOXELS

    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in _SKIP_NAMES)
    headers = [(p, h) for p in files if (h := _header(p)) is not None]
    if not headers:
        raise InputDataError(
            f"folder {folder.name!r} holds no DICOM image slices",
            expected="DICOM files with ImagePositionPatient and ImageOrientationPatient",
            found=f"{len(files)} file(s), none of them an image slice",
            fix="point to a folder of DICOM slices",
        )
    series: dict[str, list[str]] = {}
    for p, h in headers:
        series.setdefault(str(h.get("SeriesInstanceUID", "")), []).append(p.name)
    if len(series) > 1:
        sizes = ", ".join(str(len(v)) for v in series.values())
        raise InputDataError(
            f"folder {folder.name!r} mixes {len(series)} DICOM series",
            expected="one SeriesInstanceUID per folder",
            found=f"series sizes {sizes}",
            fix="put each series in its own folder",
        )
    p0, h0 = headers[0]
    iop0 = np.asarray(h0.ImageOrientationPatient, dtype=np.float64)
    shape0 = (int(h0.Rows), int(h0.Columns))
    ps0 = np.asarray(h0.PixelSpacing, dtype=np.float64)
    if (
        iop0.shape != (6,)
        or not np.isfinite(iop0).all()
        or ps0.shape != (2,)
        or (not np.isfinite(ps0).all() or (ps0 <= 0).any())
    ):
        raise InputDataError(
            f"DICOM slice {p0.name!r} has invalid geometry tags",
            expected="6 finite ImageOrientationPatient values and 2 positive PixelSpacing values",
            found=f"orientation {iop0.tolist()}, pixel spacing {ps0.tolist()}",
            fix="re-export the series; dentpy does not guess geometry",
        )
    for p, h in headers[1:]:
        if not np.allclose(np.asarray(h.ImageOrientationPatient, float), iop0, atol=1e-4):
            raise InputDataError(
                f"DICOM slices {p0.name!r} and {p.name!r} have different orientations",
                expected="one ImageOrientationPatient for every slice",
                found="two different orientations",
                fix="put each series in its own folder",
            )
        if (int(h.Rows), int(h.Columns)) != shape0 or not np.allclose(
            np.asarray(h.PixelSpacing, float), ps0
        ):
            raise InputDataError(
                f"DICOM slices {p0.name!r} and {p.name!r} differ in size or pixel spacing",
                expected="the same Rows, Columns and PixelSpacing on every slice",
                found=f"{shape0} vs {(int(h.Rows), int(h.Columns))}",
                fix="put each series in its own folder",
            )
    row_dir, col_dir = iop0[:3], iop0[3:]
    normal = np.cross(row_dir, col_dir)
    pos = [
        (float(np.dot(np.asarray(h.ImagePositionPatient, float), normal)), p, h) for p, h in headers
    ]
    pos.sort(key=lambda t: t[0])
    n = len(pos)
    if shape0[0] * shape0[1] * n > MAX_VOXELS:
        raise InputDataError(
            f"DICOM series in {folder.name!r} is too large",
            expected=f"at most {MAX_VOXELS:,} voxels",
            found=f"{shape0[0]} x {shape0[1]} pixels x {n} slices",
            fix="check Rows/Columns in the headers (a damaged header can claim a huge size), "
            "or crop the scan before use",
        )
    steps = np.diff([t[0] for t in pos])
    for i, s in enumerate(steps):
        if abs(s) < 1e-4:
            raise InputDataError(
                f"DICOM slices {pos[i][1].name!r} and {pos[i + 1][1].name!r} "
                "have the same position (duplicate slice)",
                expected="one slice per position",
                found=f"two slices at {pos[i][0]:.3f} mm along the slice normal",
                fix="remove the duplicate file",
            )
    dz = float(np.median(steps)) if n > 1 else float(h0.get("SliceThickness", 1.0) or 1.0)
    if n > 1:
        for i, s in enumerate(steps):
            if s > 1.5 * dz:
                raise InputDataError(
                    f"DICOM series has a missing slice between {pos[i][1].name!r} "
                    f"and {pos[i + 1][1].name!r} (index {i}, position {pos[i][0]:.3f} mm)",
                    expected=f"slices every {dz:.3f} mm (the median step)",
                    found=f"a gap of {s:.3f} mm",
                    fix="add the missing slice file(s); dentpy never interpolates a gap",
                )
            if abs(s - dz) > 0.01 * dz:
                raise InputDataError(
                    f"DICOM series has non-uniform slice steps at {pos[i + 1][1].name!r}",
                    expected=f"a uniform step of {dz:.3f} mm (±1%)",
                    found=f"a step of {s:.3f} mm",
                    fix="resample the series to a uniform spacing before using it",
                )
    import pydicom

    slices = []
    float_out = False
    for _, p, _h in pos:
        try:
            ds = pydicom.dcmread(p)
            arr = np.asarray(ds.pixel_array)
        except Exception as exc:
            raise InputDataError(
                f"DICOM file {p.name!r} has unreadable pixel data",
                expected="complete, decodable pixel data",
                found=type(exc).__name__,
                fix="re-export the slice; it may be truncated or use an unsupported codec",
            ) from None
        slope = float(ds.get("RescaleSlope", 1) or 1)
        inter = float(ds.get("RescaleIntercept", 0) or 0)
        if not (slope.is_integer() and inter.is_integer()):
            float_out = True
        slices.append(arr.astype(np.float64) * slope + inter)
    vol = np.stack(slices, axis=-1)  # (rows, cols, K)
    vol = vol.transpose(1, 0, 2)  # (I=cols, J=rows, K)
    out = vol.astype(np.float32) if float_out else vol.astype(np.int32)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * ps0[1]
    affine_lps[:3, 1] = col_dir * ps0[0]
    affine_lps[:3, 2] = normal * dz
    affine_lps[:3, 3] = np.asarray(pos[0][2].ImagePositionPatient, float)
    return np.ascontiguousarray(out), _LPS_TO_RAS @ affine_lps
