"""Layout "msd": a Medical Segmentation Decathlon task folder.

    TaskNN_Name/dataset.json    modality ({"0": "CT"}), labels (id -> name), numTraining,
                                training [{"image": "./imagesTr/x.nii.gz", "label": ...}],
                                test ["./imagesTs/y.nii.gz", ...]
    TaskNN_Name/imagesTr/, labelsTr/, imagesTs/
    TaskNN_Name/splits.json     optional (dentpy): {"train": [cases], "val": [...], ...}

dataset.json is the list of cases: every path it names must exist and stay inside the task
folder (no `..`, no absolute path, no symlink leading out: RELIABILITY 27), and a volume in
imagesTr/ or labelsTr/ that it does not name is refused rather than silently dropped. Each
case is its own patient. Only single-modality tasks are read for now; multi-channel (4D)
input is planned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, cast

from dentpy.data.case import Case, CaseRecord, pseudonym
from dentpy.data.dataset import Dataset
from dentpy.data.io import VOLUME_SUFFIXES, is_volume_file, volume_suffix
from dentpy.data.layouts import (
    find_dataset_json_root,
    listing,
    optional_splits,
    parse_label_map,
    read_json,
    require_one_channel,
    visible_entries,
)
from dentpy.data.layouts.nnunet import is_msd
from dentpy.errors import InputDataError

MULTI_CHANNEL_FIX = "keep a single modality (one 3D image per case); multi-channel input is planned"


@dataclass(frozen=True)
class MsdCaseRecord(CaseRecord):
    """A `CaseRecord` whose 4D (multi-modality) image is refused as planned, not malformed."""

    def load(
        self,
        labels: Mapping[str, int] | None = None,
        assume_spacing_mm: tuple[float, float, float] | None = None,
    ) -> Case:
        try:
            return super().load(labels, assume_spacing_mm)
        except InputDataError as error:
            # io refuses non-3D data ("...: expected a 3D volume"); a 4D MSD image stacks
            # modalities. Labels are never multi-channel, so only the image is reworded.
            suffix = "expected a 3D volume"
            image = f"({self.name_of(self.image_path)}): "
            if not (
                error.what.endswith(image + suffix)
                and (error.found or "").startswith("4 dimensions")
            ):
                raise
            raise InputDataError(
                error.what.removesuffix(suffix)
                + "multi-channel (4D) MSD images are not supported yet (planned)",
                expected="one 3D image per case (a single modality)",
                found=error.found,
                fix=MULTI_CHANNEL_FIX,
            ) from None


def find_root(path: Path) -> Path | None:
    """The task folder: `path` itself, or its only `Task*` child with a dataset.json."""
    return find_dataset_json_root(path, "Task", "MSD tasks")


def read(path: Path) -> Dataset:
    path = Path(path)
    root = find_root(path)
    if root is None:
        raise InputDataError(
            f"{path.name}: not an MSD (Decathlon) task",
            expected="dataset.json here, or exactly one TaskNN_Name/ folder holding one",
            found=listing(p.name for p in visible_entries(path)) if path.is_dir() else "a file",
            fix="pass the MSD Task folder",
        )
    meta = read_json(root / "dataset.json", root)
    if not is_msd(meta):
        raise InputDataError(
            "dataset.json: not an MSD (Decathlon) dataset.json",
            expected="a JSON object with modality, labels, numTraining and a training list",
            found="an nnU-Net v2 dataset.json (channel_names)"
            if isinstance(meta, Mapping) and "channel_names" in meta
            else type(meta).__name__,
            fix="use layout 'nnunet' for nnU-Net v2 folders (or layout 'auto')",
        )
    meta = cast(Mapping[str, Any], meta)  # is_msd checked it is a mapping
    _check_modality(meta)
    labels = parse_label_map(meta.get("labels"), "dataset.json")

    seen: dict[str, str] = {}  # case name or file -> the entry that named it first
    training = _entry_list(meta, "training")
    _check_count(meta, "numTraining", len(training))
    train: list[tuple[str, Path, Path]] = []
    for i, entry in enumerate(training):
        where = f"training[{i}]"
        if not isinstance(entry, Mapping):
            raise InputDataError(
                f"dataset.json: {where} is not an image/label pair",
                expected='{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}',
                found=repr(entry)[:100],
                fix=f"write {where} as an object with image and label",
            )
        image = _inside(root, entry.get("image"), f"{where}.image")
        label = _inside(root, entry.get("label"), f"{where}.label")
        name = _case_name(image)
        _once(seen, f"case {name!r}", where)
        _once(seen, f"label file {label.relative_to(root).as_posix()!r}", f"{where}.label")
        train.append((name, image, label))

    tests = _entry_list(meta, "test", required=False)
    _check_count(meta, "numTest", len(tests))
    test: list[tuple[str, Path]] = []
    for i, entry in enumerate(tests):
        where = f"test[{i}]"
        raw = entry.get("image") if isinstance(entry, Mapping) else entry
        image = _inside(root, raw, where)
        name = _case_name(image)
        _once(seen, f"case {name!r}", where)
        test.append((name, image))

    _check_unlisted(root, {p for _, image, label in train for p in (image, label)})

    def record(name: str, image: Path, label: Path | None) -> CaseRecord:
        case_id = pseudonym(name)
        return MsdCaseRecord(case_id, case_id, image, label, root=root, source_name=name)

    records = tuple(record(n, i, lab) for n, i, lab in sorted(train))
    test_records = tuple(record(n, i, None) for n, i in sorted(test))
    splits = optional_splits(root, (n for n, _, _ in train))
    return Dataset(
        root=root,
        layout="msd",
        labels=labels,
        records=records,
        test_records=test_records,
        predefined_splits=splits,
    )


def _check_modality(meta: Mapping[str, Any]) -> None:
    require_one_channel(
        meta,
        "modality",
        '"modality": {"0": "CT"}',
        "multi-channel (multi-modality) input is not supported yet (planned)",
        "modality (one 3D image per case)",
        "modalities",
        MULTI_CHANNEL_FIX,
    )


def _entry_list(meta: Mapping[str, Any], key: str, required: bool = True) -> list[Any]:
    entries = meta.get(key)
    if entries is None and not required:
        return []
    if not isinstance(entries, list) or (required and not entries):
        raise InputDataError(
            f"dataset.json: {key} list missing or empty",
            expected=f'"{key}": [...] listing the cases',
            found=repr(entries)[:100],
            fix=f"list the cases under {key} as the Decathlon dataset.json does",
        )
    return entries


def _inside(root: Path, raw: object, where: str) -> Path:
    """The file a dataset.json entry names, refused unless it is an existing volume file
    inside the task folder."""
    if not isinstance(raw, str) or not raw.strip():
        raise InputDataError(
            f"dataset.json: {where} is not a path",
            expected='a path relative to the task folder, e.g. "./imagesTr/x.nii.gz"',
            found=repr(raw)[:100],
            fix=f"write {where} as a relative path",
        )
    posix, windows = PurePosixPath(raw), PureWindowsPath(raw)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or raw.startswith("\\"):
        raise InputDataError(
            f"dataset.json: {where} is an absolute path",
            expected="a path relative to the task folder, e.g. ./imagesTr/x.nii.gz",
            found=repr(raw),
            fix=f"make {where} relative to the folder holding dataset.json",
        )
    if ".." in posix.parts or ".." in windows.parts:
        raise InputDataError(
            f"dataset.json: {where} points outside the task folder",
            expected="a path inside the task folder, without '..'",
            found=repr(raw),
            fix=f"move the file into the task folder and fix {where}",
        )
    path = root / posix
    if not path.is_file():
        raise InputDataError(
            f"dataset.json: {where} names a file that does not exist",
            expected=f"a file {raw} in {root.name}",
            found="nothing at that path" if not path.exists() else "a folder",
            fix=f"add the missing file, or fix or remove {where}",
        )
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        raise InputDataError(
            f"dataset.json: {where} is a symlink that leads outside the task folder",
            expected="files inside the task folder",
            found=f"{raw} resolves outside {root.name}",
            fix="copy the file into the task folder instead of linking to it",
        ) from None
    if volume_suffix(path) not in VOLUME_SUFFIXES:
        raise InputDataError(
            f"dataset.json: {where} is not a volume file",
            expected=f"a file ending in {', '.join(VOLUME_SUFFIXES)}",
            found=repr(raw),
            fix="convert it to NIfTI (.nii.gz) and fix the entry",
        )
    return path


def _case_name(path: Path) -> str:
    suffix = volume_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.name


def _once(seen: dict[str, str], key: str, where: str) -> None:
    if key in seen:
        raise InputDataError(
            f"dataset.json: {where} repeats {key}",
            expected="every case and file listed once",
            found=f"{key} in {seen[key]} and {where}",
            fix=f"remove the duplicate entry {where}",
        )
    seen[key] = where


def _check_count(meta: Mapping[str, Any], key: str, found: int) -> None:
    declared = meta.get(key)
    if declared is None:
        return
    if isinstance(declared, bool) or not isinstance(declared, int) or declared != found:
        listed = "training" if key == "numTraining" else "test"
        raise InputDataError(
            f"dataset.json: {key} does not match the {listed} list",
            expected=f"{key} = {found} (the entries under {listed})",
            found=f"{key} = {declared!r}",
            fix=f"correct {key}, or list the cases it counts",
        )


def _check_unlisted(root: Path, listed: set[Path]) -> None:
    """Volumes in imagesTr/labelsTr that dataset.json does not name: refused, not dropped."""
    unlisted = [
        f"{folder}/{p.name}"
        for folder in ("imagesTr", "labelsTr")
        if (root / folder).is_dir()
        for p in visible_entries(root / folder)
        if is_volume_file(p) and p not in listed
    ]
    if unlisted:
        raise InputDataError(
            f"{root.name}: {len(unlisted)} training file(s) are not listed in dataset.json",
            expected="every volume in imagesTr/ and labelsTr/ named by a training entry",
            found=listing(unlisted),
            fix="add them to the training list (and numTraining), or move them out",
        )
