"""2D datasets: records for classification (a class per image), detection (boxes per image)
and their loaded, validated form.

The 3D side has `CaseRecord`/`Dataset`; this is its 2D sibling. A record holds paths and the
annotations parsed from the layout's side files (COCO JSON, YOLO .txt, Tufts JSON, a CSV);
`ImageRecord.load` reads the pixels and checks every annotation against the image it
belongs to. Boxes are pixel-edge coordinates `[x_min, y_min, x_max, y_max]` in the displayed
(EXIF-applied) orientation, whatever convention the file used.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dentpy.data.case import is_inside
from dentpy.data.image2d import Image2D, read_image2d, read_mask2d
from dentpy.data.stats import evenly_spaced, min_median_max
from dentpy.errors import InputDataError

# Annotation tools round box corners to whole pixels, so a corner may lie up to one pixel
# past the border; such boxes are clipped to the image. Anything further out is an error.
BOX_BORDER_TOLERANCE_PX = 1.0
TASKS_2D = ("classification", "detection", "images")


@dataclass(frozen=True)
class Box:
    """One annotated box in pixel-edge coordinates (x to the right, y down).

    `label` is the class name. `fdi` is the tooth's FDI number when the dataset says which
    tooth the box belongs to (DENTEX quadrant + tooth, Tufts Universal numbers converted).
    `source` names the annotation in its file (e.g. "annotation id 17", "line 3"), so an
    error about the box can point at it.
    """

    x_min: float
    y_min: float
    x_max: float
    y_max: float
    label: str
    fdi: int | None = None
    source: str = ""

    @property
    def width(self) -> float:
        return self.x_max - self.x_min

    @property
    def height(self) -> float:
        return self.y_max - self.y_min

    def as_xywh(self) -> list[float]:
        return [self.x_min, self.y_min, self.width, self.height]


def box_from_xyxy(
    values: Sequence[Any], label: str, source: str, where: str, fdi: int | None = None
) -> Box:
    """A `Box` from four numbers, refusing NaN, non-numbers and negative or zero sizes.

    `where` names the file (dataset-relative) for the error.
    """
    numbers = _four_numbers(values, source, where)
    x_min, y_min, x_max, y_max = numbers
    if x_max <= x_min or y_max <= y_min:
        raise InputDataError(
            f"{where}: {source} has a box of zero or negative size",
            expected="x_max > x_min and y_max > y_min (positive width and height)",
            found=f"[x_min, y_min, x_max, y_max] = {_fmt(numbers)}",
            fix="correct or delete this annotation",
        )
    return Box(x_min, y_min, x_max, y_max, label, fdi, source)


def _four_numbers(values: Sequence[Any], source: str, where: str) -> list[float]:
    ok = isinstance(values, (list, tuple)) and len(values) == 4
    numbers: list[float] = []
    if ok:
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                ok = False
                break
            numbers.append(float(v))
    if not ok:
        raise InputDataError(
            f"{where}: {source} has an invalid box",
            expected="four finite numbers",
            found=repr(values)[:100],
            fix="correct or delete this annotation",
        )
    return numbers


@dataclass(frozen=True, eq=False)
class ImageSample:
    """A loaded 2D case: the image and whichever annotation its layout provides."""

    case_id: str
    patient_id: str
    image: Image2D
    class_label: str | None = None
    boxes: tuple[Box, ...] | None = None
    mask: Image2D | None = None


@dataclass(frozen=True)
class ImageRecord:
    """Where one 2D case is and what its layout said about it.

    `boxes` is None when the image is not annotated for detection, and () when it is
    annotated and shows no finding (a negative image: a valid, useful training case).
    `expected_size` is the (width, height) a side file declared (COCO `width`/`height`),
    checked against the pixels on load.
    """

    case_id: str
    patient_id: str
    image_path: Path
    class_label: str | None = None
    boxes: tuple[Box, ...] | None = None
    mask_path: Path | None = None
    expected_size: tuple[int, int] | None = None
    root: Path | None = None
    # The dataset's own name for the image; may identify a patient, so it is only used in
    # files written into the user's own dataset (converted copies, splits), never in logs.
    source_name: str = ""
    # Where the annotation came from (e.g. "annotations.json", "labels/x.txt"), for errors.
    annotation_file: str = ""
    # Files must resolve inside `root` (a symlink leading out of the dataset is refused,
    # RELIABILITY.md C27). Images a user names one by one for prediction are not confined.
    confined: bool = True

    def name_of(self, path: Path) -> str:
        if self.root is not None:
            try:
                return path.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return path.name

    @property
    def has_label(self) -> bool:
        return self.class_label is not None or self.boxes is not None or self.mask_path is not None

    def load(self) -> ImageSample:
        image = self._read_image()
        where = self.name_of(self.image_path)
        if self.expected_size is not None and self.expected_size != image.size:
            hint = (
                "the image carries an EXIF rotation: the annotations were made on the "
                "unrotated pixels; re-export the image without EXIF orientation or "
                "re-annotate it as displayed"
                if image.exif_orientation != 1 and self.expected_size == image.size[::-1]
                else "fix width/height in the annotation file, or use the image it describes"
            )
            raise InputDataError(
                f"case {self.case_id} ({where}): image size differs from its annotation file",
                expected=f"width x height {self.expected_size[0]} x {self.expected_size[1]}"
                + (f" (as {self.annotation_file})" if self.annotation_file else ""),
                found=f"{image.width} x {image.height} pixels (displayed orientation)",
                fix=hint,
            )
        boxes = None if self.boxes is None else self._checked_boxes(image)
        mask = self._read_mask(image) if self.mask_path is not None else None
        return ImageSample(self.case_id, self.patient_id, image, self.class_label, boxes, mask)

    def _error(self, path: Path, what: str, **parts: str | None) -> InputDataError:
        return InputDataError(f"case {self.case_id} ({self.name_of(path)}): {what}", **parts)

    def _read_image(self) -> Image2D:
        return self._read(self.image_path, read_image2d)

    def _read(self, path: Path, reader: Any) -> Image2D:
        if not path.is_file():
            raise self._error(
                path,
                "file not found",
                expected=f"{self.name_of(path)} in the dataset",
                found="no such file",
                fix="add the missing file, or remove its entry from the annotations",
            )
        if self.confined and self.root is not None and not is_inside(path, self.root):
            raise self._error(
                path,
                "file points outside the dataset (a symlink leading out of the dataset folder)",
                expected=f"{self.name_of(path)} resolving to a file inside {self.root.name}",
                found="a link whose target lies outside the dataset folder",
                fix="copy the file into the dataset instead of linking to it (links between "
                "files inside the dataset are fine)",
            )
        try:
            image: Image2D = reader(path)
        except InputDataError as exc:
            raise self._error(
                path,
                exc.what.removeprefix(f"{path.name}: "),
                expected=exc.expected,
                found=exc.found,
                fix=exc.fix,
            ) from None
        return image

    def _checked_boxes(self, image: Image2D) -> tuple[Box, ...]:
        width, height = image.size
        tol = BOX_BORDER_TOLERANCE_PX
        checked = []
        for box in self.boxes or ():
            if (
                box.x_min < -tol
                or box.y_min < -tol
                or box.x_max > width + tol
                or box.y_max > height + tol
            ):
                where = self.annotation_file or self.name_of(self.image_path)
                raise InputDataError(
                    f"case {self.case_id} ({where}): {box.source or 'a box'} is outside the image",
                    expected=f"inside 0..{width} x 0..{height} pixels (±{tol:g} px rounding)",
                    found=f"[x_min, y_min, x_max, y_max] = "
                    f"{_fmt([box.x_min, box.y_min, box.x_max, box.y_max])}",
                    fix="correct the box; a box past the border usually means the annotation "
                    "belongs to another image or uses another coordinate convention",
                )
            clipped = Box(
                max(box.x_min, 0.0),
                max(box.y_min, 0.0),
                min(box.x_max, float(width)),
                min(box.y_max, float(height)),
                box.label,
                box.fdi,
                box.source,
            )
            checked.append(clipped)
        return tuple(checked)

    def _read_mask(self, image: Image2D) -> Image2D:
        if self.mask_path is None:
            raise ValueError("no mask to read")
        mask = self._read(self.mask_path, read_mask2d)
        if mask.size != image.size:
            rotated = mask.size == image.size[::-1]
            raise self._error(
                self.mask_path,
                "mask size differs from the image",
                expected=f"{image.width} x {image.height} pixels (as the displayed image)",
                found=f"{mask.width} x {mask.height} pixels",
                fix="the image has an EXIF rotation and the mask was drawn on the unrotated "
                "pixels (or the reverse): re-export one so both are stored as displayed"
                if rotated
                else "re-export the mask on the image's pixel grid; dentpy never resizes masks",
            )
        return mask


@dataclass(frozen=True)
class ImageDataset:
    """A 2D dataset: classification or detection records (or unlabelled images).

    `classes` are the class names in id order (id = index): folder names for ImageFolder,
    CSV labels, COCO categories, YOLO `names`. `records` is the labelled pool, `test_records`
    held-out or unlabelled images.
    """

    root: Path
    layout: str
    task: str
    classes: tuple[str, ...]
    records: tuple[ImageRecord, ...]
    test_records: tuple[ImageRecord, ...] = ()
    predefined_splits: dict[str, tuple[str, ...]] | None = None
    # Per-class attributes a layout knows (e.g. DENTEX's quadrant/tooth/diagnosis scheme).
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS_2D:
            raise ValueError(f"task {self.task!r} not in {TASKS_2D}")
        counts = Counter(r.case_id for r in (*self.records, *self.test_records))
        twice = sorted(c for c, n in counts.items() if n > 1)
        if twice:
            raise InputDataError(
                f"{self.root.name}: the same image appears more than once",
                expected="every image once, either in training or in test",
                found=f"cases {', '.join(twice[:10])}",
                fix="remove the duplicate; an image in both training and test leaks test data",
            )

    @property
    def labels(self) -> dict[str, int]:
        """Class name -> id, the same shape as the 3D `Dataset.labels`."""
        return {name: i for i, name in enumerate(self.classes)}

    def load(self, record: ImageRecord) -> ImageSample:
        return record.load()

    def fingerprint(self, max_cases: int | None = None) -> dict[str, Any]:
        """Counts, sizes, bit depths, intensity percentiles, class balance and box statistics.

        No path and no image name: only the dataset folder's own name.
        """
        pool = [*self.records, *self.test_records]
        chosen = evenly_spaced(pool, max_cases)
        sizes: list[tuple[int, int]] = []
        dtypes: Counter[str] = Counter()
        channels: Counter[int] = Counter()
        spacings: list[tuple[float, float]] = []
        exif: Counter[int] = Counter()
        samples: list[np.ndarray] = []
        rng = np.random.default_rng(0)
        for record in chosen:
            image = record.load().image
            sizes.append(image.size)
            dtypes[str(image.array.dtype)] += 1
            channels[image.channels] += 1
            exif[image.exif_orientation] += 1
            if image.pixel_spacing_mm is not None:
                spacings.append(image.pixel_spacing_mm)
            values = image.grayscale.ravel()
            if values.size > 10_000:
                values = rng.choice(values, 10_000, replace=False)
            samples.append(values.astype(np.float64))
        result: dict[str, Any] = {
            "dataset": self.root.name,
            "layout": self.layout,
            "task": self.task,
            "classes": list(self.classes),
            "n_cases": len(self.records),
            "n_test_cases": len(self.test_records),
            "n_cases_fingerprinted": len(chosen),
            "size_wh": min_median_max(sizes),
            "pixel_spacing_mm": min_median_max(spacings),
            "n_with_pixel_spacing": len(spacings),
            "dtypes": dict(sorted(dtypes.items())),
            "channels": {str(k): v for k, v in sorted(channels.items())},
            "exif_orientations": {str(k): v for k, v in sorted(exif.items())},
            "intensity": _intensity(samples),
        }
        if self.task == "classification":
            balance = Counter(r.class_label for r in self.records)
            result["class_counts"] = {c: balance.get(c, 0) for c in self.classes}
        if self.task == "detection":
            result.update(box_statistics([r for r in self.records if r.boxes is not None]))
        return result


def box_statistics(records: Sequence[ImageRecord]) -> dict[str, Any]:
    """Boxes per class, per image, and their sizes (pixels), from annotations alone."""
    per_class: Counter[str] = Counter()
    per_image = []
    widths, heights = [], []
    for record in records:
        boxes = record.boxes or ()
        per_image.append(len(boxes))
        for box in boxes:
            per_class[box.label] += 1
            widths.append(box.width)
            heights.append(box.height)
    return {
        "box_counts": dict(sorted(per_class.items())),
        "n_boxes": sum(per_class.values()),
        "n_images_without_boxes": sum(1 for n in per_image if n == 0),
        "boxes_per_image": min_median_max([(float(n),) for n in per_image]),
        "box_size_wh": min_median_max(list(zip(widths, heights, strict=True))),
    }


def _intensity(samples: list[np.ndarray]) -> dict[str, Any]:
    values = np.concatenate(samples) if samples else np.zeros(0)
    if values.size == 0:
        return {"n_pixels_sampled": 0}
    return {
        "n_pixels_sampled": int(values.size),
        "percentiles": {f"{p:g}": float(np.percentile(values, p)) for p in (0.5, 50.0, 99.5)},
        "min": float(values.min()),
        "max": float(values.max()),
    }


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"
