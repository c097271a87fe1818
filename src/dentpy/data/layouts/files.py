"""Layout "files": volume files or DICOM series, without labels.

This is what `dentpy predict` reads: every volume becomes a test record and there is no
training pool. Accepted: one volume file; one DICOM series folder; a folder of volume files
and/or DICOM series subfolders (one scan per subfolder, as clinics export them). Only one
level is looked at, so a stray subfolder of outputs is never predicted on by accident.
"""

from __future__ import annotations

from pathlib import Path

from dentpy.data.case import CaseRecord
from dentpy.data.dataset import Dataset
from dentpy.data.io import VOLUME_SUFFIXES, is_volume_file, volume_suffix
from dentpy.data.layouts import listing, named_cases, visible_entries
from dentpy.errors import InputDataError

DICOM_SLICE_SUFFIXES = (".dcm", ".dicom", ".ima", "")


def is_dicom_series(folder: Path) -> bool:
    """Whether `folder` holds slices of a 3D DICOM series (judged from one header).

    2D radiographs (panoramic, intraoral) stored as DICOM carry no ImagePositionPatient;
    CT/CBCT slices do.
    """
    if not folder.is_dir():
        return False
    candidates = [
        p
        for p in visible_entries(folder)
        if p.is_file() and p.suffix.lower() in DICOM_SLICE_SUFFIXES and p.name != "DICOMDIR"
    ]
    if len(candidates) < 2:
        return False
    import pydicom

    for candidate in candidates[:3]:
        try:
            header = pydicom.dcmread(candidate, stop_before_pixels=True)
        except Exception:  # not DICOM or damaged: the series reader reports it on load
            continue
        return "ImagePositionPatient" in header
    return False


def _suffix(scan: Path) -> str:
    return "" if scan.is_dir() else volume_suffix(scan)


def read(path: Path) -> Dataset:
    path = Path(path)
    if path.is_file():
        root, scans = path.parent, [path]
        if not is_volume_file(path):
            raise InputDataError(
                f"{path.name}: not a volume file dentpy can read",
                expected=f"a file ending in {', '.join(VOLUME_SUFFIXES)}",
                found=volume_suffix(path) or "no suffix",
                fix="convert the scan to NIfTI (.nii.gz)",
            )
    elif is_dicom_series(path):
        root, scans = path.parent, [path]
    else:
        root = path
        scans = [p for p in visible_entries(path) if is_volume_file(p) or is_dicom_series(p)]
        if not scans:
            raise InputDataError(
                f"{path.name}: folder holds no volume files or DICOM series",
                expected=f"files ending in {', '.join(VOLUME_SUFFIXES)}, or folders of "
                "DICOM slices",
                found=listing(p.name for p in visible_entries(path)) or "an empty folder",
                fix="point dentpy at the folder (or file) holding the scans",
            )
    # The case name is the file name without its volume suffix ("scan.nii.gz" -> "scan"),
    # or the series folder's name.
    records = [
        CaseRecord(case_id, case_id, scan, root=root, source_name=name)
        for scan, name, case_id in named_cases(scans, root, _suffix, "scans")
    ]
    return Dataset(
        root=root,
        layout="files",
        labels={"background": 0},
        records=(),
        test_records=tuple(records),
    )
