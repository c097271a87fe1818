"""`dentpy data convert` for 2D datasets: COCO <-> YOLO (Tufts -> either) for detection,
ImageFolder for classification (from a CSV or another ImageFolder).

Images are copied byte for byte (16-bit and EXIF kept), boxes rewritten in the target's
convention. Class names change only through an explicit `--label-map old=new` (names; two
old names may map to one new name to merge classes). Every annotation is checked against
its image first: a dataset `dentpy data check` would refuse is never converted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from dentpy.data.samples2d import Box, ImageDataset, ImageRecord
from dentpy.errors import SpecError
from dentpy.registry import did_you_mean

TARGETS_BY_TASK = {"detection": ("coco", "yolo"), "classification": ("imagefolder",)}


def convert_images(
    dataset: ImageDataset, destination: Path, to: str, label_map: list[str] | None = None
) -> Path:
    from dentpy.data.layouts import coco, imagefolder, yolo

    allowed = TARGETS_BY_TASK.get(dataset.task, ())
    if to not in allowed:
        raise SpecError(
            f"cannot convert a 2D {dataset.task} dataset to {to!r}",
            expected=f"--to {' or '.join(allowed)}" if allowed else "a labelled 2D dataset",
            found=f"--to {to}",
            fix="choose a target that holds this kind of annotation",
        )
    dataset = remap_classes(dataset, label_map or [])
    for record in (*dataset.records, *dataset.test_records):
        record.load()  # raises on anything data check would report
    writers: dict[str, Callable[[ImageDataset, Path], Path]] = {
        "coco": coco.write,
        "yolo": yolo.write,
        "imagefolder": imagefolder.write,
    }
    return writers[to](dataset, destination)


def remap_classes(dataset: ImageDataset, items: list[str]) -> ImageDataset:
    """Rename (or merge) classes by `old=new` name pairs; unnamed classes keep their name."""
    if not items:
        return dataset
    mapping: dict[str, str] = {}
    for item in items:
        old, sep, new = (part.strip() for part in item.partition("="))
        if not sep or not old or not new:
            raise SpecError(
                f"label map entry '{item}' is not of the form old=new",
                expected="old=new with class names, e.g. 'Deep Caries=caries'",
                found=item,
            )
        if old not in dataset.classes:
            raise SpecError(
                f"label map names class {old!r}, which the dataset does not have",
                expected="one of " + ", ".join(dataset.classes),
                found=old,
                fix=did_you_mean(old, list(dataset.classes)),
            )
        mapping[old] = new
    classes: list[str] = []
    for name in dataset.classes:
        renamed = mapping.get(name, name)
        if renamed not in classes:
            classes.append(renamed)

    def moved(record: ImageRecord) -> ImageRecord:
        label = None if record.class_label is None else mapping.get(record.class_label)
        boxes = record.boxes
        if boxes is not None:
            boxes = tuple(_renamed(box, mapping) for box in boxes)
        return replace(record, class_label=label or record.class_label, boxes=boxes)

    return replace(
        dataset,
        classes=tuple(classes),
        records=tuple(moved(r) for r in dataset.records),
        test_records=tuple(moved(r) for r in dataset.test_records),
    )


def _renamed(box: Box, mapping: dict[str, str]) -> Box:
    return replace(box, label=mapping.get(box.label, box.label))
