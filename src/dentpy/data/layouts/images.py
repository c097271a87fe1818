"""Layout "images": 2D image files without labels, for `dentpy predict` on X-rays.

One image file, or a folder of image files (one level only, like layout "files": a stray
subfolder of outputs is never predicted on by accident). Every image becomes a test record
without a label; the case name is the file name without its suffix.
"""

from __future__ import annotations

from pathlib import Path

from dentpy.data.image2d import IMAGE2D_SUFFIXES, image2d_suffix, is_image2d_file
from dentpy.data.layouts import listing, named_cases, visible_entries
from dentpy.data.samples2d import ImageDataset, ImageRecord
from dentpy.errors import InputDataError


def looks_like(path: Path) -> bool:
    """An image file, or a folder directly holding at least one image file."""
    path = Path(path)
    if path.is_file():
        return is_image2d_file(path)
    return path.is_dir() and any(is_image2d_file(p) for p in visible_entries(path))


def read(path: Path) -> ImageDataset:
    path = Path(path)
    if path.is_file():
        root, files = path.parent, [path]
        if not is_image2d_file(path):
            raise InputDataError(
                f"{path.name}: not a 2D image file dentpy can read",
                expected=f"a file ending in {', '.join(IMAGE2D_SUFFIXES)}",
                found=path.suffix or "no suffix",
                fix="convert the image to PNG (16-bit PNG keeps X-ray gray values)",
            )
    elif path.is_dir():
        root = path
        files = [p for p in visible_entries(path) if is_image2d_file(p)]
        if not files:
            raise InputDataError(
                f"{path.name}: folder holds no 2D image files",
                expected=f"files ending in {', '.join(IMAGE2D_SUFFIXES)} directly in the folder",
                found=listing(p.name + ("/" if p.is_dir() else "") for p in visible_entries(path))
                or "an empty folder",
                fix="point dentpy at the folder (or file) holding the images",
            )
    else:
        raise InputDataError(
            f"{path.name or path}: not found",
            expected="an image file or a folder of images",
            found="nothing at that path",
            fix="check the path",
        )
    records = [
        ImageRecord(case_id, case_id, file, root=root, source_name=name)
        for file, name, case_id in named_cases(files, root, image2d_suffix, "images")
    ]
    return ImageDataset(
        root=root,
        layout="images",
        task="images",
        classes=(),
        records=(),
        test_records=tuple(records),
    )
