"""Write synthetic cases in the layouts real dental datasets use (nnU-Net v2, Pulpy3D,
ToothFairy), so the same readers serve synthetic and real data.

A dataset is built in a hidden sibling folder and renamed into place at the end: a crash
leaves the previous dataset (or nothing), never half of one. An existing folder is only
replaced when it is empty or was written here (its README.txt says so); anything else is
refused rather than deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dentpy.data.fdi import TOOTHFAIRY3_LABELS
from dentpy.data.io import write_volume
from dentpy.data.synth.cbct import (
    LABELS,
    PULP_INSTANCE_OFFSET,
    SyntheticCase,
    generate_case,
    get_profile,
)
from dentpy.data.volume import LabelMap
from dentpy.errors import SpecError
from dentpy.registry import did_you_mean

NNUNET_DATASET = "Dataset001_SynthCBCT"
README = "README.txt"
MARKER = "dentpy synthetic dataset"
SPARSE_EVERY = 5  # ToothFairy gt_sparse: one labelled axial slice in five
LABEL_SCHEMES = ("semantic", "toothfairy3")
# ToothFairy3 ids of the generator's semantic classes. The generator follows RAS+ (the
# patient's left at world x < 0), so its left canal is ToothFairy3's left canal.
_TF3_CLASS = {
    "mandible": TOOTHFAIRY3_LABELS["Lower Jawbone"],
    "left_ian": TOOTHFAIRY3_LABELS["Left Inferior Alveolar Canal"],
    "right_ian": TOOTHFAIRY3_LABELS["Right Inferior Alveolar Canal"],
}
_LOWER_FDI = (*range(31, 39), *range(41, 49))


def toothfairy3_labels() -> dict[str, int]:
    """What a toothfairy3-labelled synthetic dataset declares: background, lower jawbone,
    both canals and all 16 lower teeth and their pulps (declared even where a case lacks
    a tooth: a dataset declares its label set), with ToothFairy3's names and ids."""
    wanted = {0, *_TF3_CLASS.values(), *_LOWER_FDI}
    wanted |= {PULP_INSTANCE_OFFSET + fdi for fdi in _LOWER_FDI}
    return {name: i for name, i in TOOTHFAIRY3_LABELS.items() if i in wanted}


def toothfairy3_label(case: SyntheticCase) -> LabelMap:
    """The case's labels in ToothFairy3 ids: jawbone 1, canals 3 / 4, tooth = FDI, its pulp =
    100 + FDI (the instance map already holds those for teeth and pulps)."""
    label = case.label.array
    out = np.zeros(label.shape, dtype=np.uint8)  # largest id is 148
    for name, tf3 in _TF3_CLASS.items():
        out[label == LABELS[name]] = tf3
    dental = np.isin(label, (LABELS["tooth"], LABELS["pulp"]))
    out[dental] = case.instances.array[dental]
    return LabelMap(array=out, affine=case.label.affine)


def write_dataset(
    out: Path,
    cases: int,
    profile: str = "tiny",
    seed: int = 0,
    layout: str = "nnunet",
    test_cases: int = 0,
    labels: str = "semantic",
) -> Path:
    """Write `cases` training (+ `test_cases` test) cases; returns the dataset root.

    Case i (0-based; test cases continue after the training ones) is
    `generate_case(seed, i, profile)`, so the same arguments give byte-identical files.
    `labels`: "semantic" (LABELS, 0-5) or "toothfairy3" (ToothFairy3 ids: teeth by FDI
    number, pulps 100 + FDI; nnunet and pulpy layouts).
    """
    writers: dict[str, Callable[[Path, _Plan], None]] = {
        "nnunet": _write_nnunet,
        "pulpy": _write_pulpy,
        "toothfairy": _write_toothfairy,
    }
    if layout not in writers:
        raise SpecError(
            f"unknown synthetic dataset layout {layout!r}",
            expected=f"one of {', '.join(writers)}",
            found=repr(layout),
            fix=did_you_mean(layout, list(writers)),
        )
    if labels not in LABEL_SCHEMES:
        raise SpecError(
            f"unknown synthetic label scheme {labels!r}",
            expected=f"one of {', '.join(LABEL_SCHEMES)}",
            found=repr(labels),
            fix=did_you_mean(labels, list(LABEL_SCHEMES)),
        )
    if layout == "toothfairy" and labels != "semantic":
        raise SpecError(
            f"synthetic dataset: labels={labels!r} does not fit the toothfairy layout",
            expected="labels 'semantic' with layout 'toothfairy' (it stores canal masks only)",
            found=f"layout 'toothfairy' with labels {labels!r}",
            fix="use --layout nnunet or --layout pulpy for ToothFairy3 labels, "
            "or --labels semantic",
        )
    get_profile(profile)  # fail before touching the disk
    for name, value, least in (("cases", cases, 1), ("test_cases", test_cases, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise SpecError(
                f"synthetic dataset: {name} must be an integer >= {least}",
                expected=f"{name} >= {least}",
                found=repr(value),
                fix=f"ask for at least {max(least, 1)} case(s)" if least else "use 0 or more",
            )
    out = Path(out)
    root = out / NNUNET_DATASET if layout == "nnunet" else out
    _check_replaceable(root)
    plan = _Plan(cases, test_cases, profile, seed, layout, labels)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{root.name}-", dir=root.parent))
    try:
        writers[layout](staging, plan)
        _write_text(staging / README, plan.readme())
        _ordinary_permissions(staging)
        _swap_into_place(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


class _Plan:
    def __init__(
        self, cases: int, test_cases: int, profile: str, seed: int, layout: str, labels: str
    ) -> None:
        self.cases, self.test_cases = cases, test_cases
        self.profile, self.seed, self.layout, self.labels = profile, seed, layout, labels
        self.spacing = get_profile(profile).spacing_mm
        self.drawn: dict[int, dict[str, Any]] = {}  # per case: what the anatomy drew

    @property
    def label_names(self) -> dict[str, int]:
        return toothfairy3_labels() if self.labels == "toothfairy3" else dict(LABELS)

    def label(self, case: SyntheticCase) -> LabelMap:
        return toothfairy3_label(case) if self.labels == "toothfairy3" else case.label

    @property
    def train(self) -> range:
        return range(self.cases)

    @property
    def test(self) -> range:
        return range(self.cases, self.cases + self.test_cases)

    def case(self, index: int) -> SyntheticCase:
        case = generate_case(self.seed, index, self.profile)
        self.drawn[index] = case.teeth
        return case

    def describe(self) -> str:
        return (
            f"{MARKER}: procedural CBCT of the lower jaw (mandible, teeth, pulp, IAN canals), "
            f"not patient data; seed={self.seed}, profile={self.profile} "
            f"({self.spacing:g} mm isotropic voxels)"
            + ("; labels=toothfairy3 (ToothFairy3 ids)" if self.labels == "toothfairy3" else "")
        )

    def readme(self) -> str:
        lines = [
            self.describe(),
            f"layout: {self.layout}",
            f"training cases: {self.cases}; test cases: {self.test_cases}",
            *self._label_lines(),
            "orientation: RAS+ (world x toward the patient's right; left structures at x < 0)",
            *self._variation_lines(),
        ]
        if self.layout == "toothfairy":
            lines += [
                f"voxel spacing: {self.spacing:g} mm isotropic (ToothFairy stores no spacing; "
                "real ToothFairy scans are 0.3 mm)",
                "data.npy: int16, axes (Z, Y, X) = the RAS (I, J, K) array transposed",
                "gt_alpha.npy: uint8 canal mask (both IANs = 1); gt_sparse.npy: the same, "
                f"labelled on every {SPARSE_EVERY}th axial slice only",
            ]
        return "\n".join(lines) + "\n"

    def _label_lines(self) -> list[str]:
        if self.labels == "toothfairy3":
            return [
                "label scheme: toothfairy3 (ToothFairy3 ids): Lower Jawbone 1, Left Inferior "
                "Alveolar Canal 3, Right Inferior Alveolar Canal 4, each tooth = its FDI number "
                "(31-38 lower left, 41-48 lower right), its pulp = 100 + FDI (131-148); "
                "all 16 lower teeth and pulps are declared even where a case lacks a tooth",
                f"labels: {json.dumps(self.label_names)}",
            ]
        lines = [
            "label scheme: semantic (one class per structure; teeth not told apart)",
            f"labels: {json.dumps(LABELS)}",
        ]
        if self.layout == "pulpy":
            lines.append(
                "gt_instance: tooth = FDI number (31-38 lower left, 41-48 lower right), "
                "its pulp = 100 + FDI"
            )
        return lines

    def _variation_lines(self) -> list[str]:
        drawn = [self.drawn[i] for i in sorted(self.drawn)]
        impacted = sum(bool(d.get("impacted")) for d in drawn)
        touching = sum(bool(d.get("touching")) for d in drawn)
        missing = sum(bool(d.get("missing")) for d in drawn)
        return [
            "tooth variation: missing teeth (third molars often); impacted third molars "
            "(mesially tilted 30-70 degrees, crown sunk to the alveolar crest or up to 1.5 mm "
            "below it, lifted where needed to clear the IAN canal); "
            "neighbouring crowns in contact (gap 0 to 0.2 mm overlap), so teeth must be "
            "told apart by shape, not by connectivity",
            f"of {len(drawn)} cases: {missing} with missing teeth, {impacted} with an "
            f"impacted third molar, {touching} with touching crowns",
        ]


def _case_name(index: int, plan: _Plan) -> str:
    width = max(3, len(str(plan.cases + plan.test_cases - 1)))
    return f"synth_{index:0{width}d}"


def _write_nnunet(root: Path, plan: _Plan) -> None:
    for indices, images, labels in (
        (plan.train, "imagesTr", "labelsTr"),
        (plan.test, "imagesTs", "labelsTs"),
    ):
        for index in indices:
            case, name = plan.case(index), _case_name(index, plan)
            write_volume(case.image, root / images / f"{name}_0000.nii.gz")
            write_volume(plan.label(case), root / labels / f"{name}.nii.gz")
    meta: dict[str, Any] = {
        "name": "SynthCBCT",
        "description": plan.describe(),
        "channel_names": {"0": "CBCT"},
        "labels": plan.label_names,
        "numTraining": plan.cases,
        "file_ending": ".nii.gz",
        "licence": "CC0 (generated)",
    }
    _write_json(root / "dataset.json", meta)


def _patient(index: int) -> str:
    return f"P{index + 1}"


def _write_pulpy(root: Path, plan: _Plan) -> None:
    for index in (*plan.train, *plan.test):
        case, folder = plan.case(index), root / _patient(index)
        write_volume(case.image, folder / "data.nii.gz")
        write_volume(plan.label(case), folder / "label.nii.gz")
        write_volume(case.instances, folder / "gt_instance.nii.gz")
    # Pulpy3D itself ships no label names; dentpy's reader takes them from labels.json.
    _write_json(root / "labels.json", plan.label_names)
    if plan.test_cases:
        splits = {
            "train": [_patient(i) for i in plan.train],
            "test": [_patient(i) for i in plan.test],
        }
        _write_json(root / "splits.json", splits)


def _write_toothfairy(root: Path, plan: _Plan) -> None:
    for index in (*plan.train, *plan.test):
        case, folder = plan.case(index), root / _patient(index)
        folder.mkdir(parents=True, exist_ok=True)
        canal = np.isin(case.label.array, (LABELS["left_ian"], LABELS["right_ian"]))
        alpha = np.ascontiguousarray(canal.astype(np.uint8).transpose(2, 1, 0))  # (Z, Y, X)
        sparse = np.zeros_like(alpha)
        sparse[::SPARSE_EVERY] = alpha[::SPARSE_EVERY]
        np.save(folder / "data.npy", np.ascontiguousarray(case.image.array.transpose(2, 1, 0)))
        np.save(folder / "gt_alpha.npy", alpha)
        np.save(folder / "gt_sparse.npy", sparse)
    # Validation: the last fifth of the training cases (at least one when there are two).
    n_val = 0 if plan.cases < 2 else max(1, plan.cases // 5)
    train = [_patient(i) for i in plan.train]
    splits = {
        "train": train[: len(train) - n_val],
        "val": train[len(train) - n_val :],
        "test": [_patient(i) for i in plan.test],
    }
    _write_json(root / "splits.json", splits)
    # ToothFairy stores no spacing; dentpy's reader honours this file when it is present.
    _write_json(root / "spacing.json", {"spacing_mm": [plan.spacing] * 3})


# --- files and folders ----------------------------------------------------------------------


def _write_text(path: Path, text: str) -> None:
    """Temp file + fsync + rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_json(path: Path, obj: Any) -> None:
    _write_text(path, json.dumps(obj, indent=2) + "\n")


def _ordinary_permissions(root: Path) -> None:
    """Temp files and folders are created private (0600/0700); a dataset is meant to be
    shared, so give it what a plain mkdir/open would under the process umask."""
    umask = _umask()
    for folder, _, files in os.walk(root):
        os.chmod(folder, 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o666 & ~umask)


def _umask() -> int:
    # Read, not set: os.umask() can only be queried by changing it, which races with threads.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _is_ours(root: Path) -> bool:
    readme = root / README
    try:
        return readme.is_file() and readme.read_text(encoding="utf-8").startswith(MARKER)
    except (OSError, UnicodeDecodeError):
        return False


def _check_replaceable(root: Path) -> None:
    if not root.exists():
        return
    if root.is_dir() and (not any(root.iterdir()) or _is_ours(root)):
        return
    raise SpecError(
        f"{root.name}: exists and is not a dentpy synthetic dataset",
        expected="a new or empty folder, or one written by dentpy's synthetic generator",
        found="a file" if not root.is_dir() else "a folder with other content",
        fix="choose another output folder; dentpy does not overwrite data it did not write",
    )


def _swap_into_place(staging: Path, root: Path) -> None:
    _check_replaceable(root)
    if root.exists():
        old = root.parent / f".old-{root.name}-{uuid.uuid4().hex[:8]}"
        os.replace(root, old)
        os.replace(staging, root)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, root)
