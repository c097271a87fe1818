"""Layout "files": one volume file, or a folder of volume files, without labels.

This is what `dentpy predict` reads: every file becomes a test record and there is no
training pool. Only the folder's own files count (no recursion), so a stray subfolder of
outputs is never predicted on by accident.
"""

from __future__ import annotations

from pathlib import Path

from dentpy.data.case import CaseRecord, pseudonym
from dentpy.data.dataset import Dataset
from dentpy.data.io import VOLUME_SUFFIXES, is_volume_file, volume_suffix
from dentpy.data.layouts import listing, relative_name, visible_entries
from dentpy.errors import InputDataError


def read(path: Path) -> Dataset:
    path = Path(path)
    if path.is_file():
        root, files = path.parent, [path]
        if not is_volume_file(path):
            raise InputDataError(
                f"{path.name}: not a volume file dentpy can read",
                expected=f"a file ending in {', '.join(VOLUME_SUFFIXES)}",
                found=volume_suffix(path) or "no suffix",
                fix="convert the scan to NIfTI (.nii.gz)",
            )
    else:
        root = path
        files = [p for p in visible_entries(path) if is_volume_file(p)]
        if not files:
            raise InputDataError(
                f"{path.name}: folder holds no volume files",
                expected=f"files ending in {', '.join(VOLUME_SUFFIXES)}",
                found=listing(p.name for p in visible_entries(path)) or "an empty folder",
                fix="point dentpy at the folder (or file) holding the scans",
            )
    records = []
    seen: dict[str, str] = {}
    for file in files:
        # The case name is the file name without its volume suffix ("scan.nii.gz" -> "scan").
        name = file.name[: len(file.name) - len(volume_suffix(file))]
        case_id = pseudonym(name)
        if case_id in seen:
            raise InputDataError(
                f"{relative_name(file, root)}: two files give the same case name",
                expected="one file per case name",
                found=f"{seen[case_id]} and {relative_name(file, root)}",
                fix="rename or remove one of them",
            )
        seen[case_id] = relative_name(file, root)
        records.append(CaseRecord(case_id, case_id, file, root=root, source_name=name))
    return Dataset(
        root=root,
        layout="files",
        labels={"background": 0},
        records=(),
        test_records=tuple(records),
    )
