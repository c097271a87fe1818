"""`dentpy data split`: write a dataset's own splits.json (and folds.json), or check the
one it has for leakage.

The files name cases the way the dataset does (nnU-Net case names, patient folders), so
they live inside the user's dataset and every reader honours them; run folders only ever
see pseudonyms.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from dentpy.data.dataset import Dataset
from dentpy.data.samples2d import ImageDataset
from dentpy.data.split import check_split, k_folds, split_by_patient
from dentpy.errors import OutputError


@dataclass(frozen=True)
class SplitReport:
    source: str  # "checked" (the dataset's own splits.json) or "written"
    counts: dict[str, int]  # cases per split
    patients: dict[str, int]  # patients per split
    files: tuple[Path, ...]


def _counts(
    dataset: Dataset | ImageDataset, splits: dict[str, list[str]]
) -> tuple[dict[str, int], dict[str, int]]:
    patient_of = {r.case_id: r.patient_id for r in (*dataset.records, *dataset.test_records)}
    cases = {name: len(ids) for name, ids in splits.items()}
    patients = {name: len({patient_of[i] for i in ids}) for name, ids in splits.items()}
    return cases, patients


def _write_new(path: Path, data: object) -> Path:
    if path.exists():
        raise OutputError(
            f"{path.name} already exists in {path.parent.name}",
            expected="no existing split file (dentpy never overwrites one)",
            found=str(path.name),
            fix="delete or rename it first if you really want a new split",
        )
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def split_dataset(
    dataset: Dataset | ImageDataset,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    folds: int | None = None,
) -> SplitReport:
    """Check the dataset's own split, or write a new patient-level one (+ k folds)."""
    patients = {r.case_id: r.patient_id for r in dataset.records}
    if dataset.predefined_splits is not None:
        splits = {k: list(v) for k, v in dataset.predefined_splits.items()}
        # A predefined test split may hold the dataset's test records (ImageFolder test/).
        everyone = {r.case_id: r.patient_id for r in (*dataset.records, *dataset.test_records)}
        check_split(splits, everyone)  # raises on a patient in two splits
        cases, per_patient = _counts(dataset, splits)
        return SplitReport("checked", cases, per_patient, ())
    splits = split_by_patient(patients, val_fraction, test_fraction, seed)
    name_of = {r.case_id: r.source_name or r.case_id for r in dataset.records}

    def names(ids: list[str]) -> list[str]:
        return sorted(name_of[i] for i in ids)

    files = [_write_new(dataset.root / "splits.json", {k: names(v) for k, v in splits.items()})]
    if folds:
        pool = {c: p for c, p in patients.items() if c not in set(splits["test"])}
        folded = [{k: names(v) for k, v in fold.items()} for fold in k_folds(pool, folds, seed)]
        files.append(
            _write_new(
                dataset.root / "folds.json", {"test": names(splits["test"]), "folds": folded}
            )
        )
    cases, per_patient = _counts(dataset, splits)
    return SplitReport("written", cases, per_patient, tuple(files))
