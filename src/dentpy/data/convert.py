"""`dentpy data convert`: rewrite a dataset in another 3D layout, geometry kept.

Every case is loaded and checked as training would load it, then written as NIfTI with
its own affine. Labels are remapped only through an explicit label map
(`--label-map old=new`). The destination must not exist: nothing is ever overwritten, and
the dataset is built in a hidden sibling folder and renamed into place at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from dentpy.data.dataset import Dataset
from dentpy.data.io import write_volume
from dentpy.data.volume import LabelMap
from dentpy.errors import OutputError, SpecError
from dentpy.registry import did_you_mean

TARGETS = ("nnunet", "pulpy")


def parse_label_map(items: list[str], labels: Mapping[str, int]) -> dict[int, int]:
    """`old=new` pairs (ids or label names on the left, ids on the right)."""
    mapping: dict[int, int] = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not new.strip().isdigit():
            raise SpecError(
                f"label map entry '{item}' is not of the form old=new",
                expected="old=new with new an integer id, e.g. 255=1 or pulp=1",
                found=item,
            )
        key = old.strip()
        if key.isdigit():
            source = int(key)
        elif key in labels:
            source = labels[key]
        else:
            raise SpecError(
                f"label map names an unknown label '{key}'",
                expected=f"an id or one of: {', '.join(labels)}",
                found=key,
                fix=did_you_mean(key, list(labels)),
            )
        mapping[source] = int(new)
    return mapping


def _remap(label: LabelMap, mapping: Mapping[int, int]) -> LabelMap:
    if not mapping:
        return label
    array = np.asarray(label.array)
    top = max(int(array.max()), *mapping)
    lookup = np.arange(top + 1, dtype=np.int64)
    for old, new in mapping.items():
        lookup[old] = new
    out = lookup[array]
    dtype = np.uint8 if out.max() < 256 else np.uint16
    return LabelMap(out.astype(dtype), label.affine)


def convert_dataset(
    dataset: Dataset,
    destination: Path,
    to: str,
    label_map: Mapping[int, int] | None = None,
    on_case: Callable[[], None] | None = None,
) -> Path:
    if to not in TARGETS:
        raise SpecError(
            f"cannot convert to '{to}'",
            expected=f"one of: {', '.join(TARGETS)}",
            found=to,
            fix=did_you_mean(to, list(TARGETS)),
        )
    if destination.exists():
        raise OutputError(
            f"{destination.name} already exists",
            expected="a destination folder that does not exist yet",
            found="an existing file or folder (dentpy never overwrites)",
            fix="choose a new destination",
        )
    mapping = dict(label_map or {})
    labels = {name: mapping.get(i, i) for name, i in dataset.labels.items()}
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{destination.name}-", dir=destination.parent))
    try:
        names = _write_cases(dataset, staging, to, mapping, set(labels.values()), on_case)
        if to == "nnunet":
            meta = {
                "channel_names": {"0": "CBCT"},
                "labels": dict(sorted(labels.items(), key=lambda item: item[1])),
                "numTraining": len(dataset.records),
                "file_ending": ".nii.gz",
                "description": f"converted by dentpy from a {dataset.layout} dataset",
            }
            (staging / "dataset.json").write_text(json.dumps(meta, indent=2))
            patients = {names[r.case_id]: r.patient_id for r in dataset.records}
            if any(p != r.case_id for r, p in zip(dataset.records, patients.values(), strict=True)):
                rows = "".join(f"{case},{patient}\n" for case, patient in patients.items())
                (staging / "patients.csv").write_text("case,patient\n" + rows)
        else:
            (staging / "labels.json").write_text(json.dumps(labels, indent=2))
        os.replace(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def _write_cases(
    dataset: Dataset,
    root: Path,
    to: str,
    mapping: Mapping[int, int],
    allowed: set[int],
    on_case: Callable[[], None] | None,
) -> dict[str, str]:
    names: dict[str, str] = {}
    for record, held_out in [(r, False) for r in dataset.records] + [
        (r, True) for r in dataset.test_records
    ]:
        # With an explicit label map, the source may hold undeclared values (0/255 masks):
        # they are checked after remapping instead.
        case = record.load(None if mapping else dataset.labels, dataset.assume_spacing_mm)
        name = record.source_name or record.case_id
        names[record.case_id] = name
        label = _remap(case.label, mapping) if case.label is not None else None
        if label is not None:
            stray = sorted(set(np.unique(label.array).tolist()) - allowed)
            if stray:
                raise SpecError(
                    f"case {record.case_id}: label values {stray[:8]} have no name after remapping",
                    expected=f"label ids among {sorted(allowed)}",
                    found=f"values {stray[:8]}",
                    fix="extend --label-map (e.g. 255=1) so every value maps to a declared label",
                )
        if to == "nnunet":
            images, labels_dir = ("imagesTs", "labelsTs") if held_out else ("imagesTr", "labelsTr")
            write_volume(case.image, root / images / f"{name}_0000.nii.gz")
            if label is not None:
                write_volume(label, root / labels_dir / f"{name}.nii.gz")
        else:
            write_volume(case.image, root / name / "data.nii.gz")
            if label is not None:
                write_volume(label, root / name / "label.nii.gz")
        if on_case is not None:
            on_case()
    return names
