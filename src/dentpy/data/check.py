"""`dentpy data check`: load every case the way training would, collect every problem
(not only the first), fingerprint the cases that are sound, and draw pictures.

Problems are dentpy's own errors raised while loading (RELIABILITY.md §A: missing files,
NaN voxels, undeclared label values, image/label shape or geometry mismatches, corrupt or
non-3D files), kept with their case pseudonym and their what/expected/found/fix text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dentpy.data.case import Case, CaseRecord, present_values
from dentpy.data.dataset import Dataset
from dentpy.data.numbering import mixed_schemes
from dentpy.data.samples2d import ImageDataset
from dentpy.errors import DentpyError


@dataclass(frozen=True)
class Problem:
    case_id: str
    message: str  # the error's full text: what, expected, found, fix


@dataclass(frozen=True)
class CheckReport:
    dataset: str
    layout: str
    n_cases: int
    problems: tuple[Problem, ...]
    fingerprint: dict[str, Any]
    pictures: tuple[Path, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "layout": self.layout,
            "n_cases": self.n_cases,
            "ok": self.ok,
            "problems": [{"case_id": p.case_id, "message": p.message} for p in self.problems],
            "fingerprint": self.fingerprint,
            "pictures": [p.name for p in self.pictures],
        }


def check_dataset(
    dataset: Dataset | ImageDataset,
    pictures: Path | None = None,
    on_case: Callable[[], None] | None = None,
) -> CheckReport:
    """Load every record (training and test); report problems; fingerprint the rest."""
    if isinstance(dataset, ImageDataset):
        from dentpy.data.check2d import check_images

        return check_images(dataset, pictures, on_case)
    problems: list[Problem] = []
    sound: set[str] = set()
    drawn: list[Path] = []
    values_by_case: dict[str, list[int]] = {}
    for record in (*dataset.records, *dataset.test_records):
        try:
            case = dataset.load(record)
        except DentpyError as error:
            problems.append(Problem(record.case_id, str(error)))
        else:
            sound.add(record.case_id)
            if case.label is not None:
                values_by_case[record.case_id] = present_values(case.label.array)
            if pictures is not None and case.label is not None:
                drawn.append(_case_picture(dataset, case, pictures))
        if on_case is not None:
            on_case()
    mixed = mixed_schemes(values_by_case)
    if mixed is not None:
        problems.append(_mixed_numbering(mixed))
    healthy = replace(
        dataset,
        records=tuple(r for r in dataset.records if r.case_id in sound),
        test_records=tuple(r for r in dataset.test_records if r.case_id in sound),
    )
    fingerprint = healthy.fingerprint() if sound else {}
    if pictures is not None and fingerprint:
        drawn += _summary_pictures(healthy, fingerprint, pictures)
    return CheckReport(
        dataset=dataset.root.name,
        layout=dataset.layout,
        n_cases=len(dataset.records) + len(dataset.test_records),
        problems=tuple(problems),
        fingerprint=fingerprint,
        pictures=tuple(drawn),
    )


def _mixed_numbering(by_scheme: dict[str, list[str]]) -> Problem:
    fdi, universal = sorted(by_scheme["fdi"]), sorted(by_scheme["universal"])
    return Problem(
        "dataset",
        "cases use different tooth numbering schemes (FDI and Universal)\n"
        f"  expected: one scheme for every case\n"
        f"  found: {len(fdi)} case(s) with FDI-only ids 33-48 (e.g. {', '.join(fdi[:3])}); "
        f"{len(universal)} case(s) with Universal-only ids 19/20/29/30 and none above 32 "
        f"(e.g. {', '.join(universal[:3])})\n"
        "  fix: renumber the Universal cases to FDI (dentpy.data.fdi.universal_to_fdi gives "
        "the table) with an explicit --label-map in `dentpy data convert`",
    )


def _case_picture(dataset: Dataset, case: Case, folder: Path) -> Path:
    from dentpy.data.volume import LabelMap
    from dentpy.report.overlay import save_overlay

    ids = sorted(i for i in dataset.labels.values() if i)
    names = {i: n for n, i in dataset.labels.items()}
    # save_overlay numbers classes 1..C; relabel the dataset's ids to their rank.
    lookup = np.zeros(max(ids, default=0) + 1, dtype=np.uint16)
    for rank, label_id in enumerate(ids, start=1):
        lookup[label_id] = rank
    if case.label is None:
        raise ValueError("only labelled cases are drawn")
    ranked = LabelMap(lookup[np.asarray(case.label.array)], case.image.affine)
    return save_overlay(case.image, ranked, [names[i] for i in ids], folder / f"{case.case_id}.png")


def _summary_pictures(dataset: Dataset, fingerprint: dict[str, Any], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    fractions = fingerprint.get("label_fractions") or {}
    if fractions:
        figure, axis = plt.subplots(figsize=(7, 3.5))
        names = list(fractions)
        axis.barh(names, [100 * fractions[n] for n in names], color="#4363d8")
        axis.set_xscale("log")
        axis.set_xlabel("share of labelled voxels (%, log scale)")
        axis.set_title(f"{dataset.root.name}: class balance")
        figure.tight_layout()
        figure.savefig(folder / "class_balance.png", dpi=80)
        plt.close(figure)
        written.append(folder / "class_balance.png")
    values = _intensity_sample(dataset.records or dataset.test_records)
    if values.size:
        figure, axis = plt.subplots(figsize=(7, 3.5))
        axis.hist(values, bins=100, color="#3cb44b")
        axis.set_yscale("log")
        axis.set_xlabel("gray value")
        axis.set_title(f"{dataset.root.name}: intensity histogram (all voxels, sampled)")
        figure.tight_layout()
        figure.savefig(folder / "intensity_histogram.png", dpi=80)
        plt.close(figure)
        written.append(folder / "intensity_histogram.png")
    return written


def _intensity_sample(records: tuple[CaseRecord, ...], per_case: int = 20_000) -> np.ndarray:
    from dentpy.data.io import read_image

    rng = np.random.default_rng(0)
    samples = []
    for record in records[:20]:
        values = np.asarray(read_image(record.image_path).array).ravel()
        samples.append(rng.choice(values, min(per_case, values.size), replace=False))
    return np.concatenate(samples) if samples else np.zeros(0)
