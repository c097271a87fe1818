"""Which layout a path holds, judged from names only (no volume is read).

Order matters: an nnU-Net folder also holds volume files, and a Pulpy3D root may hold a
dataset.json label map, so the most specific structure is tried first.
"""

from __future__ import annotations

from pathlib import Path

from dentpy.data.io import VOLUME_SUFFIXES, is_volume_file
from dentpy.data.layouts import listing, msd, read_json, visible_entries
from dentpy.data.layouts.nnunet import find_root, is_msd
from dentpy.data.layouts.pulpy import case_folders
from dentpy.data.layouts.toothfairy import case_folders as toothfairy_folders
from dentpy.errors import InputDataError

LOOKED_FOR = (
    "nnunet: dataset.json + imagesTr/ (here or in one Dataset*/ subfolder); "
    "msd: Decathlon dataset.json with modality + training list (here or in one Task*/); "
    "pulpy: <patient>/data.nii.gz folders; "
    "toothfairy: <patient>/data.npy folders; "
    f"files: volume files ({', '.join(VOLUME_SUFFIXES)})"
)


def detect_layout(path: str | Path) -> str:
    """One of `dentpy.data.dataset.LAYOUTS` for `path`, or an error saying what was seen."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(
            f"{path.name or path}: dataset not found",
            expected="an existing dataset folder or volume file",
            found="nothing at that path",
            fix="check the path",
        )
    if path.is_file():
        if is_volume_file(path):
            return "files"
        raise InputDataError(
            f"{path.name}: not a file dentpy can read as a volume",
            expected=f"a file ending in {', '.join(VOLUME_SUFFIXES)}",
            found=path.name,
            fix="convert the scan to NIfTI (.nii.gz), or pass a dataset folder",
        )
    root = find_root(path)
    if root is not None:
        if is_msd(read_json(root / "dataset.json", root)):
            return "msd"
        # A Pulpy3D root may carry a dataset.json that is only its label map.
        if root == path and not (root / "imagesTr").is_dir() and case_folders(path):
            return "pulpy"
        return "nnunet"
    task = msd.find_root(path)
    if task is not None and is_msd(read_json(task / "dataset.json", task)):
        return "msd"
    if case_folders(path):
        return "pulpy"
    if toothfairy_folders(path):
        return "toothfairy"
    entries = visible_entries(path)
    if any(is_volume_file(p) for p in entries):
        return "files"
    raise InputDataError(
        f"{path.name}: no known dataset layout found",
        expected=LOOKED_FOR,
        found=listing((p.name + ("/" if p.is_dir() else "") for p in entries), limit=8)
        or "an empty folder",
        fix=_hint(entries) or "arrange the data in one of these layouts, or pass layout=",
    )


def _hint(entries: list[Path]) -> str:
    """A specific hint for formats that are recognisable but not read yet."""
    names = {p.name.lower() for p in entries}
    inner = {c.name.lower() for p in entries if p.is_dir() for c in visible_entries(p)}
    if "data.npy" in inner:
        return "ToothFairy .npy folders are not supported yet; convert data.npy to NIfTI"
    if any(n.endswith(".dcm") for n in names | inner):
        return "DICOM series are not supported by this reader yet; convert to NIfTI"
    return ""
