"""`dentpy data check` for 2D datasets (X-rays and photos with class labels or boxes).

Every image is loaded the way training will load it: unreadable or truncated files, boxes
outside their image, sizes that disagree with the annotation file, EXIF-rotated images whose
boxes or masks were drawn on the unrotated pixels (RELIABILITY.md A9, A12-A14). The same
file content under two names is reported too: a copy in train and test leaks test data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from dentpy.data.check import CheckReport, Problem
from dentpy.data.samples2d import ImageDataset, ImageRecord, ImageSample
from dentpy.data.stats import evenly_spaced
from dentpy.errors import DentpyError

# Images drawn in the montage: enough to spot a systematic problem (wrong rotation, boxes
# shifted, inverted gray values), few enough to look at.
MONTAGE_IMAGES = 16
# Images fingerprinted (sizes, gray values); counts and box statistics always use all.
FINGERPRINT_IMAGES = 200


def check_images(
    dataset: ImageDataset,
    pictures: Path | None = None,
    on_case: Callable[[], None] | None = None,
) -> CheckReport:
    problems: list[Problem] = []
    sound: set[str] = set()
    first_with_content: dict[str, ImageRecord] = {}
    pool = (*dataset.records, *dataset.test_records)
    drawn_ids = {r.case_id for r in _montage_choice(dataset, pool)}
    to_draw: list[ImageSample] = []
    for record in pool:
        try:
            sample = record.load()
        except DentpyError as error:
            problems.append(Problem(record.case_id, str(error)))
        else:
            sound.add(record.case_id)
            if record.case_id in drawn_ids:
                to_draw.append(sample)
            duplicate = _duplicate_of(record, first_with_content)
            if duplicate is not None:
                problems.append(duplicate)
        if on_case is not None:
            on_case()
    healthy = replace(
        dataset,
        records=tuple(r for r in dataset.records if r.case_id in sound),
        test_records=tuple(r for r in dataset.test_records if r.case_id in sound),
    )
    fingerprint = healthy.fingerprint(max_cases=FINGERPRINT_IMAGES) if sound else {}
    written: list[Path] = []
    if pictures is not None and sound:
        written = _pictures(healthy, to_draw, fingerprint, pictures)
    return CheckReport(
        dataset=dataset.root.name,
        layout=dataset.layout,
        n_cases=len(pool),
        problems=tuple(problems),
        fingerprint=fingerprint,
        pictures=tuple(written),
    )


def _duplicate_of(record: ImageRecord, seen: dict[str, ImageRecord]) -> Problem | None:
    digest = hashlib.sha256(record.image_path.read_bytes()).hexdigest()
    first = seen.setdefault(digest, record)
    if first is record:
        return None
    return Problem(
        record.case_id,
        f"case {record.case_id} ({record.name_of(record.image_path)}): the same file content "
        f"as case {first.case_id} ({first.name_of(first.image_path)})\n"
        "  expected: every image once\n"
        "  found: two files with identical bytes\n"
        "  fix: delete one copy; a copy in two splits leaks test data into training",
    )


def _montage_choice(dataset: ImageDataset, pool: tuple[ImageRecord, ...]) -> list[ImageRecord]:
    """Images spread evenly over the dataset; for classification, over the classes too."""
    if dataset.task == "classification" and dataset.classes:
        per_class = max(1, MONTAGE_IMAGES // len(dataset.classes))
        chosen: list[ImageRecord] = []
        for name in dataset.classes:
            members = [r for r in pool if r.class_label == name]
            chosen += evenly_spaced(members, per_class)
        return chosen[:MONTAGE_IMAGES]
    return evenly_spaced(list(pool), MONTAGE_IMAGES)


def _pictures(
    dataset: ImageDataset, samples: list[ImageSample], fingerprint: dict[str, Any], folder: Path
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dentpy.report.montage2d import save_montage

    folder.mkdir(parents=True, exist_ok=True)
    name = dataset.root.name
    written = [
        save_montage(
            samples,
            dataset.classes,
            folder / "montage.png",
            f"{name}: {len(samples)} of {len(dataset.records) + len(dataset.test_records)} images",
        )
    ]
    counts = fingerprint.get("class_counts") or fingerprint.get("box_counts") or {}
    if counts:
        unit = "images" if "class_counts" in fingerprint else "boxes"
        figure, axis = plt.subplots(figsize=(7, max(2.4, 0.6 + 0.35 * len(counts))))
        labels = list(counts)
        axis.barh(labels, [counts[k] for k in labels], color="#4363d8")
        for y, label in enumerate(labels):
            axis.text(counts[label], y, f" {counts[label]}", va="center", fontsize=8)
        axis.invert_yaxis()
        axis.set_xlabel(f"{unit} per class")
        axis.set_title(f"{name}: class balance")
        figure.tight_layout()
        figure.savefig(folder / "class_balance.png", dpi=80)
        plt.close(figure)
        written.append(folder / "class_balance.png")
    values = np.concatenate([s.image.grayscale.ravel()[::7] for s in samples]) if samples else None
    if values is not None and values.size:
        figure, axis = plt.subplots(figsize=(7, 3.5))
        axis.hist(values, bins=100, color="#3cb44b")
        axis.set_yscale("log")
        axis.set_xlabel("gray value (as stored)")
        axis.set_title(f"{name}: intensity histogram (montage images, sampled)")
        figure.tight_layout()
        figure.savefig(folder / "intensity_histogram.png", dpi=80)
        plt.close(figure)
        written.append(folder / "intensity_histogram.png")
    boxes = [b for r in dataset.records for b in (r.boxes or ())]
    if boxes:
        figure, axis = plt.subplots(figsize=(5, 5))
        for index, label in enumerate(dataset.classes):
            mine = [b for b in boxes if b.label == label]
            if mine:
                axis.scatter(
                    [b.width for b in mine],
                    [b.height for b in mine],
                    s=6,
                    label=label,
                    color=_color(index),
                )
        axis.set_xlabel("box width (px)")
        axis.set_ylabel("box height (px)")
        axis.set_title(f"{name}: box sizes")
        axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(folder / "box_sizes.png", dpi=80)
        plt.close(figure)
        written.append(folder / "box_sizes.png")
    return written


def _color(index: int) -> str:
    from dentpy.report.overlay import COLORS

    return COLORS[index % len(COLORS)]
