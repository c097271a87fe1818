"""Which layout a path holds, judged from names only (no volume is read).

Order matters: an nnU-Net folder also holds volume files, and a Pulpy3D root may hold a
dataset.json label map, so the most specific structure is tried first.
"""

from __future__ import annotations

from pathlib import Path

from dentpy.data.image2d import IMAGE2D_SUFFIXES, is_image2d_file
from dentpy.data.io import VOLUME_SUFFIXES, is_volume_file
from dentpy.data.layouts import (
    coco,
    csv_labels,
    imagefolder,
    listing,
    msd,
    read_json,
    tufts,
    visible_entries,
    yolo,
)
from dentpy.data.layouts.files import is_dicom_series
from dentpy.data.layouts.nnunet import find_root, is_msd
from dentpy.data.layouts.pulpy import case_folders
from dentpy.data.layouts.toothfairy import case_folders as toothfairy_folders
from dentpy.errors import InputDataError

LOOKED_FOR = (
    "nnunet: dataset.json + imagesTr/ (here or in one Dataset*/ subfolder); "
    "msd: Decathlon dataset.json with modality + training list (here or in one Task*/); "
    "pulpy: <patient>/data.nii.gz folders; "
    "toothfairy: <patient>/data.npy folders; "
    f"files: volume files ({', '.join(VOLUME_SUFFIXES)}); "
    "yolo: data.yaml; coco: a COCO .json with images/annotations; "
    "tufts: Radiographs/ + Segmentation/teeth_bbox.json; csv: labels.csv (image,label); "
    "imagefolder: <class>/ folders of images; "
    f"images: 2D image files ({', '.join(IMAGE2D_SUFFIXES)})"
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
        if is_image2d_file(path):
            return "images"
        raise InputDataError(
            f"{path.name}: not a file dentpy can read",
            expected=f"a volume ({', '.join(VOLUME_SUFFIXES)}) or a 2D image "
            f"({', '.join(IMAGE2D_SUFFIXES)})",
            found=path.name,
            fix="convert the scan to NIfTI (.nii.gz) or the image to PNG, or pass a dataset folder",
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
    # 2D layouts: side files first (they name their images), folder structure last.
    for name, module in (("yolo", yolo), ("tufts", tufts), ("coco", coco), ("csv", csv_labels)):
        if module.looks_like(path):
            return name
    if imagefolder.looks_like(path):
        return "imagefolder"
    entries = visible_entries(path)
    if is_dicom_series(path) or any(is_volume_file(p) or is_dicom_series(p) for p in entries):
        return "files"
    if any(is_image2d_file(p) for p in entries):
        return "images"
    raise InputDataError(
        f"{path.name}: no known dataset layout found",
        expected=LOOKED_FOR,
        found=listing((p.name + ("/" if p.is_dir() else "") for p in entries), limit=8)
        or "an empty folder",
        fix=_hint(entries)
        or "arrange the data in one of these layouts, or name one with --layout "
        "(spec: input.layout)",
    )


def _hint(entries: list[Path]) -> str:
    """A specific hint for near-misses: the usual reason a known dataset was not recognised."""
    names = {p.name.lower() for p in entries}
    if "dataset.json" in names:
        return "dataset.json found but no imagesTr/ (nnU-Net) or training list (MSD) next to it"
    if "data.yaml" in names or "data.yml" in names:
        return "a YOLO data.yaml needs train/val entries pointing at image folders"
    if any(n.endswith(".csv") for n in names):
        return "a CSV of labels needs the header image,label[,patient][,split]"
    return ""
