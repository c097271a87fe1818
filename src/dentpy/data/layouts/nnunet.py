"""Layout "nnunet": an nnU-Net v2 raw dataset folder.

    DatasetNNN_Name/dataset.json        channel_names, labels (name -> id), numTraining, file_ending
    DatasetNNN_Name/imagesTr/CASE_0000{file_ending}
    DatasetNNN_Name/labelsTr/CASE{file_ending}
    DatasetNNN_Name/imagesTs/CASE_0000{file_ending}     optional
    DatasetNNN_Name/labelsTs/CASE{file_ending}          optional
    DatasetNNN_Name/patients.csv        optional (dentpy): columns case,patient
    DatasetNNN_Name/splits.json         optional (dentpy): {"train": [cases], "val": [...], ...}

nnU-Net itself skips files it cannot pair; dentpy refuses them instead and names them, since
a silently dropped label is a case trained on nothing.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dentpy.data.case import CaseRecord, pseudonym
from dentpy.data.dataset import Dataset
from dentpy.data.io import VOLUME_SUFFIXES, is_volume_file
from dentpy.data.layouts import (
    find_dataset_json_root,
    listing,
    optional_splits,
    parse_label_map,
    read_json,
    relative_name,
    require_one_channel,
    visible_entries,
)
from dentpy.errors import InputDataError

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def find_root(path: Path) -> Path | None:
    """The Dataset folder: `path` itself, or its only `Dataset*` child with a dataset.json."""
    return find_dataset_json_root(path, "Dataset", "nnU-Net datasets")


def is_msd(meta: object) -> bool:
    """Medical Segmentation Decathlon dataset.json: `modality` and a `training` list."""
    return (
        isinstance(meta, Mapping)
        and "channel_names" not in meta
        and ("modality" in meta or isinstance(meta.get("training"), list))
    )


def msd_error(root: Path) -> InputDataError:
    """Layout "nnunet" forced on an MSD task folder (auto-detection picks "msd")."""
    return InputDataError(
        f"{root.name}: an MSD (Decathlon) task, not an nnU-Net v2 dataset",
        expected="an nnU-Net v2 dataset.json (channel_names, labels, numTraining, file_ending)",
        found="an MSD dataset.json (modality, training list)",
        fix="open it with layout 'msd' (or 'auto'), or convert it with nnU-Net v2: "
        f"nnUNetv2_convert_MSD_dataset -i {root.name}",
    )


def read(path: Path) -> Dataset:
    path = Path(path)
    root = find_root(path)
    if root is None:
        raise InputDataError(
            f"{Path(path).name}: not an nnU-Net v2 dataset",
            expected="dataset.json here, or exactly one DatasetNNN_Name/ folder holding one",
            found=listing(p.name for p in visible_entries(path)) if path.is_dir() else "a file",
            fix="pass the nnU-Net Dataset folder",
        )
    meta = read_json(root / "dataset.json", root)
    if is_msd(meta):
        raise msd_error(root)
    if not isinstance(meta, Mapping):
        raise InputDataError(
            "dataset.json: unexpected structure",
            expected="a JSON object with channel_names, labels, numTraining, file_ending",
            found=type(meta).__name__,
            fix="write dataset.json as nnU-Net v2 describes it",
        )
    _check_channels(meta)
    labels = parse_label_map(_labels_keeping_repeats(root, meta.get("labels")), "dataset.json")
    ending = _file_ending(meta)

    train_images = _images(root, "imagesTr", ending)
    train_labels = _volume_files(root, "labelsTr", ending)
    _check_pairs(root, "imagesTr", train_images, "labelsTr", train_labels, ending)
    _check_count(meta, len(train_images))
    test_images = _images(root, "imagesTs", ending) if (root / "imagesTs").is_dir() else {}
    test_labels: dict[str, Path] = {}
    if (root / "labelsTs").is_dir():
        test_labels = _volume_files(root, "labelsTs", ending)
        _check_pairs(root, "imagesTs", test_images, "labelsTs", test_labels, ending)

    patients = _patients(root, set(train_images), set(test_images))

    def record(name: str, image: Path, label: Path | None) -> CaseRecord:
        case_id = pseudonym(name)
        return CaseRecord(
            case_id, patients.get(name, case_id), image, label, root=root, source_name=name
        )

    records = tuple(record(n, p, train_labels[n]) for n, p in sorted(train_images.items()))
    test_records = tuple(record(n, p, test_labels.get(n)) for n, p in sorted(test_images.items()))
    splits = optional_splits(root, train_images)
    return Dataset(
        root=root,
        layout="nnunet",
        labels=labels,
        records=records,
        test_records=test_records,
        predefined_splits=splits,
    )


def _labels_keeping_repeats(root: Path, labels: Any) -> Any:
    """dataset.json's "labels" with repeated names kept apart.

    ToothFairy2's dataset.json declares ids 19, 20, 29, 30, 39 and 40 all under the name
    "NA"; json keeps only the last, which would silently undeclare the others. Each entry
    of a repeated name becomes "NAME (ID)" ("NA (19)", ..., "NA (40)"); files without
    repeated names are returned unchanged.
    """
    try:
        pairs = json.loads(
            (root / "dataset.json").read_text(encoding="utf-8"), object_pairs_hook=list
        )
    except (OSError, UnicodeDecodeError, ValueError):
        return labels  # read_json has already reported an unreadable file
    if not isinstance(pairs, list):
        return labels
    entries = [value for key, value in pairs if key == "labels"]
    if not entries or not isinstance(entries[-1], list):
        return labels
    names = [str(name) for name, _ in entries[-1]]
    repeated = {name for name in names if names.count(name) > 1}
    if not repeated:
        return labels
    kept: dict[str, Any] = {}
    for name, value in entries[-1]:
        if name in repeated and isinstance(value, int) and not isinstance(value, bool):
            kept[f"{name} ({value})"] = value
        else:
            kept[str(name)] = value
    return kept


def _check_channels(meta: Mapping[str, Any]) -> None:
    require_one_channel(
        meta,
        "channel_names",
        '"channel_names": {"0": "CBCT"}',
        "multi-channel input is not supported yet",
        "channel (one image file per case)",
        "channels",
        "keep a single channel (e.g. the CBCT); multi-channel input is planned",
    )


def _file_ending(meta: Mapping[str, Any]) -> str:
    ending = meta.get("file_ending")
    if not isinstance(ending, str) or ending.lower() not in VOLUME_SUFFIXES:
        raise InputDataError(
            "dataset.json: file_ending is missing or not a 3D volume format",
            expected=f"one of {', '.join(VOLUME_SUFFIXES)}",
            found=repr(ending),
            fix="set file_ending to the suffix of the image files (2D formats are not "
            "supported by this layout yet)",
        )
    return ending


def _volume_files(root: Path, folder: str, ending: str) -> dict[str, Path]:
    """Files of `folder` ending in `ending`, by name without the ending."""
    directory = root / folder
    if not directory.is_dir():
        raise InputDataError(
            f"{root.name}: {folder}/ is missing",
            expected=f"a folder {folder}/ next to dataset.json",
            found=listing(p.name for p in visible_entries(root)),
            fix=f"create {folder}/ with the cases' files",
        )
    found: dict[str, Path] = {}
    strays = []
    for entry in visible_entries(directory):
        if entry.is_file() and entry.name.endswith(ending):
            found[entry.name[: -len(ending)]] = entry
        elif is_volume_file(entry):
            strays.append(relative_name(entry, root))
    if strays:
        raise InputDataError(
            f"{folder}/ holds volume files in another format than dataset.json declares",
            expected=f"every file ending in {ending}",
            found=listing(strays),
            fix=f"convert them to {ending}, or change file_ending (one format per dataset)",
        )
    return found


def _images(root: Path, folder: str, ending: str) -> dict[str, Path]:
    images: dict[str, Path] = {}
    for stem, path in _volume_files(root, folder, ending).items():
        match = _CHANNEL.match(stem)
        if match is None or match["channel"] != "0000":
            raise InputDataError(
                f"{relative_name(path, root)}: image name does not follow CASE_0000{ending}",
                expected=f"CASE_0000{ending} (one channel, index 0000)",
                found=path.name,
                fix="rename the file; a channel other than 0000 needs multi-channel support",
            )
        images[match["case"]] = path
    return images


def _check_pairs(
    root: Path,
    image_folder: str,
    images: Mapping[str, Path],
    label_folder: str,
    labels: Mapping[str, Path],
    ending: str,
) -> None:
    no_label = sorted(set(images) - set(labels))
    if no_label:
        raise InputDataError(
            f"{label_folder}/: {len(no_label)} image(s) have no label file",
            expected=f"{label_folder}/CASE{ending} for every {image_folder}/CASE_0000{ending}",
            found="missing labels for "
            + listing(relative_name(images[n], root) for n in no_label)
            + " (looked for "
            + listing(f"{label_folder}/{n}{ending}" for n in no_label)
            + ")",
            fix="add the missing label files, or move those images out of " + image_folder,
        )
    no_image = sorted(set(labels) - set(images))
    if no_image:
        raise InputDataError(
            f"{label_folder}/: {len(no_image)} label file(s) have no image",
            expected=f"{image_folder}/CASE_0000{ending} for every {label_folder}/CASE{ending}",
            found="orphan labels " + listing(relative_name(labels[n], root) for n in no_image),
            fix="add the missing images, or remove the orphan label files",
        )


def _check_count(meta: Mapping[str, Any], found: int) -> None:
    declared = meta.get("numTraining")
    if declared is None:
        return
    if isinstance(declared, bool) or not isinstance(declared, int) or declared != found:
        raise InputDataError(
            "dataset.json: numTraining does not match imagesTr",
            expected=f"numTraining = {found} (the cases in imagesTr/labelsTr)",
            found=f"numTraining = {declared!r}",
            fix="correct numTraining, or add the cases it counts",
        )


def _patients(root: Path, train: set[str], test: set[str]) -> dict[str, str]:
    """Case name -> patient pseudonym from patients.csv; {} when the file is absent."""
    path = root / "patients.csv"
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputDataError(
            "patients.csv: cannot be read",
            expected="a UTF-8 CSV file with columns case,patient",
            found=str(exc).splitlines()[0][:200],
            fix="repair patients.csv",
        ) from None
    if not rows or not {"case", "patient"} <= set(rows[0]):
        raise InputDataError(
            "patients.csv: columns case,patient missing",
            expected="a header line 'case,patient' and one row per case",
            found=f"columns {', '.join(rows[0]) if rows else 'none (empty file)'}",
            fix="write a header 'case,patient'",
        )
    patients: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        case, patient = (row.get("case") or "").strip(), (row.get("patient") or "").strip()
        if not case or not patient or (case in patients and patients[case] != pseudonym(patient)):
            raise InputDataError(
                f"patients.csv line {line}: invalid or conflicting row",
                expected="a case name and a patient id, each case once",
                found="an empty field" if not case or not patient else f"case {case} twice",
                fix="give every case exactly one patient",
            )
        patients[case] = pseudonym(patient)
    unknown = sorted(set(patients) - train - test)
    if unknown:
        raise InputDataError(
            "patients.csv names cases that are not in the dataset",
            expected="case names as in imagesTr/imagesTs (without _0000 and the suffix)",
            found=listing(unknown),
            fix="fix or remove those rows",
        )
    unlisted = sorted(train - set(patients))
    if unlisted:
        raise InputDataError(
            "patients.csv does not list every training case",
            expected="one row per imagesTr case, so splits can keep each patient together",
            found=f"{len(unlisted)} missing: {listing(unlisted)}",
            fix="add the missing cases, or delete patients.csv (each case is then a patient)",
        )
    return patients
