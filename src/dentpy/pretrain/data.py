"""The images pretraining may see: the training split of `input.data` and the label-free
folder `input.unlabeled`. Validation and test cases are never read, so a fine-tuned
model's validation and test scores stay honest, and no label file is opened at all (the
records are stripped of their label paths before loading, `dentpy.semi.unlabeled`).

The split is the spec's own (`make_splits` / `make_splits_2d`, same seed and fractions as
`dentpy train`). With `paradigm.labeled_fraction` every training case counts, labelled or
not, since pretraining reads no labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dentpy.errors import InputDataError

if TYPE_CHECKING:
    from dentpy.spec import Spec


@dataclass(frozen=True)
class PretrainData:
    """Network-space images: 3D (I, J, K) arrays, or 2D (N, 1, H, W) in one array."""

    images: list[np.ndarray]
    n_train_split: int
    n_unlabeled: int
    preprocess: dict[str, Any]


def _nothing_to_learn_from(spec: Spec) -> InputDataError:
    return InputDataError(
        "pretraining found no images",
        expected="training-split images in input.data and/or a folder in input.unlabeled",
        found="an empty training split and no unlabelled folder",
        fix="point input.data at a dataset, or set input.unlabeled to a folder of scans",
    )


def volumes_3d(spec: Spec, cache_dir: Path, show_progress: bool = False) -> PretrainData:
    """Training-split cases and the unlabelled scans, preprocessed with the plan
    `dentpy train` will use (same target spacing) and cached."""
    from dentpy.data.dataset import open_dataset
    from dentpy.preprocess import PreprocessPlan
    from dentpy.semi.unlabeled import prepare_unlabeled_volumes, unlabeled_volume_records
    from dentpy.tasks.segmentation import build_segmentation_task
    from dentpy.train import make_splits, target_spacing

    dataset = open_dataset(spec.input.data, spec.input.layout, spec.input.assume_spacing_mm)
    splits = make_splits(spec, dataset)
    plan = PreprocessPlan(
        target_spacing_mm=target_spacing(spec, dataset, splits["train"]),  # type: ignore[arg-type]
        clip_percentiles=spec.preprocess.clip_percentiles,
    )
    task_ids = build_segmentation_task(spec, dataset.labels).class_label_ids
    by_id = {r.case_id: r for r in dataset.records}
    train = [by_id[c] for c in splits["train"]]
    extra = unlabeled_volume_records(spec.input.unlabeled) if spec.input.unlabeled else []
    spacing = spec.input.assume_spacing_mm
    images = [
        np.asarray(c.image)
        for c in prepare_unlabeled_volumes(train, plan, task_ids, cache_dir, spacing, "input.data")
    ]
    images += [
        np.asarray(c.image)
        for c in prepare_unlabeled_volumes(
            extra, plan, task_ids, cache_dir, spacing, "input.unlabeled"
        )
    ]
    if not images:
        raise _nothing_to_learn_from(spec)
    return PretrainData(images, len(train), len(extra), plan.to_dict())


def images_2d(spec: Spec) -> PretrainData:
    """Training-split images of a 2D dataset and the unlabelled images, resized to
    `preprocess.image_size` as `dentpy train` does."""
    from dentpy.semi.unlabeled import prepare_unlabeled_images, unlabeled_image_records
    from dentpy.train_classification import (
        labelled_pool,
        make_splits_2d,
        open_classification_data,
    )

    dataset = open_classification_data(spec)
    splits = make_splits_2d(spec, dataset)
    by_id = {r.case_id: r for r in labelled_pool(dataset)}
    train = [by_id[c] for c in splits["train"]]
    extra = unlabeled_image_records(spec.input.unlabeled) if spec.input.unlabeled else []
    size, clip = spec.preprocess.image_size, spec.preprocess.clip_percentiles
    images = np.concatenate(
        [
            prepare_unlabeled_images(train, size, clip, "input.data"),
            prepare_unlabeled_images(extra, size, clip, "input.unlabeled"),
        ]
    )
    if len(images) == 0:
        raise _nothing_to_learn_from(spec)
    preprocess = {"image_size": list(size), "clip_percentiles": list(clip)}
    return PretrainData([images], len(train), len(extra), preprocess)
