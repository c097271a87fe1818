"""Layout "pulpy": one folder per patient (Pulpy3D and the EMRA workshop data).

    ROOT/P1/data.nii.gz + label.nii.gz                       workshop flavour: one label map
    ROOT/P1/data.nii.gz + gt_pulp.nii.gz + gt_ian.nii.gz     Pulpy3D flavour: one mask per class
                        (+ gt_instance.nii.gz, kept for instance tasks, not read here)
    ROOT/labels.json or ROOT/dataset.json                    optional label map (name -> id)
    ROOT/splits.json                                         optional {"train": [folders], ...}

The folder name is the patient, so it becomes the pseudonymous case and patient id. In the
gt_* flavour the masks are combined into one label map (pulp -> 1, ian -> 2 unless the label
map says otherwise). Without a label map, a workshop dataset's ids are read from the labels
themselves and named `label_<id>`. Pulpy3D headers say 1.0 mm although the scans are
~0.3 mm: pass `assume_spacing_mm` to `open_dataset`.
"""

from __future__ import annotations

from pathlib import Path

from dentpy.data.case import GT_PART_LABELS, CaseRecord, present_values, pseudonym
from dentpy.data.dataset import Dataset
from dentpy.data.io import is_volume_file, read_label, volume_suffix
from dentpy.data.layouts import (
    listing,
    parse_label_map,
    read_json,
    read_splits,
    relative_name,
    visible_entries,
)
from dentpy.errors import InputDataError

IMAGE_NAME = "data"
LABEL_NAME = "label"
GT_PARTS = ("pulp", "ian")  # gt_<class> masks combined into the semantic label map
INSTANCE_NAME = "gt_instance"
LABEL_FILES = ("labels.json", "dataset.json")  # first one present wins

# 255 in a label map is nearly always a 0/255 mask saved as an image, not class 255.
SUSPICIOUS_LABEL = 255


def volumes_by_stem(folder: Path) -> dict[str, Path]:
    """Volume files of a folder by name without suffix ("data.nii.gz" -> "data")."""
    return {
        p.name[: len(p.name) - len(volume_suffix(p))]: p
        for p in visible_entries(folder)
        if is_volume_file(p)
    }


def case_folders(root: Path) -> list[Path]:
    """Subfolders holding an image file named data.*: the cases."""
    return [p for p in visible_entries(root) if p.is_dir() and IMAGE_NAME in volumes_by_stem(p)]


def read(path: Path) -> Dataset:
    root = Path(path)
    if not root.is_dir():
        raise InputDataError(
            f"{root.name}: the Pulpy3D layout is a folder",
            expected="ROOT/<patient>/data.nii.gz with label.nii.gz or gt_*.nii.gz",
            found="a file",
            fix="pass the folder holding the patient folders",
        )
    records: list[CaseRecord] = []
    flavours: dict[str, str] = {}  # flavour -> first folder using it
    names: dict[str, str] = {}  # folder name -> case id, for splits.json
    for folder in (p for p in visible_entries(root) if p.is_dir()):
        volumes = volumes_by_stem(folder)
        if not volumes:
            continue  # not a case folder (docs, scripts): nothing to misread
        record, flavour = _record(root, folder, volumes)
        flavours.setdefault(flavour, folder.name)
        names[folder.name] = record.case_id
        records.append(record)
    if not records:
        raise InputDataError(
            f"{root.name}: no patient folders found",
            expected="ROOT/<patient>/data.nii.gz with label.nii.gz or gt_pulp/gt_ian.nii.gz",
            found=listing(p.name + ("/" if p.is_dir() else "") for p in visible_entries(root))
            or "an empty folder",
            fix="pass the folder that holds the patient folders",
        )
    if len(flavours) > 1:
        raise InputDataError(
            f"{root.name}: patient folders mix two label schemes",
            expected="label.nii.gz in every folder, or gt_*.nii.gz in every folder",
            found=", ".join(f"{f} (e.g. {folder}/)" for f, folder in sorted(flavours.items())),
            fix="convert the folders to one scheme",
        )
    labels = _labels(root, records, next(iter(flavours)))
    splits = None
    if (root / "splits.json").is_file():
        splits = read_splits(root / "splits.json", root, names)
    return Dataset(
        root=root,
        layout="pulpy",
        labels=labels,
        records=tuple(records),
        test_records=(),
        predefined_splits=splits,
    )


def _record(root: Path, folder: Path, volumes: dict[str, Path]) -> tuple[CaseRecord, str]:
    def refuse(what: str, expected: str, fix: str) -> InputDataError:
        return InputDataError(
            f"{folder.name}/: {what}",
            expected=expected,
            found=listing(p.name for p in volumes.values()),
            fix=fix,
        )

    if IMAGE_NAME not in volumes:
        raise refuse(
            "no image file data.*",
            "data.nii.gz (the scan) in every patient folder",
            "add the scan as data.nii.gz, or move the folder out of the dataset",
        )
    parts = {stem[3:]: p for stem, p in volumes.items() if stem.startswith("gt_")}
    instance = parts.pop(INSTANCE_NAME[3:], None)
    unknown = sorted(set(parts) - set(GT_PARTS))
    if unknown:
        raise refuse(
            f"unknown mask gt_{unknown[0]}",
            f"masks {', '.join('gt_' + p for p in (*GT_PARTS, 'instance'))}",
            "rename or remove the unknown mask",
        )
    label = volumes.get(LABEL_NAME)
    if label is not None and parts:
        raise refuse(
            "both label.* and gt_* masks: which one is the truth is ambiguous",
            "either label.nii.gz or gt_pulp/gt_ian.nii.gz",
            "keep one labelling scheme per folder",
        )
    if label is None and set(parts) != set(GT_PARTS):
        missing = [f"gt_{p}" for p in GT_PARTS if p not in parts]
        raise refuse(
            "labels missing" if not parts else f"mask {missing[0]} missing",
            "label.nii.gz, or gt_pulp.nii.gz and gt_ian.nii.gz",
            "add the missing label files, or move the folder out of the dataset "
            "(a training case needs its labels)",
        )
    case_id = pseudonym(folder.name)
    image = volumes[IMAGE_NAME]
    if label is not None:
        record = CaseRecord(
            case_id,
            case_id,
            image,
            label,
            instance_path=instance,
            root=root,
            source_name=folder.name,
        )
        return record, "label.*"
    ordered = tuple((name, parts[name]) for name in GT_PARTS)
    record = CaseRecord(
        case_id,
        case_id,
        image,
        label_parts=ordered,
        instance_path=instance,
        root=root,
        source_name=folder.name,
    )
    return record, "gt_*"


def _labels(root: Path, records: list[CaseRecord], flavour: str) -> dict[str, int]:
    for name in LABEL_FILES:
        if (root / name).is_file():
            labels = parse_label_map(read_json(root / name, root), name)
            missing = [p for p in GT_PARTS if p not in labels]
            if flavour == "gt_*" and missing:
                raise InputDataError(
                    f"{name}: the gt_* masks need ids for {', '.join(missing)}",
                    expected=f"names {', '.join(GT_PARTS)} in the label map",
                    found="names " + ", ".join(labels),
                    fix=f"add {', '.join(missing)} to {name}",
                )
            return labels
    if flavour == "gt_*":
        return dict(GT_PART_LABELS)
    return _infer_labels(root, records)


def _infer_labels(root: Path, records: list[CaseRecord]) -> dict[str, int]:
    """Label ids present in any case, named `label_<id>` (reads every label file once)."""
    values: set[int] = set()
    for record in records:
        if record.label_path is None:
            continue  # only gt_* records lack it, and those never reach inference
        try:
            present = present_values(read_label(record.label_path).array)
        except InputDataError as exc:
            raise InputDataError(
                f"case {record.case_id} ({relative_name(record.label_path, root)}): "
                + exc.what.removeprefix(f"{record.label_path.name}: "),
                expected=exc.expected,
                found=exc.found,
                fix=exc.fix,
            ) from None
        if SUSPICIOUS_LABEL in present:
            raise InputDataError(
                f"case {record.case_id} ({relative_name(record.label_path, root)}): "
                f"label value {SUSPICIOUS_LABEL} with no label map to declare it",
                expected="small integer class ids (0 = background), or labels.json",
                found=f"values {', '.join(map(str, present[:20]))}",
                fix="a 0/255 mask should be remapped to 0/1; if 255 is a real class, "
                'declare it in labels.json, e.g. {"background": 0, "pulp": 255}',
            )
        values.update(present)
    return {"background": 0, **{f"label_{v}": v for v in sorted(values - {0})}}
