"""Layout "csv": image classification labels in a CSV file.

    ROOT/labels.csv     header image,label[,patient][,split] (names case-insensitive)
    ROOT/classes.txt    optional: one class per line, in id order
    ROOT/<images>       anywhere below ROOT; `image` is the path relative to ROOT

Without labels.csv, exactly one other *.csv whose header has `image` and `label` is used.
`label` may be an integer grade or a name and is kept as text. Class order: classes.txt when
present (every label must be one of its classes), else the distinct labels sorted, numerically
when all of them are integers (a severity grade "10" comes after "9").

`split` (train/val/test; valid/validation = val) turns the CSV into a predefined split; test
rows become test records that keep their label. `patient` groups images of one patient, and
one patient in two splits is refused (A15). Paths leaving ROOT (`..`, absolute) are refused
(C27). Images under ROOT that the CSV does not list are ignored: the CSV is the dataset, and a
folder often holds more images than are labelled. A CSV listing no image is an error.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path, PurePosixPath

from dentpy.data.case import pseudonym
from dentpy.data.image2d import IMAGE2D_SUFFIXES, image2d_suffix
from dentpy.data.layouts import listing, visible_entries
from dentpy.data.layouts.imagefolder import SPLIT_FOLDERS, SPLIT_ORDER, check_patients_per_split
from dentpy.data.samples2d import ImageDataset, ImageRecord
from dentpy.errors import InputDataError

LABELS_FILE = "labels.csv"
CLASSES_FILE = "classes.txt"
REQUIRED = ("image", "label")
_INT = re.compile(r"^[+-]?\d+$")
_DRIVE = re.compile(r"^[A-Za-z]:")


def _header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            first = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    return [f.strip().lower() for f in first]


def _has_columns(path: Path) -> bool:
    return set(REQUIRED) <= set(_header(path))


def _candidates(root: Path) -> list[Path]:
    return [
        p
        for p in visible_entries(root)
        if p.is_file() and p.suffix.lower() == ".csv" and p.name != LABELS_FILE
    ]


def looks_like(path: Path) -> bool:
    """labels.csv, or another CSV whose first line has image and label columns."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / LABELS_FILE).is_file():
        return True
    return any(_has_columns(p) for p in _candidates(path))


def find_csv(path: Path) -> Path:
    """The labels CSV of a folder (or the CSV file passed itself)."""
    if path.is_file() and path.suffix.lower() == ".csv":
        return path
    if not path.is_dir():
        raise InputDataError(
            f"{path.name}: not a CSV-labelled dataset",
            expected=f"a folder holding {LABELS_FILE} (image,label[,patient][,split])",
            found="a file",
            fix=f"pass the folder holding {LABELS_FILE}",
        )
    if (path / LABELS_FILE).is_file():
        return path / LABELS_FILE
    matching = [p for p in _candidates(path) if _has_columns(p)]
    if len(matching) == 1:
        return matching[0]
    raise InputDataError(
        f"{path.name}: "
        + ("several CSV files could be the labels" if matching else f"no {LABELS_FILE}"),
        expected=f"{LABELS_FILE}, or exactly one CSV with the header image,label",
        found=listing(p.name for p in matching)
        if matching
        else listing(p.name for p in visible_entries(path)) or "an empty folder",
        fix=f"name the labels file {LABELS_FILE}",
    )


def read(path: Path) -> ImageDataset:
    path = Path(path)
    source = find_csv(path)
    root = source.parent
    name = source.name
    header, rows = _rows(source)
    has_patient, has_split = "patient" in header, "split" in header
    declared = _declared_classes(root)
    records: list[ImageRecord] = []
    test_records: list[ImageRecord] = []
    split_of: dict[str, str] = {}
    seen: dict[str, int] = {}
    for line, row in rows:
        where = f"{name} line {line}"
        image = _image_name(row.get("image", ""), where)
        if image in seen:
            raise InputDataError(
                f"{where}: image listed twice",
                expected="each image once (one label per image)",
                found=f"{image}, first listed on line {seen[image]}",
                fix="delete the duplicate row; an image listed twice could end up in "
                "training and test",
            )
        seen[image] = line
        file = root / image
        if not image2d_suffix(file):
            raise InputDataError(
                f"{where}: not a 2D image file",
                expected=f"a file ending in {', '.join(IMAGE2D_SUFFIXES)}",
                found=image,
                fix="list image files only (convert others to PNG)",
            )
        if not file.is_file():
            raise InputDataError(
                f"{where}: image file not found",
                expected=f"{image} (relative to the folder of {name})",
                found="no such file",
                fix="correct the path, add the image, or delete the row",
            )
        label = row.get("label", "").strip()
        if not label:
            raise InputDataError(
                f"{where}: empty label",
                expected="a class name or integer grade for every image",
                found=f"no label for {image}",
                fix="fill in the label, or delete the row",
            )
        if declared is not None and label not in declared:
            raise InputDataError(
                f"{where}: label is not a class of {CLASSES_FILE}",
                expected=f"one of {listing(declared)}",
                found=repr(label),
                fix=f"correct the label, or add the class to {CLASSES_FILE}",
            )
        case_id = pseudonym(image)
        patient_id = case_id
        if has_patient:
            patient = row.get("patient", "").strip()
            if not patient:
                raise InputDataError(
                    f"{where}: empty patient",
                    expected="a patient id in every row (the column is present)",
                    found=f"no patient for {image}",
                    fix="fill in the patient, or remove the patient column",
                )
            patient_id = pseudonym(patient)
        split = ""
        if has_split:
            raw = row.get("split", "").strip()
            split = SPLIT_FOLDERS.get(raw.lower(), "")
            if not split:
                raise InputDataError(
                    f"{where}: unknown split",
                    expected="train, val or test in every row (the column is present)",
                    found=repr(raw),
                    fix="write train, val or test",
                )
            split_of[image] = split
        record = ImageRecord(
            case_id,
            patient_id,
            file,
            class_label=label,
            root=root,
            source_name=image,
            annotation_file=f"{name} line {line}",
        )
        (test_records if split == "test" else records).append(record)
    if not seen:
        raise InputDataError(
            f"{name}: lists no images",
            expected="a header image,label and one row per image",
            found="a header only",
            fix="add one row per labelled image",
        )
    classes = declared if declared is not None else _sorted_labels([*records, *test_records])
    if len(classes) < 2:
        raise InputDataError(
            f"{name}: only one class",
            expected="at least two classes (classification needs two classes or more)",
            found=f"every image labelled {listing(classes)}",
            fix=f"add images of the other classes, or list all classes in {CLASSES_FILE}",
        )
    splits: dict[str, tuple[str, ...]] | None = None
    if split_of:
        check_patients_per_split(root, [*records, *test_records], split_of, f"{name}, split column")
        splits = {
            split: tuple(pseudonym(i) for i in seen if split_of[i] == split)
            for split in SPLIT_ORDER
            if split in split_of.values()
        }
    return ImageDataset(
        root=root,
        layout="csv",
        task="classification",
        classes=tuple(classes),
        records=tuple(records),
        test_records=tuple(test_records),
        predefined_splits=splits,
    )


def _rows(source: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The lower-case header, and (line number, row) for every non-blank row."""
    name = source.name
    try:
        with open(source, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [f.strip().lower() for f in next(reader, [])]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise InputDataError(
                    f"{name} line 1: column(s) {', '.join(missing)} missing",
                    expected="a header line image,label[,patient][,split]",
                    found=f"columns {', '.join(header)}" if header else "an empty file",
                    fix="write the header image,label (column names are case-insensitive)",
                )
            twice = sorted({c for c in header if c and header.count(c) > 1})
            if twice:
                raise InputDataError(
                    f"{name} line 1: column(s) named twice",
                    expected="each column once",
                    found=", ".join(twice),
                    fix="rename or delete the duplicate columns",
                )
            rows: list[tuple[int, dict[str, str]]] = []
            for values in reader:
                line = reader.line_num
                if not any(v.strip() for v in values):
                    continue
                if len(values) != len(header):
                    raise InputDataError(
                        f"{name} line {line}: {len(values)} fields",
                        expected=f"{len(header)} fields, as the header ({', '.join(header)})",
                        found=f"{len(values)} fields",
                        fix="fix the row (a comma inside a value needs double quotes)",
                    )
                rows.append((line, dict(zip(header, values, strict=True))))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputDataError(
            f"{name}: cannot be read",
            expected="a UTF-8 CSV file",
            found=str(exc).splitlines()[0][:200],
            fix=f"repair {name} (save it as UTF-8 CSV)",
        ) from None
    return header, rows


def _image_name(raw: str, where: str) -> str:
    """A dataset-relative POSIX path, refusing anything that could leave the root (C27)."""
    text = raw.strip().replace("\\", "/")
    if not text:
        raise InputDataError(
            f"{where}: empty image path",
            expected="an image path relative to the CSV's folder",
            found="an empty field",
            fix="fill in the image, or delete the row",
        )
    parts = PurePosixPath(text).parts
    if text.startswith("/") or _DRIVE.match(text) or ".." in parts:
        raise InputDataError(
            f"{where}: image path leaves the dataset folder",
            expected="a path relative to the CSV's folder, without '..'",
            found="an absolute path" if ".." not in parts else "a path with '..'",
            fix="move the images below the CSV's folder and list them relative to it",
        )
    return PurePosixPath(*[p for p in parts if p != "."]).as_posix()


def _declared_classes(root: Path) -> list[str] | None:
    path = root / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputDataError(
            f"{CLASSES_FILE}: cannot be read",
            expected="a UTF-8 text file, one class per line",
            found=str(exc).splitlines()[0][:200],
            fix=f"repair {CLASSES_FILE}",
        ) from None
    classes: list[str] = []
    for line, text in enumerate(lines, start=1):
        name = text.strip()
        if not name:
            continue
        if name in classes:
            raise InputDataError(
                f"{CLASSES_FILE} line {line}: class listed twice",
                expected="each class once, in id order",
                found=repr(name),
                fix="delete the duplicate line",
            )
        classes.append(name)
    return classes


def _sorted_labels(records: list[ImageRecord]) -> list[str]:
    labels = {r.class_label for r in records if r.class_label is not None}
    if all(_INT.match(label) for label in labels):
        return sorted(labels, key=lambda label: (int(label), label))
    return sorted(labels)
