"""Layout "coco": COCO detection JSON (boxes per image) with the images it names.

    ROOT/annotations.json                       one JSON (any *.json with "images"), or
    ROOT/annotations/instances_train.json       ... JSON files in annotations/, or
    ROOT/train.json, ROOT/val.json, ...         one JSON per split (DENTEX style), or
    ROOT/{train,valid,test}/_annotations.coco.json   one per split folder (Roboflow)
    images: next to the JSON, in <json folder>/images/ (or xrays/, DENTEX), in ROOT,
            ROOT/images/ or ROOT/<json name without "instances_"> (COCO's train2017/)

What is read (https://cocodataset.org/#format-data): `images` [{id, file_name, width,
height}], `annotations` [{id, image_id, category_id, bbox [x, y, width, height] in pixels,
iscrowd}], `categories` [{id, name}]. Boxes become pixel-edge [x_min, y_min, x_max, y_max];
`width`/`height` become each record's expected size, checked against the pixels on load.
An annotation's optional integer `fdi` field (written by `write`) becomes `Box.fdi`.

Several JSON files: each must name its split by its file name or folder (train, val/valid,
test); they become `predefined_splits`, and the test JSON's images become test records.
A JSON without an `annotations` key (COCO's image_info_test) holds unlabelled images.

Decisions:
- Images without annotations are kept as negatives (`boxes=()`), a valid training case.
- `iscrowd: 1` annotations are refused: a crowd region is many objects under one box, not a
  box to train on, and keeping or dropping it silently would both change the training data.
- `file_name` must stay inside the dataset: absolute paths and `..` are refused (C27).
- Roboflow's placeholder category (an unused category whose name is another category's
  `supercategory`) is dropped from `classes`; every other category is a class, used or not.

DENTEX (https://zenodo.org/records/7812323, MICCAI 2023): annotations carry
`category_id_1` (quadrant), `category_id_2` (tooth) and `category_id_3` (diagnosis) instead
of `category_id`, defined by `categories_1`, `categories_2`, `categories_3`. Category ids start
at 0, so the quadrant and tooth numbers are read from the category *names* ("1".."4",
"1".."8"; the quadrant-enumeration file stores them as JSON numbers, both are accepted).
- quadrant + enumeration + diagnosis: label = diagnosis name (Impacted, Caries, Periapical
  Lesion, Deep Caries), fdi = quadrant * 10 + tooth; classes = the diagnosis names.
- quadrant + enumeration: label = "tooth", fdi set; classes = ("tooth",).
- quadrant only (`categories_1` alone): label = "quadrant <n>", no fdi; classes =
  ("quadrant 1", ..., "quadrant 4"). (A quadrant file using plain `categories` reads as
  ordinary COCO with classes "1".."4".)
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from dentpy.data.case import pseudonym
from dentpy.data.fdi import check_fdi
from dentpy.data.image2d import image2d_suffix, read_image2d
from dentpy.data.layouts import (
    check_destination,
    listing,
    read_json,
    relative_name,
    visible_entries,
)
from dentpy.data.samples2d import Box, ImageDataset, ImageRecord, box_from_xyxy
from dentpy.errors import InputDataError, OutputError

SPLIT_ORDER = ("train", "val", "test")
# Words in a JSON's name (or its folder's) that say which split it holds; "valid" (Roboflow)
# and "validation" (DENTEX validation_triple.json) are val.
_SPLIT_WORDS = (("train", "train"), ("val", "val"), ("test", "test"))
_SPLIT_FOLDERS = ("train", "valid", "val", "validation", "test")
_NOT_COCO = {"splits.json", "dataset.json", "dataset_fingerprint.json"}
_DENTEX_KEYS = ("categories_1", "categories_2", "categories_3")
ANNOTATIONS_FILE = "annotations.json"
SPLITS_FILE = "splits.json"


# --------------------------------------------------------------------------------------
# Finding the JSON files


def _candidate_jsons(path: Path) -> list[Path]:
    folders = [path, path / "annotations"]
    folders += [path / name for name in _SPLIT_FOLDERS]
    found: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            found += [
                p
                for p in visible_entries(folder)
                if p.is_file() and p.suffix.lower() == ".json" and p.name not in _NOT_COCO
            ]
    return found


def _mentions_images(path: Path) -> bool:
    """Cheap look at a JSON's head: COCO files name "images" near the start."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(65536)
    except OSError:
        return False
    return b'"images"' in head or b'"annotations"' in head


def looks_like(path: Path) -> bool:
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".json" and _mentions_images(path)
    return path.is_dir() and any(_mentions_images(p) for p in _candidate_jsons(path))


def _split_of(json_path: Path, root: Path) -> str | None:
    texts = [json_path.stem.lower()]
    if json_path.parent != root:
        texts.append(json_path.parent.name.lower())
    for text in texts:
        for word, split in _SPLIT_WORDS:
            if word in text:
                return split
    return None


# --------------------------------------------------------------------------------------
# Reading


@dataclass
class _Parsed:
    classes: tuple[str, ...]
    records: list[ImageRecord]
    notes: dict[str, Any]


def read(path: Path) -> ImageDataset:
    path = Path(path)
    contents: dict[Path, Any] = {}
    if path.is_file():
        root = path.parent.parent if path.parent.name == "annotations" else path.parent
        jsons = [path]
    else:
        root = path
        contents = {p: _coco_content(p, root) for p in _candidate_jsons(path)}
        jsons = [p for p, raw in contents.items() if raw is not None]
    if not jsons:
        raise InputDataError(
            f"{path.name}: no COCO annotation file found",
            expected="a JSON with 'images' and 'annotations' (annotations.json, *.json here, "
            "in annotations/ or in train/ valid/ test/)",
            found=listing(p.name for p in visible_entries(path)) if path.is_dir() else path.name,
            fix="pass the folder holding the COCO JSON, or the JSON file itself",
        )
    splits: dict[str, Path] = {}
    if len(jsons) > 1:
        for json_path in jsons:
            split = _split_of(json_path, root)
            if split is None or split in splits:
                raise InputDataError(
                    f"{root.name}: several COCO JSON files and no clear split for each",
                    expected="one JSON, or one per split named for it (train, val/valid, test)",
                    found=listing(relative_name(p, root) for p in jsons),
                    fix="pass the path of the JSON file you mean, or rename the files "
                    "after their split",
                )
            splits[split] = json_path
    parsed = {
        split: _read_json(json_path, root, contents.get(json_path))
        for split, json_path in (splits.items() if splits else [("", jsons[0])])
    }
    first_split, first = next(iter(parsed.items()))
    for split, other in parsed.items():
        if other.classes != first.classes:
            raise InputDataError(
                f"{root.name}: the split JSON files disagree on the categories",
                expected="the same categories (ids and names) in every split",
                found=f"{relative_name(splits[first_split], root)}: {list(first.classes)}; "
                f"{relative_name(splits[split], root)}: {list(other.classes)}",
                fix="export all splits with one category list",
            )
    records: list[ImageRecord] = []
    test_records: list[ImageRecord] = []
    predefined: dict[str, tuple[str, ...]] | None = None
    if splits:
        predefined = {}
        for split in SPLIT_ORDER:
            if split in parsed:
                predefined[split] = tuple(r.case_id for r in parsed[split].records)
                (test_records if split == "test" else records).extend(parsed[split].records)
    else:
        for record in first.records:
            (records if record.boxes is not None else test_records).append(record)
    return ImageDataset(
        root=root,
        layout="coco",
        task="detection",
        classes=first.classes,
        records=tuple(records),
        test_records=tuple(test_records),
        predefined_splits=predefined,
        notes=first.notes,
    )


def _coco_content(path: Path, root: Path) -> Any:
    """The parsed JSON when it is a COCO file (has an "images" list), else None."""
    if not _mentions_images(path):
        return None
    raw = read_json(path, root)
    return raw if isinstance(raw, Mapping) and isinstance(raw.get("images"), list) else None


def _error(name: str, what: str, expected: str, found: str, fix: str) -> InputDataError:
    return InputDataError(f"{name}: {what}", expected=expected, found=found, fix=fix)


def _int(value: Any) -> int | None:
    """An integer from JSON (1 or 1.0), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _read_json(json_path: Path, root: Path, raw: Any = None) -> _Parsed:
    name = relative_name(json_path, root)
    if raw is None:
        raw = read_json(json_path, root)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("images"), list):
        raise _error(
            name,
            "not a COCO annotation file",
            '{"images": [...], "annotations": [...], "categories": [...]}',
            type(raw).__name__ if not isinstance(raw, Mapping) else f"keys {listing(raw)}",
            "export the annotations as COCO JSON",
        )
    images = _images(raw["images"], name, json_path, root)
    annotated = "annotations" in raw
    anns = raw.get("annotations", [])
    if not isinstance(anns, list):
        raise _error(
            name, "'annotations' is not a list", "a list", type(anns).__name__, "repair the JSON"
        )
    labeler = _Labeler(raw, name, anns)
    boxes: dict[int, list[Box]] = {image_id: [] for image_id in images}
    seen: set[int] = set()
    for k, ann in enumerate(anns):
        image_id, box = _annotation(ann, k, name, images, labeler, seen)
        boxes[image_id].append(box)
    records = []
    for image_id, (rel, path, size) in images.items():
        case_id = pseudonym(rel)
        records.append(
            ImageRecord(
                case_id=case_id,
                patient_id=case_id,
                image_path=path,
                boxes=tuple(boxes[image_id]) if annotated else None,
                expected_size=size,
                root=root,
                source_name=rel,
                annotation_file=name,
            )
        )
    return _Parsed(labeler.classes, records, labeler.notes)


def _images(
    entries: list[Any], name: str, json_path: Path, root: Path
) -> dict[int, tuple[str, Path, tuple[int, int]]]:
    """image id -> (path relative to root, path, (width, height))."""
    folders = _image_folders(json_path, root)
    images: dict[int, tuple[str, Path, tuple[int, int]]] = {}
    files: dict[str, int] = {}
    for k, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise _error(
                name,
                f"images entry #{k} is not an object",
                '{"id": 1, "file_name": "x.png", "width": W, "height": H}',
                repr(entry)[:100],
                "repair the images list",
            )
        image_id = _int(entry.get("id"))
        if image_id is None:
            raise _error(
                name,
                f"images entry #{k} has no integer id",
                "an integer 'id'",
                repr(entry.get("id"))[:60],
                "give every image an integer id",
            )
        what = f"image id {image_id}"
        if image_id in images:
            raise _error(
                name,
                f"{what} appears twice in 'images'",
                "a distinct id per image",
                f"two entries with id {image_id}",
                "give each image its own id (annotations would be attached to the wrong one)",
            )
        size = [_int(entry.get(key)) for key in ("width", "height")]
        if any(v is None or v <= 0 for v in size):
            raise _error(
                name,
                f"{what} has no valid width/height",
                "positive integer 'width' and 'height' (pixels)",
                f"width={entry.get('width')!r}, height={entry.get('height')!r}",
                "add the image size to its images entry",
            )
        width, height = (int(v or 0) for v in size)
        rel, path = _image_path(entry.get("file_name"), what, name, folders, root)
        if rel in files:
            raise _error(
                name,
                f"{what} names the same file as image id {files[rel]}",
                "each image file once in 'images'",
                repr(entry.get("file_name")),
                "merge the two entries (their annotations would be counted twice)",
            )
        files[rel] = image_id
        images[image_id] = (rel, path, (width, height))
    return images


def _image_folders(json_path: Path, root: Path) -> list[Path]:
    here = json_path.parent
    named = json_path.stem.removeprefix("instances_")
    folders = [here, here / "images", here / "xrays", root, root / "images", root / named]
    unique: list[Path] = []
    for folder in folders:
        if folder not in unique:
            unique.append(folder)
    return unique


def _image_path(
    file_name: Any, what: str, name: str, folders: Sequence[Path], root: Path
) -> tuple[str, Path]:
    if not isinstance(file_name, str) or not file_name.strip():
        raise _error(
            name,
            f"{what} has no file_name",
            "a 'file_name' naming the image file",
            repr(file_name)[:100],
            "add file_name to the images entry",
        )
    text = file_name.replace("\\", "/")
    pure = PurePosixPath(text)
    if pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", text):
        raise _error(
            name,
            f"{what}: file_name points outside the dataset folder",
            "a path relative to the JSON's folder or images/, without '..' or a leading '/'",
            repr(file_name)[:200],
            "store the image inside the dataset and give its relative file_name",
        )
    if not image2d_suffix(Path(text)):
        raise _error(
            name,
            f"{what}: file_name is not an image file",
            "a .png, .jpg, .tif, .bmp or .dcm file",
            repr(file_name)[:200],
            "point file_name at the image",
        )
    for folder in folders:
        candidate = folder / pure
        if candidate.is_file():
            return relative_name(candidate, root), candidate
    raise _error(
        name,
        f"{what}: image file not found",
        f"{text} next to {name}, in images/ or in {root.name}/",
        "no such file",
        "add the missing image, or remove its entry (and its annotations) from the JSON",
    )


class _Labeler:
    """Turns an annotation's category fields into (label, fdi) and knows the classes."""

    def __init__(self, raw: Mapping[str, Any], name: str, anns: Sequence[Any]) -> None:
        self.name = name
        self.notes: dict[str, Any] = {}
        self.levels = [key for key in _DENTEX_KEYS if key in raw]
        if self.levels:
            if tuple(self.levels) not in (_DENTEX_KEYS[:1], _DENTEX_KEYS[:2], _DENTEX_KEYS):
                raise _error(
                    name,
                    "incomplete DENTEX category levels",
                    "categories_1 (quadrant), optionally categories_2 (tooth), optionally "
                    "categories_3 (diagnosis)",
                    f"{', '.join(self.levels)}",
                    "export the DENTEX file with all its category levels",
                )
            self.quadrants = self._numbers(raw, "categories_1", range(1, 5))
            self.teeth = (
                self._numbers(raw, "categories_2", range(1, 9)) if len(self.levels) > 1 else {}
            )
            self.diagnoses = self._names(raw, "categories_3") if len(self.levels) > 2 else {}
            if self.diagnoses:
                self.classes = tuple(self.diagnoses.values())
                mode = "quadrant-enumeration-diagnosis"
            elif self.teeth:
                self.classes = ("tooth",)
                mode = "quadrant-enumeration"
            else:
                self.classes = tuple(f"quadrant {q}" for q in self.quadrants.values())
                mode = "quadrant"
            self.notes = {
                "dentex": mode,
                "fdi": "quadrant (categories_1 name) * 10 + tooth (categories_2 name)",
            }
            return
        self.categories = self._names(raw, "categories")
        used = {_int(a.get("category_id")) for a in anns if isinstance(a, Mapping)}
        parents = {
            c.get("supercategory")
            for c in raw.get("categories", [])
            if isinstance(c, Mapping) and c.get("supercategory") != c.get("name")
        }
        self.categories = {
            i: n for i, n in self.categories.items() if i in used or n not in parents
        }
        self.classes = tuple(self.categories.values())

    def _entries(self, raw: Mapping[str, Any], key: str) -> dict[int, Any]:
        entries = raw.get(key)
        if not isinstance(entries, list):
            raise _error(
                self.name,
                f"'{key}' missing",
                f'a list of {{"id": ..., "name": ...}} in "{key}"',
                repr(entries)[:100],
                "export the annotations with their category list",
            )
        result: dict[int, Any] = {}
        for k, entry in enumerate(entries):
            cid = _int(entry.get("id")) if isinstance(entry, Mapping) else None
            if cid is None or not isinstance(entry, Mapping) or "name" not in entry:
                raise _error(
                    self.name,
                    f"{key} entry #{k} is invalid",
                    'an object with an integer "id" and a "name"',
                    repr(entry)[:100],
                    "repair the category list",
                )
            if cid in result:
                raise _error(
                    self.name,
                    f"{key}: category id {cid} appears twice",
                    "a distinct id per category",
                    f"{result[cid]!r} and {entry['name']!r}",
                    "give each category its own id",
                )
            result[cid] = entry["name"]
        return dict(sorted(result.items()))

    def _names(self, raw: Mapping[str, Any], key: str) -> dict[int, str]:
        names = {cid: str(n).strip() for cid, n in self._entries(raw, key).items()}
        seen: dict[str, int] = {}
        for cid, text in names.items():
            if not text or text in seen:
                raise _error(
                    self.name,
                    f"{key}: category id {cid} has an empty or repeated name",
                    "a distinct, non-empty name per category",
                    f"{text!r}" + (f" (also category id {seen[text]})" if text in seen else ""),
                    "rename the category, or merge the two under one id",
                )
            seen[text] = cid
        return names

    def _numbers(self, raw: Mapping[str, Any], key: str, allowed: range) -> dict[int, int]:
        numbers: dict[int, int] = {}
        for cid, value in self._entries(raw, key).items():
            number = _int(value)
            if number is None and isinstance(value, str) and value.strip().isdigit():
                number = int(value)
            if number not in allowed:
                raise _error(
                    self.name,
                    f"{key}: category id {cid} has an unexpected name",
                    f"DENTEX names {allowed.start}..{allowed.stop - 1}",
                    repr(value)[:60],
                    "use the DENTEX category lists unchanged",
                )
            numbers[cid] = int(number or 0)
        return numbers

    def label(self, ann: Mapping[str, Any], what: str) -> tuple[str, int | None]:
        if not self.levels:
            cid = _int(ann.get("category_id"))
            if cid not in self.categories:
                raise self._unknown(what, "category_id", ann.get("category_id"), self.categories)
            fdi = ann.get("fdi")
            if fdi is not None:
                number = _int(fdi)
                fdi = check_fdi(number if number is not None else -1, f"{self.name}: {what}")
            return self.categories[int(cid or 0)], fdi
        q = self._lookup(ann, "category_id_1", self.quadrants, what)
        if not self.teeth:
            return f"quadrant {q}", None
        t = self._lookup(ann, "category_id_2", self.teeth, what)
        fdi = check_fdi(q * 10 + t, f"{self.name}: {what}")
        if not self.diagnoses:
            return "tooth", fdi
        return self._lookup(ann, "category_id_3", self.diagnoses, what), fdi

    def _lookup(self, ann: Mapping[str, Any], key: str, table: Mapping[int, Any], what: str) -> Any:
        cid = _int(ann.get(key))
        if cid not in table:
            raise self._unknown(what, key, ann.get(key), table)
        return table[int(cid or 0)]

    def _unknown(self, what: str, key: str, value: Any, table: Mapping[int, Any]) -> InputDataError:
        return _error(
            self.name,
            f"{what} has an unknown {key}",
            f"one of the category ids {listing(str(i) for i in table) or '(none defined)'}",
            repr(value)[:60],
            "fix the annotation's category, or add the category to the JSON",
        )


def _annotation(
    ann: Any,
    k: int,
    name: str,
    images: Mapping[int, Any],
    labeler: _Labeler,
    seen: set[int],
) -> tuple[int, Box]:
    if not isinstance(ann, Mapping):
        raise _error(
            name, f"annotation #{k} is not an object", "an object", repr(ann)[:100], "repair it"
        )
    aid = _int(ann.get("id"))
    if aid is None:
        raise _error(
            name,
            f"annotation #{k} (counting from 0) has no integer id",
            "an integer 'id' on every annotation",
            repr(ann.get("id"))[:60],
            "give every annotation an integer id",
        )
    what = f"annotation id {aid}"
    if aid in seen:
        raise _error(
            name,
            f"{what} appears twice",
            "a distinct id per annotation",
            f"two annotations with id {aid}",
            "renumber the annotations",
        )
    seen.add(aid)
    image_id = _int(ann.get("image_id"))
    if image_id not in images:
        raise _error(
            name,
            f"{what} belongs to an image that is not in 'images'",
            "an image_id listed in 'images'",
            f"image_id {ann.get('image_id')!r}",
            "add the image to 'images', or delete the orphan annotation",
        )
    if ann.get("iscrowd"):
        raise _error(
            name,
            f"{what} is a crowd region (iscrowd=1)",
            "one object per box (iscrowd 0)",
            f"iscrowd={ann.get('iscrowd')!r}",
            "set iscrowd to 0 if the box holds one object, else split it into one box per "
            "object or delete it",
        )
    bbox = ann.get("bbox")
    numbers: list[float] = []
    if isinstance(bbox, list) and len(bbox) == 4:
        numbers = [
            float(v)
            for v in bbox
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ]
    if len(numbers) != 4:
        raise _error(
            name,
            f"{what} has an invalid bbox",
            "[x, y, width, height]: four finite numbers (pixels)",
            repr(bbox)[:100],
            "correct or delete this annotation",
        )
    x, y, w, h = numbers
    if w <= 0 or h <= 0:
        raise _error(
            name,
            f"{what} has a box of zero or negative size",
            "bbox [x, y, width, height] with width > 0 and height > 0",
            f"bbox = {bbox!r}",
            "correct or delete this annotation",
        )
    label, fdi = labeler.label(ann, what)
    box = box_from_xyxy([x, y, x + w, y + h], label, what, name, fdi=fdi)
    return int(image_id or 0), box


# --------------------------------------------------------------------------------------
# Writing (helpers shared with the YOLO writer)


def check_detection(dataset: ImageDataset, fmt: str) -> None:
    if dataset.task != "detection":
        raise OutputError(
            f"cannot write a 2D {dataset.task} dataset as {fmt}",
            expected="a detection dataset (boxes per image)",
            found=f"task {dataset.task}",
            fix="write classification datasets as an ImageFolder",
        )
    known = set(dataset.classes)
    for record in (*dataset.records, *dataset.test_records):
        for box in record.boxes or ():
            if box.label not in known:
                raise OutputError(
                    f"{dataset.root.name}: case {record.case_id} has a box of an unknown class",
                    expected=f"one of the classes {listing(dataset.classes)}",
                    found=repr(box.label),
                    fix="add the class to the dataset's classes",
                )


def target_names(records: Sequence[ImageRecord]) -> dict[str, str]:
    """case id -> a file name unique among `records` (the source name, tagged on clashes)."""
    import hashlib

    names: dict[str, str] = {}
    used: set[str] = set()
    for record in records:
        name = record.image_path.name
        if name.lower() in used:
            tag = hashlib.sha256((record.source_name or record.case_id).encode()).hexdigest()[:8]
            name = f"{tag}_{name}"
        if name.lower() in used:
            raise OutputError(
                f"{name}: two images would be written to one file",
                expected="distinct source images",
                found=f"case {record.case_id} and another with the same name",
                fix="rename one of the source images",
            )
        used.add(name.lower())
        names[record.case_id] = name
    return names


def image_size(record: ImageRecord) -> tuple[int, int]:
    """(width, height) as declared by the layout, else read from the image."""
    if record.expected_size is not None:
        return record.expected_size
    return read_image2d(record.image_path).size


def placement(dataset: ImageDataset) -> dict[str, str]:
    """case id -> train/val/test from the dataset's splits (train when it has none)."""
    where: dict[str, str] = {}
    splits = dataset.predefined_splits or {}
    for split in SPLIT_ORDER:
        for case_id in splits.get(split, ()):
            where.setdefault(case_id, split)
    for record in dataset.records:
        where.setdefault(record.case_id, "train")
    for record in dataset.test_records:
        where[record.case_id] = "test"
    return where


def build(dst: Path, fill: Any) -> Path:
    """Run `fill(tmp)` in a temporary sibling of `dst`, then rename it into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        fill(tmp)
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def write(dataset: ImageDataset, dst: Path) -> Path:
    """Write a detection dataset as COCO: `dst/annotations.json` + `dst/images/`.

    Images are copied byte for byte (16-bit, EXIF kept). Categories get ids 1..N in
    `dataset.classes` order; boxes are written as [x, y, width, height], a box's FDI number as
    an extra `fdi` field. Images without boxes (or without annotation) are written as images
    with no annotation, i.e. negatives. Predefined splits go to `dst/splits.json` (image
    names per split), which dentpy reads back. `dst` must not exist; a failed write leaves
    nothing behind.
    """
    dst = Path(dst)
    check_destination(dst)
    check_detection(dataset, "COCO")
    pool = [*dataset.records, *dataset.test_records]
    names = target_names(pool)
    ids = {name: i for i, name in enumerate(dataset.classes, start=1)}

    def fill(tmp: Path) -> None:
        (tmp / "images").mkdir()
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for image_id, record in enumerate(pool, start=1):
            name = names[record.case_id]
            width, height = image_size(record)
            shutil.copy2(record.image_path, tmp / "images" / name)
            images.append({"id": image_id, "file_name": name, "width": width, "height": height})
            for box in record.boxes or ():
                ann: dict[str, Any] = {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": ids[box.label],
                    "bbox": box.as_xywh(),
                    "area": box.width * box.height,
                    "iscrowd": 0,
                }
                if box.fdi is not None:
                    ann["fdi"] = box.fdi
                annotations.append(ann)
        coco = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": i, "name": n, "supercategory": n} for n, i in ids.items()],
        }
        (tmp / ANNOTATIONS_FILE).write_text(json.dumps(coco, indent=1) + "\n", encoding="utf-8")
        if dataset.predefined_splits:
            where = placement(dataset)
            splits = {
                split: sorted(f"images/{names[c]}" for c, s in where.items() if s == split)
                for split in SPLIT_ORDER
                if split in where.values()
            }
            (tmp / SPLITS_FILE).write_text(json.dumps(splits, indent=2) + "\n", encoding="utf-8")

    return build(dst, fill)
