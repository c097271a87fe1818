"""A dataset on disk: its layout, label map and case records, and its fingerprint.

`open_dataset` finds the layout (or takes the one named), reads the folder structure and
side files (dataset.json, splits.json, patients.csv) and returns a `Dataset` of records;
no volume is read until a record is loaded. `Dataset.fingerprint` then summarises the data
(spacings, shapes, intensities, label fractions, orientations) as JSON for planning, with
no patient identifier and no path beyond the dataset folder's own name.

Example::

    dataset = open_dataset("Dataset001_Teeth")
    case = dataset.load(dataset.records[0])   # validated image + label
    print(dataset.fingerprint(max_cases=20))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from dentpy.data.case import Case, CaseRecord, checked_spacing
from dentpy.data.samples2d import ImageDataset
from dentpy.data.stats import evenly_spaced, min_median_max
from dentpy.errors import InputDataError
from dentpy.registry import did_you_mean

LAYOUTS_3D: tuple[str, ...] = ("nnunet", "msd", "pulpy", "toothfairy", "files")
# 2D layouts hold X-rays and photos with class labels or boxes (`samples2d.ImageDataset`).
LAYOUTS_2D: tuple[str, ...] = ("coco", "yolo", "tufts", "imagefolder", "csv", "images")
LAYOUTS: tuple[str, ...] = LAYOUTS_3D + LAYOUTS_2D

# Foreground voxels sampled per case for intensity statistics: enough for stable
# percentiles, small enough that a fingerprint of hundreds of CBCTs stays in memory.
VOXELS_PER_CASE = 10_000
PERCENTILES = (0.5, 50.0, 99.5)


@dataclass(frozen=True)
class Dataset:
    """Records of one dataset. `records` is the labelled training pool; `test_records` are
    held-out cases (imagesTs, or files to predict on) that may lack labels.

    `predefined_splits` (split name -> case ids) comes from a dataset's own splits.json, so a
    splitter can honour it; None when the dataset ships none.
    """

    root: Path
    layout: str
    labels: dict[str, int]
    records: tuple[CaseRecord, ...]
    test_records: tuple[CaseRecord, ...]
    predefined_splits: dict[str, tuple[str, ...]] | None = None
    assume_spacing_mm: tuple[float, float, float] | None = field(default=None)

    def __post_init__(self) -> None:
        counts = Counter(r.case_id for r in (*self.records, *self.test_records))
        twice = sorted(case_id for case_id, n in counts.items() if n > 1)
        if twice:
            raise InputDataError(
                f"{self.root.name}: the same case appears more than once",
                expected="every case once, either in training or in test",
                found=f"cases {', '.join(twice[:10])} listed {counts[twice[0]]} times",
                fix="remove the duplicate; a case in both training and test leaks test data",
            )

    def load(self, record: CaseRecord) -> Case:
        """Load a record with this dataset's label map and assumed spacing."""
        return record.load(self.labels, self.assume_spacing_mm)

    def fingerprint(self, max_cases: int | None = None) -> dict[str, Any]:
        """Summary statistics (JSON-able) of up to `max_cases` evenly chosen cases.

        Intensity percentiles are over foreground (label > 0) voxels of labelled cases, or
        over all voxels when no case has a label (then `intensity.region` says "all").
        """
        pool = self.records or self.test_records
        chosen = evenly_spaced(pool, max_cases)
        spacings, shapes, samples = [], [], []
        orientations: Counter[str] = Counter()
        label_counts: Counter[int] = Counter()
        labelled_voxels = 0
        rng = np.random.default_rng(0)  # fixed: the same data gives the same fingerprint
        region = "foreground" if any(r.has_label for r in chosen) else "all"
        for record in chosen:
            case = self.load(record)
            spacings.append(case.image.spacing_mm)
            shapes.append(case.image.shape)
            orientations["".join(_axcodes(case.image.affine))] += 1
            values = case.image.array
            if case.label is not None:
                ids, counts = np.unique(case.label.array, return_counts=True)
                label_counts.update({int(i): int(c) for i, c in zip(ids, counts, strict=True)})
                labelled_voxels += case.label.array.size
                values = values[case.label.array > 0]
            elif region == "foreground":
                continue
            values = values.ravel()
            if values.size > VOXELS_PER_CASE:
                values = rng.choice(values, VOXELS_PER_CASE, replace=False)
            samples.append(values.astype(np.float64))
        names = {v: k for k, v in self.labels.items()}
        return {
            "dataset": self.root.name,
            "layout": self.layout,
            "labels": dict(self.labels),
            "n_cases": len(self.records),
            "n_test_cases": len(self.test_records),
            "n_cases_fingerprinted": len(chosen),
            "assume_spacing_mm": list(self.assume_spacing_mm) if self.assume_spacing_mm else None,
            "spacing_mm": min_median_max(spacings),
            "shape": min_median_max(shapes),
            "intensity": _intensity(samples, region),
            "label_fractions": {
                names.get(i, f"label_{i}"): label_counts[i] / labelled_voxels
                for i in sorted(label_counts)
            }
            if labelled_voxels
            else {},
            "orientations": dict(sorted(orientations.items())),
        }


def open_dataset(
    path: str | Path,
    layout: str = "auto",
    assume_spacing_mm: tuple[float, float, float] | None = None,
) -> Dataset:
    """Open a 3D dataset folder (or a single volume file) in one of `LAYOUTS_3D`.

    `layout="auto"` detects it; `assume_spacing_mm` overrides the voxel size stored in the
    files (Pulpy3D stores 1.0 mm for ~0.3 mm scans). A 2D dataset is refused with a message
    saying what it is; `open_any` opens both kinds.
    """
    dataset = open_any(path, layout, assume_spacing_mm)
    if not isinstance(dataset, Dataset):
        raise InputDataError(
            f"{dataset.root.name}: a 2D {dataset.task} dataset ({dataset.layout} layout), "
            "where 3D volumes were expected",
            expected=f"a 3D layout: {', '.join(LAYOUTS_3D)}",
            found=f"{len(dataset.records) + len(dataset.test_records)} 2D images"
            + (f", classes {', '.join(dataset.classes[:8])}" if dataset.classes else ""),
            fix="point the spec's input.data at a CBCT/CT dataset; 2D images are used by "
            "the 2D tasks (classification, detection)",
        )
    return dataset


def open_any(
    path: str | Path,
    layout: str = "auto",
    assume_spacing_mm: tuple[float, float, float] | None = None,
) -> Dataset | ImageDataset:
    """Open any dataset dentpy reads: 3D (`Dataset`) or 2D (`ImageDataset`)."""
    # Imported here: the layout modules build Datasets, so they import this module.
    from dentpy.data.layouts import (
        coco,
        csv_labels,
        files,
        imagefolder,
        images,
        msd,
        nnunet,
        optional_splits,
        pulpy,
        toothfairy,
        tufts,
        yolo,
    )
    from dentpy.data.layouts.detect import detect_layout

    path = Path(path)
    if layout != "auto" and layout not in LAYOUTS:
        raise InputDataError(
            f"unknown dataset layout {layout!r}",
            expected=f"'auto' or one of {', '.join(LAYOUTS)}",
            found=repr(layout),
            fix=did_you_mean(layout, list(LAYOUTS)),
        )
    if assume_spacing_mm is not None:
        # Checked now rather than at the first load, deep inside training.
        assume_spacing_mm = checked_spacing(assume_spacing_mm)
    if not path.exists():
        raise InputDataError(
            f"{path.name or path}: dataset not found",
            expected="an existing dataset folder or image/volume file",
            found="nothing at that path",
            fix="check the path",
        )
    chosen = detect_layout(path) if layout == "auto" else layout
    readers: dict[str, Callable[[Path], Dataset | ImageDataset]] = {
        "nnunet": nnunet.read,
        "msd": msd.read,
        "pulpy": pulpy.read,
        "toothfairy": toothfairy.read,
        "files": files.read,
        "coco": coco.read,
        "yolo": yolo.read,
        "tufts": tufts.read,
        "imagefolder": imagefolder.read,
        "csv": csv_labels.read,
        "images": images.read,
    }
    dataset = readers[chosen](path)
    if isinstance(dataset, ImageDataset):
        if assume_spacing_mm is not None:
            raise InputDataError(
                f"{dataset.root.name}: assume_spacing_mm given for a 2D dataset",
                expected="no voxel size for 2D images (their pixel size comes from DICOM tags)",
                found=repr(assume_spacing_mm),
                fix="remove assume_spacing_mm / --assume-spacing",
            )
        if dataset.predefined_splits is None and dataset.root.is_dir():
            # A splits.json written by `dentpy data split` names images by their source name.
            names = {r.source_name for r in (*dataset.records, *dataset.test_records)}
            splits = optional_splits(dataset.root, names)
            if splits is not None:
                dataset = replace(dataset, predefined_splits=splits)
        return dataset
    # A layout may know its spacing (ToothFairy: 0.3 mm); an explicit value always wins.
    return replace(dataset, assume_spacing_mm=assume_spacing_mm or dataset.assume_spacing_mm)


def _axcodes(affine: np.ndarray) -> tuple[str, ...]:
    import nibabel as nib

    return tuple(str(c) for c in nib.orientations.aff2axcodes(affine))


def _intensity(samples: list[np.ndarray], region: str) -> dict[str, Any]:
    values = np.concatenate(samples) if samples else np.zeros(0)
    if values.size == 0:
        return {"region": region, "n_voxels_sampled": 0}
    return {
        "region": region,
        "n_voxels_sampled": int(values.size),
        "percentiles": {f"{p:g}": float(np.percentile(values, p)) for p in PERCENTILES},
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
    }
