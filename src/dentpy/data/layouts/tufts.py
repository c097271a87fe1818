"""Layout "tufts": the Tufts Dental Database (https://tdd.ece.tufts.edu/), tooth boxes.

    ROOT/Radiographs/1.JPG ...              panoramic radiographs
    ROOT/Segmentation/teeth_bbox.json       one box per tooth (what is read here)
    ROOT/Segmentation/teeth_polygon.json, teeth_mask/, Expert/, Student/   not read

teeth_bbox.json is a Labelbox export: a JSON list with one entry per radiograph,

    [{"External ID": "1.jpg",
      "Label": {"objects": [{"title": "18", "bounding box": [y_min, x_min, y_max, x_max]},
                            ...]}},
     ...]

(structure and coordinate order as documented by users who checked them against the real
files: the first and third numbers fit the 840-pixel image height, the second and fourth the
1615-pixel width; e.g. github.com/FrankWuuu/Tufts-dental-dataset-to-COCO and two loaders
that verified them on all 1,000 entries). "External_ID" is accepted as a spelling of
"External ID". The External ID is matched to Radiographs/ without regard to case
("797.jpg" in the JSON, "797.JPG" on disk). `title` is the Universal tooth number (1-32,
A-T for deciduous teeth), converted to FDI: every box has label "tooth" and `fdi` set;
classes = ("tooth",). An entry with no objects is a negative (`boxes=()`); a "Skip" label
(Labelbox: not annotated) leaves the image unannotated (`boxes=None`). Radiographs without an
entry in the JSON are kept as unlabelled test records; an entry without its radiograph is
refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from dentpy.data.case import pseudonym
from dentpy.data.fdi import universal_to_fdi
from dentpy.data.image2d import is_image2d_file
from dentpy.data.layouts import read_json, relative_name, visible_entries
from dentpy.data.samples2d import Box, ImageDataset, ImageRecord, box_from_xyxy
from dentpy.errors import InputDataError

RADIOGRAPHS = "Radiographs"
BBOX_FILE = "Segmentation/teeth_bbox.json"
_EXPECTED_ENTRY = (
    '{"External ID": "1.jpg", "Label": {"objects": [{"title": "<Universal number>", '
    '"bounding box": [y_min, x_min, y_max, x_max]}]}}'
)


def looks_like(path: Path) -> bool:
    path = Path(path)
    return (path / BBOX_FILE).is_file() and (path / RADIOGRAPHS).is_dir()


def _error(name: str, what: str, expected: str, found: str, fix: str) -> InputDataError:
    return InputDataError(f"{name}: {what}", expected=expected, found=found, fix=fix)


def read(path: Path) -> ImageDataset:
    root = Path(path)
    if not looks_like(root):
        raise _error(
            root.name,
            "not a Tufts Dental Database folder",
            f"{RADIOGRAPHS}/ and {BBOX_FILE}",
            ", ".join(p.name for p in visible_entries(root)) if root.is_dir() else "a file",
            "pass the folder that holds Radiographs/ and Segmentation/",
        )
    name = BBOX_FILE
    raw = read_json(root / BBOX_FILE, root)
    if isinstance(raw, Mapping):
        raw = list(raw.values())
    if not isinstance(raw, list):
        raise _error(
            name,
            "unexpected structure",
            f"a JSON list of entries like {_EXPECTED_ENTRY}",
            type(raw).__name__,
            "use the teeth_bbox.json of the Tufts Dental Database unchanged",
        )
    images: dict[str, Path] = {}
    for image in visible_entries(root / RADIOGRAPHS):
        if is_image2d_file(image):
            key = image.name.lower()
            if key in images:
                raise _error(
                    RADIOGRAPHS,
                    "two radiographs differ only in upper/lower case",
                    "one file per name",
                    f"{images[key].name} and {image.name}",
                    "rename or remove one of them",
                )
            images[key] = image
    records: list[ImageRecord] = []
    used: dict[str, int] = {}
    for k, entry in enumerate(raw):
        image, boxes = _entry(entry, k, name, images, used)
        rel = relative_name(image, root)
        case_id = pseudonym(rel)
        records.append(
            ImageRecord(
                case_id=case_id,
                patient_id=case_id,
                image_path=image,
                boxes=boxes,
                root=root,
                source_name=rel,
                annotation_file=name,
            )
        )
    unlabelled = []
    for key, image in sorted(images.items()):
        if key not in used:
            rel = relative_name(image, root)
            case_id = pseudonym(rel)
            unlabelled.append(ImageRecord(case_id, case_id, image, root=root, source_name=rel))
    return ImageDataset(
        root=root,
        layout="tufts",
        task="detection",
        classes=("tooth",),
        records=tuple(r for r in records if r.boxes is not None),
        test_records=tuple([*(r for r in records if r.boxes is None), *unlabelled]),
        notes={"numbering": "Universal tooth numbers (title) converted to FDI (Box.fdi)"},
    )


def _entry(
    entry: Any, k: int, name: str, images: Mapping[str, Path], used: dict[str, int]
) -> tuple[Path, tuple[Box, ...] | None]:
    where = f"entry #{k}"
    if not isinstance(entry, Mapping):
        raise _error(
            name,
            f"{where} is not an object",
            _EXPECTED_ENTRY,
            repr(entry)[:100],
            "use the teeth_bbox.json of the Tufts Dental Database unchanged",
        )
    external = entry.get("External ID", entry.get("External_ID"))
    if not isinstance(external, str) or not external.strip():
        raise _error(
            name,
            f"{where} has no External ID",
            '"External ID": the radiograph file name, e.g. "1.jpg"',
            repr(external)[:100],
            "add the radiograph's file name",
        )
    pure = PurePosixPath(external.replace("\\", "/"))
    if len(pure.parts) != 1 or pure.name in ("..", "."):
        raise _error(
            name,
            f"{where}: External ID is not a plain file name",
            f"a file name in {RADIOGRAPHS}/ (no folders, no '..')",
            repr(external)[:200],
            "give the radiograph's file name only",
        )
    where = f"entry #{k} (External ID {external})"
    key = pure.name.lower()
    if key not in images:
        raise _error(
            name,
            f"{where}: radiograph not found",
            f"{pure.name} in {RADIOGRAPHS}/ (any upper/lower case)",
            "no such file",
            "add the radiograph, or remove its entry from the JSON",
        )
    if key in used:
        raise _error(
            name,
            f"{where} appears twice",
            "one entry per radiograph",
            f"entries #{used[key]} and #{k}",
            "merge the two entries",
        )
    used[key] = k
    label = entry.get("Label")
    if label == "Skip":
        return images[key], None
    if not isinstance(label, Mapping):
        raise _error(
            name,
            f"{where} has no Label object",
            '"Label": {"objects": [...]}',
            repr(label)[:100],
            "use the teeth_bbox.json of the Tufts Dental Database unchanged",
        )
    objects = label.get("objects", [])
    if not isinstance(objects, list):
        raise _error(
            name,
            f"{where}: Label.objects is not a list",
            "a list of tooth objects",
            repr(objects)[:100],
            "use the teeth_bbox.json of the Tufts Dental Database unchanged",
        )
    boxes = [_box(obj, j, where, name) for j, obj in enumerate(objects)]
    return images[key], tuple(boxes)


def _box(obj: Any, j: int, where: str, name: str) -> Box:
    source = f"{where}, object #{j}"
    if not isinstance(obj, Mapping) or "bounding box" not in obj or "title" not in obj:
        raise _error(
            name,
            f"{source} has no title or bounding box",
            '{"title": "<Universal number>", "bounding box": [y_min, x_min, y_max, x_max]}',
            repr(obj)[:100],
            "correct or delete this object",
        )
    title = obj["title"]
    try:
        fdi = universal_to_fdi(title)
    except InputDataError:
        raise _error(
            name,
            f"{source} has a title that is not a Universal tooth number",
            "1-32 (permanent) or A-T (deciduous)",
            repr(title)[:60],
            "correct the tooth number",
        ) from None
    source = f"{source} (tooth {title})"
    values = obj["bounding box"]
    if isinstance(values, (list, tuple)) and len(values) == 4:
        y_min, x_min, y_max, x_max = values
        values = [x_min, y_min, x_max, y_max]
    return box_from_xyxy(values, "tooth", source, name, fdi=fdi)
