"""Unlabelled cases for semi-supervised training, read and preprocessed without labels.

Two sources, used together when both are given:
- `input.unlabeled`: a folder of volumes (NIfTI, MHA/MHD, NRRD, DICOM series subfolders;
  the readers of layout "files") for 3D, or of images (layout "images") for 2D;
- the training cases whose labels `paradigm.labeled_fraction` hides: their records are
  stripped of every label path before loading, so a label file is never even opened.

3D cases get exactly the labelled cases' preprocessing (the run's `PreprocessPlan`, cached
like them) with an all-background label map, which nothing reads. 2D images get the same
resize and normalisation as the labelled images.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dentpy.errors import InputDataError

if TYPE_CHECKING:
    from dentpy.data.cache import PreparedCase
    from dentpy.data.case import Case, CaseRecord
    from dentpy.data.samples2d import ImageRecord
    from dentpy.preprocess import PreprocessPlan

SOURCE = "input.unlabeled"


@contextmanager
def named_source(source: str) -> Iterator[None]:
    """Prefix data errors with where the data came from (the spec key)."""
    try:
        yield
    except InputDataError as exc:
        raise InputDataError(
            f"{source}: {exc.what}", expected=exc.expected, found=exc.found, fix=exc.fix
        ) from None


def _existing(path: str) -> Path:
    folder = Path(path)
    if not folder.exists():
        raise InputDataError(
            f"{SOURCE}: {folder.name or folder} not found",
            expected="a folder of unlabelled scans or images",
            found="nothing at that path (relative paths are read from the spec's folder)",
            fix="check input.unlabeled, or remove it and use paradigm.labeled_fraction",
        )
    return folder


def unlabeled_volume_records(path: str) -> list[CaseRecord]:
    """The scans of an `input.unlabeled` folder (layout "files" rules; labels never read)."""
    from dentpy.data.layouts import files

    with named_source(SOURCE):
        return list(files.read(_existing(path)).test_records)


def unlabeled_image_records(path: str) -> list[ImageRecord]:
    """The 2D images of an `input.unlabeled` folder (layout "images" rules)."""
    from dentpy.data.layouts import images

    with named_source(SOURCE):
        return list(images.read(_existing(path)).test_records)


def without_labels(record: CaseRecord) -> CaseRecord:
    """The record with every label path removed: loading it cannot read a label."""
    return replace(record, label_path=None, label_parts=(), instance_path=None)


class _ImageOnly:
    """A `Case`-like image with an all-background label, for the preprocessing cache."""

    def __init__(self, case: Case) -> None:
        from dentpy.data.volume import LabelMap

        self.image = case.image
        self.label = LabelMap(
            array=np.zeros(case.image.shape, dtype=np.uint8), affine=case.image.affine
        )


def prepare_unlabeled_volumes(
    records: Sequence[CaseRecord],
    plan: PreprocessPlan,
    class_label_ids: Sequence[Sequence[int]],
    cache_dir: Path,
    assume_spacing_mm: tuple[float, float, float] | None,
    source: str,
) -> list[PreparedCase]:
    """Network-space unlabelled cases (label map all background), cached like labelled ones."""
    from dentpy.data.cache import prepare_case

    prepared = []
    for record in records:
        bare = without_labels(record)

        def load(bare: CaseRecord = bare) -> Any:
            return _ImageOnly(bare.load(None, assume_spacing_mm))

        with named_source(source):
            prepared.append(
                prepare_case(
                    bare,
                    plan,
                    class_label_ids,
                    cache_dir,
                    load,
                    ["unlabeled", assume_spacing_mm],
                )
            )
    return prepared


def prepare_unlabeled_images(
    records: Sequence[ImageRecord],
    size: tuple[int, int],
    clip_percentiles: tuple[float, float],
    source: str,
) -> np.ndarray:
    """(N, 1, H, W) float32 network-space images; any class label is dropped first."""
    from dentpy.data.prepare2d import prepare_records

    bare = [replace(r, class_label=None, boxes=None, mask_path=None) for r in records]
    with named_source(source):
        return prepare_records(bare, size, clip_percentiles).images
