"""Layout "yolo": an Ultralytics YOLO detection dataset described by data.yaml.

    ROOT/data.yaml                  names, nc, path, train, val, test
    ROOT/train/images/a.jpg         images (any folder the yaml names; searched recursively)
    ROOT/train/labels/a.txt         one line per box: class cx cy w h, normalised to 0..1

What is read (https://docs.ultralytics.com/datasets/detect/): `names` as a list or a
mapping {0: name, 1: ...} with ids 0..N-1; `nc`, when present, must equal the number of
names; `path` is the dataset folder (relative to the yaml; ignored when it does not exist
there, e.g. an absolute path from another machine); `train`, `val` and `test` are image
folders (one or a list) relative to `path`, with Ultralytics' fallback for Roboflow's
"../train/images" (tried without the leading "../"). Image-list .txt files are not read.

An image's label file is its path with the last `images` folder replaced by `labels` and
the suffix by `.txt` (Ultralytics' img2label_paths). A missing label file means the image
has no boxes (YOLO's convention): it is kept as a negative (`boxes=()`). A label file
without an image is refused, as are segment-polygon lines (boxes only).

The labels are normalised, the interface stores pixels: each image's size is read from its
header only (no pixel is decoded), in the displayed orientation (EXIF orientations 5-8 swap
width and height, as Ultralytics' exif_size does), and stored as the record's expected size.

Splits: the yaml's keys name them (train, val, test); images of `test` become test records.
`predefined_splits` holds them when both train and val are given; `val` naming the same
folder as `train` (a yaml without a validation set) counts as no val, other overlaps between
splits are refused.
"""

from __future__ import annotations

import math
import reprlib
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from dentpy.data.case import pseudonym
from dentpy.data.image2d import DICOM_SUFFIXES, MAX_PIXELS, is_image2d_file, read_image2d
from dentpy.data.layouts import check_destination, listing, relative_name, visible_entries
from dentpy.data.layouts.coco import (
    SPLIT_ORDER,
    build,
    check_detection,
    image_size,
    placement,
    target_names,
)
from dentpy.data.samples2d import (
    BOX_BORDER_TOLERANCE_PX,
    Box,
    ImageDataset,
    ImageRecord,
    box_from_xyxy,
)
from dentpy.errors import InputDataError

YAML_NAMES = ("data.yaml", "data.yml")
# Normalised values are written with ~6 decimals: allow that much rounding past 0..1.
ROUNDING = 1e-6


def find_yaml(path: Path) -> Path | None:
    path = Path(path)
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return path
    for name in YAML_NAMES:
        if (path / name).is_file():
            return path / name
    return None


def looks_like(path: Path) -> bool:
    return find_yaml(Path(path)) is not None


def _error(name: str, what: str, expected: str, found: str, fix: str) -> InputDataError:
    return InputDataError(f"{name}: {what}", expected=expected, found=found, fix=fix)


# YAML aliases share nodes, so a few lines can hold a "billion laughs" tree: a full repr()
# or str() of it never ends. Values from data.yaml are shown through this bounded repr.
_BOUNDED = reprlib.Repr()
_BOUNDED.maxlevel = 2
_BOUNDED.maxstring = 100
_BOUNDED.maxother = 100


def _shown(value: Any) -> str:
    return _BOUNDED.repr(value)


def read(path: Path) -> ImageDataset:
    path = Path(path)
    yaml_path = find_yaml(path)
    if yaml_path is None:
        raise _error(
            path.name,
            "not a YOLO dataset",
            "a data.yaml (names, train, val) in this folder",
            listing(p.name for p in visible_entries(path)) if path.is_dir() else path.name,
            "pass the folder holding data.yaml",
        )
    root = yaml_path.parent
    name = yaml_path.name
    config = _load_yaml(yaml_path)
    classes = _names(config, name)
    base = _base(config, root)
    split_images: dict[str, list[Path]] = {}
    owner: dict[Path, str] = {}
    folders = {split: _folders(config, split, base, root, name) for split in SPLIT_ORDER}
    if folders["val"] and [f.resolve() for f in folders["val"]] == [
        f.resolve() for f in folders["train"]
    ]:
        # A yaml without a validation set points val at train (Ultralytics needs a val key).
        folders["val"] = []
    for split in SPLIT_ORDER:
        for folder in folders[split]:
            for image in sorted(p for p in folder.rglob("*") if _visible_image(p, folder)):
                if image in owner:
                    raise _error(
                        name,
                        f"{relative_name(image, root)} belongs to two splits",
                        "train, val and test pointing at different folders",
                        f"in {owner[image]} and {split}",
                        "give each split its own folder; an image in two splits leaks test data",
                    )
                owner[image] = split
                split_images.setdefault(split, []).append(image)
    if "train" not in split_images:
        raise _error(
            name,
            "no training images",
            "'train' naming a folder of images (e.g. train/images)",
            _shown(config.get("train")),
            "point 'train' at the image folder",
        )
    _refuse_orphans(owner, root)
    records: list[ImageRecord] = []
    test_records: list[ImageRecord] = []
    for split, images in split_images.items():
        for image in images:
            record = _record(image, root, classes)
            (test_records if split == "test" else records).append(record)
    predefined = None
    if "val" in split_images:
        predefined = {
            split: tuple(pseudonym(relative_name(p, root)) for p in images)
            for split, images in split_images.items()
        }
    return ImageDataset(
        root=root,
        layout="yolo",
        task="detection",
        classes=classes,
        records=tuple(records),
        test_records=tuple(test_records),
        predefined_splits=predefined,
    )


def _visible_image(path: Path, folder: Path) -> bool:
    parts = path.relative_to(folder).parts
    return is_image2d_file(path) and not any(p.startswith(".") for p in parts)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _error(
            path.name,
            "cannot be read as YAML",
            "a valid UTF-8 YAML file",
            str(exc).splitlines()[0][:200],
            f"repair {path.name}",
        ) from None
    if not isinstance(config, dict):
        raise _error(
            path.name,
            "unexpected structure",
            "a mapping with names, train, val",
            type(config).__name__,
            "write data.yaml as Ultralytics describes it",
        )
    return config


def _names(config: Mapping[str, Any], name: str) -> tuple[str, ...]:
    raw = config.get("names")
    names: list[str] = []
    values: list[Any] = list(raw.values()) if isinstance(raw, Mapping) else []
    if isinstance(raw, list):
        values = raw
    if any(not isinstance(n, str | int | float) for n in values):
        raise _error(
            name,
            "'names' holds something other than class names",
            "names: [class0, class1, ...] (each a plain name)",
            _shown(raw),
            "list the class names in data.yaml, one word or quoted string each",
        )
    if isinstance(raw, list):
        names = [str(n) for n in raw]
    elif isinstance(raw, Mapping):
        keys = sorted(raw, key=lambda k: (not isinstance(k, int), str(k)))
        if keys != list(range(len(raw))):
            raise _error(
                name,
                "'names' ids are not 0..N-1",
                "names: {0: first, 1: second, ...} (consecutive ids from 0)",
                f"ids {listing(str(k) for k in raw)}",
                "number the classes 0, 1, 2, ... without gaps",
            )
        names = [str(raw[k]) for k in keys]
    if not names or any(not n.strip() for n in names) or len(set(names)) != len(names):
        raise _error(
            name,
            "'names' missing, empty or repeated",
            "names: [class0, class1, ...] with distinct, non-empty names",
            _shown(raw),
            "list the class names in data.yaml",
        )
    nc = config.get("nc")
    if nc is not None and nc != len(names):
        raise _error(
            name,
            "'nc' differs from the number of names",
            f"nc: {len(names)} (as many as names)",
            f"nc: {_shown(nc)}",
            "fix nc, or list the missing class names",
        )
    return tuple(names)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _base(config: Mapping[str, Any], root: Path) -> Path:
    given = config.get("path")
    if isinstance(given, str) and given.strip():
        candidate = root / given
        if candidate.is_dir() and _inside(candidate, root):
            return candidate
    return root


def _folders(
    config: Mapping[str, Any], split: str, base: Path, root: Path, name: str
) -> list[Path]:
    raw = config.get(split)
    if raw is None or raw == "" or raw == []:
        return []
    entries = raw if isinstance(raw, list) else [raw]
    folders: list[Path] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise _error(
                name,
                f"'{split}' is not a folder name",
                "a folder of images relative to the yaml (e.g. train/images)",
                _shown(entry),
                f"set {split}: <folder>",
            )
        folder = base / entry
        if not folder.exists() and entry.startswith("../"):
            folder = base / entry[3:]
        if folder.is_file():
            raise _error(
                name,
                f"'{split}' names a file",
                "a folder of images (image-list .txt files are not read)",
                entry,
                "point the split at its images folder",
            )
        if not folder.is_dir() or not _inside(folder, root):
            raise _error(
                name,
                f"'{split}' folder not found in the dataset",
                f"a folder inside {root.name}/ (relative to the yaml or its 'path')",
                entry,
                f"fix '{split}' in {name}, or add the folder",
            )
        folders.append(folder)
    return folders


def label_path(image: Path) -> Path:
    """Ultralytics' img2label_paths: the last /images/ becomes /labels/, suffix .txt."""
    text = image.as_posix()
    sa, sb = "/images/", "/labels/"
    if sa in text:
        text = sb.join(text.rsplit(sa, 1))
    return Path(text.rsplit(".", 1)[0] + ".txt")


def _refuse_orphans(owner: Mapping[Path, str], root: Path) -> None:
    expected = {label_path(image) for image in owner}
    folders = {p.parent for p in expected if p.parent.is_dir()}
    images_folders = {image.parent for image in owner}
    for folder in sorted(folders - images_folders):
        for txt in sorted(folder.glob("*.txt")):
            if txt not in expected and txt.name != "classes.txt":
                raise _error(
                    relative_name(txt, root),
                    "label file without an image",
                    f"an image {txt.stem}.<png|jpg|...> in the matching images/ folder",
                    "no such image",
                    "add the image, or delete the label file (its boxes would be ignored)",
                )


def exif_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed, from the header only."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return read_image2d(path).size
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise InputDataError(
            f"{path.name}: cannot be read as an image",
            expected="a readable PNG/JPEG/TIFF/BMP file",
            found=str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
            fix="re-export the image",
        ) from None
    if width * height > MAX_PIXELS:
        raise InputDataError(
            f"{path.name}: image too large",
            expected=f"at most {MAX_PIXELS} pixels",
            found=f"{width} x {height}",
            fix="check the file; no dental radiograph is this large",
        )
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _record(image: Path, root: Path, classes: tuple[str, ...]) -> ImageRecord:
    rel = relative_name(image, root)
    labels = label_path(image)
    label_name = relative_name(labels, root)
    try:
        size = exif_size(image)
    except InputDataError as exc:
        raise _error(
            rel, exc.what.split(": ", 1)[-1], exc.expected or "", exc.found or "", exc.fix or ""
        ) from None
    boxes = _boxes(labels, label_name, classes, size) if labels.is_file() else ()
    case_id = pseudonym(rel)
    return ImageRecord(
        case_id=case_id,
        patient_id=case_id,
        image_path=image,
        boxes=boxes,
        expected_size=size,
        root=root,
        source_name=rel,
        annotation_file=label_name if labels.is_file() else "",
    )


def _boxes(
    path: Path, name: str, classes: tuple[str, ...], size: tuple[int, int]
) -> tuple[Box, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(
            name,
            "cannot be read as text",
            "a UTF-8 text file of 'class cx cy w h' lines",
            str(exc).splitlines()[0][:200],
            "re-export the label file",
        ) from None
    width, height = size
    boxes: list[Box] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        source = f"line {number} of {name}"
        if len(fields) > 5 and len(fields) % 2 == 1:
            raise _error(
                name,
                f"line {number} is a polygon: YOLO segmentation labels are not supported; "
                "boxes only",
                "box lines 'class cx cy w h' (5 fields)",
                f"{len(fields)} fields",
                "YOLO segmentation labels are not supported; boxes only: export the dataset "
                "in YOLO detection format",
            )
        if len(fields) != 5:
            raise _error(
                name,
                f"line {number} has {len(fields)} fields",
                "5 fields: class cx cy w h",
                repr(line)[:100],
                "correct or delete the line",
            )
        values: list[float] = []
        for text in fields:
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise _error(
                    name,
                    f"line {number} holds a value that is not a number",
                    "class cx cy w h, all numbers",
                    repr(line)[:100],
                    "correct or delete the line",
                )
            values.append(value)
        cls, cx, cy, w, h = values
        if not cls.is_integer() or not 0 <= cls < len(classes):
            raise _error(
                name,
                f"line {number} has an unknown class id",
                f"an integer 0..{len(classes) - 1} (the names in data.yaml)",
                fields[0],
                "fix the class id, or add the class to names",
            )
        if any(v < -ROUNDING or v > 1 + ROUNDING for v in (cx, cy, w, h)):
            raise _error(
                name,
                f"line {number} has values outside 0..1",
                "cx cy w h normalised by the image size (0..1)",
                " ".join(fields[1:]),
                "these look like pixel values: divide x and w by the image width, y and h by "
                "its height",
            )
        if w <= 0 or h <= 0:
            raise _error(
                name,
                f"line {number} has a box of zero or negative size",
                "w > 0 and h > 0",
                " ".join(fields[1:]),
                "correct or delete the line",
            )
        corners = [(cx - w / 2) * width, (cy - h / 2) * height]
        corners += [(cx + w / 2) * width, (cy + h / 2) * height]
        tol = BOX_BORDER_TOLERANCE_PX
        if (
            corners[0] < -tol
            or corners[1] < -tol
            or corners[2] > width + tol
            or corners[3] > height + tol
        ):
            raise _error(
                name,
                f"line {number}: box reaches outside the image",
                f"corners inside the image (±{tol:g} px), image {width} x {height} px",
                "[x_min, y_min, x_max, y_max] = " + ", ".join(f"{c:.6g}" for c in corners) + " px",
                "correct the box (center ± half size must stay within 0..1)",
            )
        boxes.append(box_from_xyxy(corners, classes[int(cls)], source, name))
    return tuple(boxes)


def write(dataset: ImageDataset, dst: Path) -> Path:
    """Write a detection dataset as YOLO: `dst/data.yaml`, `dst/<split>/{images,labels}/`.

    Splits follow `dataset.predefined_splits` (test records go to test/, records outside
    every split to train/); without splits everything goes to train/ and val points at it
    too. Lines are 'class cx cy w h' with 6 decimals, images copied byte for byte. Images
    without boxes get no label file (YOLO's negative). FDI numbers are not kept (YOLO has no
    field for them). `dst` must not exist; a failed write leaves nothing behind.
    """
    dst = Path(dst)
    check_destination(dst)
    check_detection(dataset, "YOLO")
    pool = [*dataset.records, *dataset.test_records]
    names = target_names(pool)
    where = placement(dataset)
    ids = {name: i for i, name in enumerate(dataset.classes)}

    def fill(tmp: Path) -> None:
        for record in pool:
            split = where[record.case_id]
            name = names[record.case_id]
            (tmp / split / "images").mkdir(parents=True, exist_ok=True)
            (tmp / split / "labels").mkdir(parents=True, exist_ok=True)
            shutil.copy2(record.image_path, tmp / split / "images" / name)
            if not record.boxes:
                continue
            width, height = image_size(record)
            lines = []
            for box in record.boxes:
                cx = (box.x_min + box.x_max) / 2 / width
                cy = (box.y_min + box.y_max) / 2 / height
                values = (cx, cy, box.width / width, box.height / height)
                lines.append(f"{ids[box.label]} " + " ".join(f"{v:.6f}" for v in values))
            label = (tmp / split / "labels" / name).with_suffix(".txt")
            label.write_text("\n".join(lines) + "\n", encoding="utf-8")
        used = set(where.values())
        config: dict[str, Any] = {"path": "."}
        config["train"] = "train/images"
        config["val"] = "val/images" if "val" in used else "train/images"
        if "test" in used:
            config["test"] = "test/images"
        config["nc"] = len(dataset.classes)
        config["names"] = list(dataset.classes)
        (tmp / "train" / "images").mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        (tmp / "data.yaml").write_text(text, encoding="utf-8")

    return build(dst, fill)
