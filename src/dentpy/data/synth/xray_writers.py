"""Write synthetic X-rays in every layout dentpy reads, so the real-data readers serve them.

Everything is built in a hidden staging folder next to `out/XraySynth` and renamed into place
at the end: a crash leaves nothing half-written, and an existing XraySynth is refused (never
replaced). Detection folders are written by the COCO/YOLO writers themselves, so the boxes
are guaranteed to read back as written.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from dentpy.data.image2d_io import write_image2d
from dentpy.data.layouts import coco, yolo
from dentpy.data.samples2d import Box, ImageDataset, ImageRecord
from dentpy.data.synth.panoramic import FDI_ORDER, generate_panoramic
from dentpy.data.synth.xray import ALL_KINDS, XraySample, check_kind, generate_xray
from dentpy.data.synth.xray_anatomy import GRADE_NAMES, SURFACES
from dentpy.errors import OutputError, SpecError

ROOT_NAME = "XraySynth"
CROP_MARGIN = 6  # pixels of context around a tooth box


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_xray_dataset(
    out: Path, images: int = 60, seed: int = 0, kind: str = "bitewing"
) -> dict[str, Path]:
    """Write `images` synthetic X-rays under `out/XraySynth`; returns the folders by name.

    Keys: root, images, masks, surfaces (CSV), caries_binary (ImageFolder), caries_severity
    (CSV layout), detection_coco, detection_yolo (lesion boxes: mild / moderate / severe),
    teeth_coco, teeth_yolo (one box per tooth, class = its FDI number). `kind` is bitewing,
    periapical or panoramic; image i is `generate_xray(seed, i, kind)` (or
    `generate_panoramic(seed, i)`), so the same arguments give byte-identical files.
    """
    check_kind(kind, ALL_KINDS)
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise SpecError(
            "synthetic X-rays: images must be an integer >= 1",
            expected="images >= 1",
            found=repr(images),
            fix="ask for at least 1 image",
        )
    out = Path(out)
    root = out / ROOT_NAME
    if root.exists() or root.is_symlink():
        raise OutputError(
            f"{ROOT_NAME} already exists in {out.name or out}",
            expected="an output folder without XraySynth (dentpy never overwrites data)",
            found="an existing " + ("folder" if root.is_dir() else "file"),
            fix="choose another output folder, or delete the old XraySynth first",
        )
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{ROOT_NAME}-", dir=out))
    try:
        _fill(staging, images, seed, kind)
        os.chmod(staging, 0o777 & ~_umask())
        os.rename(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    names = ["images", "masks", "caries_binary", "caries_severity"]
    paths = {name: root / name for name in names}
    paths.update(
        root=root,
        surfaces=root / "surfaces.csv",
        detection_coco=root / "detection_coco",
        detection_yolo=root / "detection_yolo",
        teeth_coco=root / "teeth_coco",
        teeth_yolo=root / "teeth_yolo",
    )
    return paths


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _generate(seed: int, index: int, kind: str) -> XraySample:
    if kind == "panoramic":
        return generate_panoramic(seed, index)
    return generate_xray(seed, index, kind)


def tooth_classes(kind: str) -> tuple[str, ...]:
    """Tooth-enumeration classes in FDI order: all 32 on a panoramic, premolars and molars
    (positions 4..8) on the intraoral kinds."""
    if kind == "panoramic":
        return tuple(str(fdi) for fdi in FDI_ORDER)
    return tuple(str(fdi) for fdi in FDI_ORDER if fdi % 10 >= 4)


def _fill(root: Path, images: int, seed: int, kind: str) -> None:
    surfaces: list[list[object]] = []
    binary_patients: list[list[object]] = []
    severity: list[list[object]] = []
    records: list[ImageRecord] = []
    tooth_records: list[ImageRecord] = []
    for index in range(images):
        sample = _generate(seed, index, kind)
        name = f"xray_{index:03d}"
        image_path = write_image2d(sample.image, root / "images" / f"{name}.png")
        write_image2d(sample.mask, root / "masks" / f"{name}.png")
        for tooth in sample.teeth:
            for surface in SURFACES:
                row = [f"images/{name}.png", sample.patient, tooth.fdi, surface]
                surfaces.append([*row, tooth.grades[surface], *tooth.box])
            crop = _crop(sample, tooth.box)
            crop_name = f"{name}_t{tooth.fdi}.png"
            folder = "caries" if tooth.worst > 0 else "sound"
            write_image2d(crop, root / "caries_binary" / folder / crop_name)
            binary_patients.append([f"{folder}/{crop_name}", sample.patient])
            write_image2d(crop, root / "caries_severity" / "crops" / crop_name)
            severity.append([f"crops/{crop_name}", GRADE_NAMES[tooth.worst], sample.patient])
        boxes = tuple(
            Box(
                x_min=float(lesion.box[0]),
                y_min=float(lesion.box[1]),
                x_max=float(lesion.box[2]),
                y_max=float(lesion.box[3]),
                label=GRADE_NAMES[lesion.grade],
                fdi=lesion.fdi,
                source=f"{lesion.surface} lesion",
            )
            for lesion in sample.lesions
        )
        records.append(
            ImageRecord(
                case_id=name,
                patient_id=sample.patient,
                image_path=image_path,
                boxes=boxes,
                root=root / "images",
                source_name=f"{name}.png",
            )
        )
        tooth_boxes = tuple(
            Box(
                x_min=float(tooth.box[0]),
                y_min=float(tooth.box[1]),
                x_max=float(tooth.box[2]),
                y_max=float(tooth.box[3]),
                label=str(tooth.fdi),
                fdi=tooth.fdi,
                source=f"tooth {tooth.fdi}",
            )
            for tooth in sample.teeth
        )
        tooth_records.append(replace(records[-1], boxes=tooth_boxes))
    _write_csv(
        root / "surfaces.csv",
        ["image", "patient", "tooth", "surface", "grade", "x_min", "y_min", "x_max", "y_max"],
        surfaces,
    )
    _write_csv(root / "caries_binary" / "patients.csv", ["image", "patient"], binary_patients)
    for folder in ("sound", "caries"):  # an ImageFolder needs both class folders
        (root / "caries_binary" / folder).mkdir(parents=True, exist_ok=True)
    _write_csv(root / "caries_severity" / "labels.csv", ["image", "label", "patient"], severity)
    (root / "caries_severity" / "classes.txt").write_text(
        "\n".join(GRADE_NAMES) + "\n", encoding="utf-8"
    )
    dataset = ImageDataset(
        root=root / "images",
        layout="synthetic",
        task="detection",
        classes=GRADE_NAMES[1:],
        records=tuple(records),
    )
    coco.write(dataset, root / "detection_coco")
    yolo.write(dataset, root / "detection_yolo")
    teeth = replace(dataset, classes=tooth_classes(kind), records=tuple(tooth_records))
    coco.write(teeth, root / "teeth_coco")
    yolo.write(teeth, root / "teeth_yolo")


def _crop(sample: XraySample, box: tuple[int, int, int, int]) -> np.ndarray:
    """Tooth box plus a margin, native pixels (crops differ in size, as real ones do)."""
    height, width = sample.image.shape
    x0, y0, x1, y1 = box
    return sample.image[
        max(y0 - CROP_MARGIN, 0) : min(y1 + CROP_MARGIN, height),
        max(x0 - CROP_MARGIN, 0) : min(x1 + CROP_MARGIN, width),
    ]
