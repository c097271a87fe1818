"""Layout "imagefolder": one folder per class (the torchvision ImageFolder convention).

    ROOT/<class>/<image>                    flat: dentpy splits by patient itself
    ROOT/{train,val,test}/<class>/<image>   with a split level: the folders are the split
    ROOT/patients.csv                       optional (dentpy): columns image,patient

Class ids are the sorted class folder names' indices, as torchvision assigns them. Images of
`test/` become test records and keep their class (they are labelled, just held out);
`valid/` and `validation/` count as `val`. A case is known by the pseudonym of its path
relative to ROOT (e.g. "caries/img1.png"); its patient is the case itself unless
patients.csv says otherwise (`image` = path relative to ROOT, as the case name).

Nothing is dropped silently: hidden files (.DS_Store) are skipped, other files in a class
folder, subfolders inside a class folder, and images lying next to class folders are
refused. Non-image files at ROOT or in a split folder (README, splits.json, patients.csv)
are side files and ignored.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from dentpy.data.case import pseudonym
from dentpy.data.image2d import DICOM_SUFFIXES, IMAGE2D_SUFFIXES, is_image2d_file
from dentpy.data.layouts import check_destination, listing, relative_name, visible_entries
from dentpy.data.samples2d import ImageDataset, ImageRecord
from dentpy.errors import InputDataError, OutputError

# Folder name (lower case) -> split name.
SPLIT_FOLDERS = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
SPLIT_ORDER = ("train", "val", "test")
PATIENTS_FILE = "patients.csv"


def _class_folder_candidate(folder: Path) -> bool:
    """A folder directly holding at least one 2D image and no subfolder (names only, except
    that an all-DICOM folder is checked to be no 3D DICOM series)."""
    entries = visible_entries(folder)
    if any(p.is_dir() for p in entries):
        return False
    images = [p for p in entries if is_image2d_file(p)]
    if not images:
        return False
    if all(p.suffix.lower() in DICOM_SUFFIXES for p in images):
        from dentpy.data.layouts.files import is_dicom_series

        return not is_dicom_series(folder)
    return True


def _subfolders(path: Path) -> list[Path]:
    return [p for p in visible_entries(path) if p.is_dir()]


def _is_split_level(folders: Sequence[Path]) -> bool:
    return bool(folders) and all(p.name.lower() in SPLIT_FOLDERS for p in folders)


def looks_like(path: Path) -> bool:
    """At least two class folders of images (directly, or inside split folders)."""
    path = Path(path)
    if not path.is_dir():
        return False
    folders = _subfolders(path)
    if _is_split_level(folders):
        return any(
            sum(_class_folder_candidate(c) for c in _subfolders(split)) >= 2 for split in folders
        )
    return sum(_class_folder_candidate(f) for f in folders) >= 2


def read(path: Path) -> ImageDataset:
    root = Path(path)
    if not root.is_dir():
        raise InputDataError(
            f"{root.name}: not an ImageFolder dataset",
            expected="a folder holding one subfolder of images per class",
            found="a file",
            fix="pass the folder that holds the class folders",
        )
    folders = _subfolders(root)
    _refuse_loose_images(root, root, "the dataset folder")
    split_of: dict[str, str] = {}  # source name -> split
    if _is_split_level(folders):
        by_split: dict[str, dict[str, list[Path]]] = {}
        seen_folder: dict[str, str] = {}
        for folder in folders:
            split = SPLIT_FOLDERS[folder.name.lower()]
            if split in seen_folder:
                raise InputDataError(
                    f"{root.name}: two folders give split {split!r}",
                    expected="one folder per split (train, val, test)",
                    found=f"{seen_folder[split]}/ and {folder.name}/",
                    fix="merge them into one folder",
                )
            seen_folder[split] = folder.name
            _refuse_loose_images(root, folder, f"split folder {folder.name}/")
            by_split[split] = _classes_of(root, folder)
        classes = _same_classes(root, by_split, seen_folder)
        images: list[tuple[str, Path]] = []
        for split in SPLIT_ORDER:
            for label, files in by_split.get(split, {}).items():
                for file in files:
                    images.append((label, file))
                    split_of[relative_name(file, root)] = split
    else:
        by_class = _classes_of(root, root)
        classes = sorted(by_class)
        images = [(label, file) for label in classes for file in by_class[label]]
    if len(classes) < 2:
        raise InputDataError(
            f"{root.name}: only one class folder",
            expected="at least two class folders (classification needs two classes or more)",
            found=f"class {listing(classes)}",
            fix="add a folder of images for every other class",
        )
    names = [relative_name(file, root) for _, file in images]
    patients = read_patients(root, names)
    records: list[ImageRecord] = []
    test_records: list[ImageRecord] = []
    for label, file in images:
        name = relative_name(file, root)
        case_id = pseudonym(name)
        record = ImageRecord(
            case_id,
            patients.get(name, case_id),
            file,
            class_label=label,
            root=root,
            source_name=name,
            annotation_file=relative_name(file.parent, root) + "/",
        )
        (test_records if split_of.get(name) == "test" else records).append(record)
    splits: dict[str, tuple[str, ...]] | None = None
    if split_of:
        splits = {
            split: tuple(pseudonym(n) for n in names if split_of[n] == split)
            for split in SPLIT_ORDER
            if split in split_of.values()
        }
        check_patients_per_split(root, [*records, *test_records], split_of, "split folders")
    return ImageDataset(
        root=root,
        layout="imagefolder",
        task="classification",
        classes=tuple(classes),
        records=tuple(records),
        test_records=tuple(test_records),
        predefined_splits=splits,
    )


def _refuse_loose_images(root: Path, folder: Path, what: str) -> None:
    loose = [p for p in visible_entries(folder) if is_image2d_file(p)]
    if loose:
        raise InputDataError(
            f"{relative_name(folder, root) if folder != root else root.name}: images lie "
            f"directly in {what}, next to the class folders",
            expected="every image inside its class folder (<class>/<image>)",
            found=listing(relative_name(p, root) for p in loose),
            fix="move each image into the folder of its class; images without a class "
            "cannot be used for classification",
        )


def _classes_of(root: Path, folder: Path) -> dict[str, list[Path]]:
    """Class name -> its image files (sorted), for the class folders inside `folder`."""
    classes: dict[str, list[Path]] = {}
    for class_folder in _subfolders(folder):
        entries = visible_entries(class_folder)
        nested = [p for p in entries if p.is_dir()]
        if nested:
            raise InputDataError(
                f"{relative_name(class_folder, root)}/: class folder holds subfolders",
                expected="image files directly in each class folder",
                found="subfolders " + listing(relative_name(p, root) + "/" for p in nested),
                fix="move the images up into the class folder, or remove the subfolders"
                + (
                    "; a split level needs every top folder to be train, val or test"
                    if class_folder.name.lower() in SPLIT_FOLDERS
                    else ""
                ),
            )
        files = [p for p in entries if is_image2d_file(p)]
        strays = [p for p in entries if not is_image2d_file(p)]
        if strays:
            raise InputDataError(
                f"{relative_name(class_folder, root)}/: files that are not 2D images",
                expected=f"only images ({', '.join(IMAGE2D_SUFFIXES)}) in a class folder",
                found=listing(relative_name(p, root) for p in strays),
                fix="remove these files from the class folder (or convert them to PNG); "
                "dentpy does not skip data silently",
            )
        if not files:
            raise InputDataError(
                f"{relative_name(class_folder, root)}/: class folder holds no images",
                expected="at least one image per class folder",
                found="an empty folder",
                fix="add the class's images, or delete the empty folder",
            )
        classes[class_folder.name] = files
    if not classes:
        raise InputDataError(
            f"{relative_name(folder, root) if folder != root else root.name}: no class folders",
            expected="one subfolder of images per class",
            found=listing(p.name for p in visible_entries(folder)) or "an empty folder",
            fix="put the images into one folder per class",
        )
    return classes


def _same_classes(
    root: Path, by_split: Mapping[str, Mapping[str, list[Path]]], folder_of: Mapping[str, str]
) -> list[str]:
    everything = sorted({c for classes in by_split.values() for c in classes})
    for split, classes in by_split.items():
        missing = sorted(set(everything) - set(classes))
        if missing:
            raise InputDataError(
                f"{folder_of[split]}/: split folder lacks classes the others have",
                expected=f"the same class folders in every split: {listing(everything)}",
                found=f"missing {listing(missing)}",
                fix=f"add {listing(f'{folder_of[split]}/{m}/' for m in missing)} with images, "
                "or rename mistyped class folders",
            )
    return everything


def read_patients(root: Path, names: Iterable[str]) -> dict[str, str]:
    """Image (path relative to root) -> patient pseudonym from patients.csv; {} if absent.

    The file must list every image exactly once: a partial list would put the unlisted
    images' patients at risk of spanning splits.
    """
    path = root / PATIENTS_FILE
    if not path.is_file():
        return {}
    known = set(names)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = [f.strip().lower() for f in reader.fieldnames or []]
            rows = [{k.strip().lower(): v for k, v in row.items() if k} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputDataError(
            f"{PATIENTS_FILE}: cannot be read",
            expected="a UTF-8 CSV file with columns image,patient",
            found=str(exc).splitlines()[0][:200],
            fix=f"repair {PATIENTS_FILE}",
        ) from None
    if not {"image", "patient"} <= set(fields):
        raise InputDataError(
            f"{PATIENTS_FILE} line 1: columns image,patient missing",
            expected="a header line 'image,patient' and one row per image",
            found=f"columns {', '.join(fields) if fields else 'none (empty file)'}",
            fix="write a header 'image,patient'",
        )
    patients: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        image = (row.get("image") or "").strip().replace("\\", "/")
        patient = (row.get("patient") or "").strip()
        if not image or not patient:
            raise InputDataError(
                f"{PATIENTS_FILE} line {line}: empty field",
                expected="an image path (relative to the dataset folder) and a patient id",
                found="an empty image" if not image else "an empty patient",
                fix="fill in the row, or delete it",
            )
        if image not in known:
            raise InputDataError(
                f"{PATIENTS_FILE} line {line}: names an image that is not in the dataset",
                expected="a path relative to the dataset folder, e.g. <class>/<image>",
                found=repr(image),
                fix="correct the path, or delete the row",
            )
        if image in patients:
            raise InputDataError(
                f"{PATIENTS_FILE} line {line}: image listed twice",
                expected="each image once",
                found=f"{image} again",
                fix="delete the duplicate row",
            )
        patients[image] = pseudonym(patient)
    unlisted = sorted(known - set(patients))
    if unlisted:
        raise InputDataError(
            f"{PATIENTS_FILE}: does not list every image",
            expected="one row per image, so splits can keep each patient together",
            found=f"{len(unlisted)} missing: {listing(unlisted)}",
            fix=f"add the missing images, or delete {PATIENTS_FILE} (each image is then "
            "its own patient)",
        )
    return patients


def check_patients_per_split(
    root: Path, records: Sequence[ImageRecord], split_of: Mapping[str, str], source: str
) -> None:
    """Refuse one patient in two splits (test data leaking into training, A15).

    The message names the patient's pseudonym and the image files, never the patient id.
    """
    splits_of: dict[str, dict[str, list[str]]] = {}
    for record in records:
        split = split_of.get(record.source_name)
        if split is not None:
            splits_of.setdefault(record.patient_id, {}).setdefault(split, []).append(
                record.source_name
            )
    for patient, by_split in sorted(splits_of.items()):
        if len(by_split) > 1:
            shown = "; ".join(
                f"{split}: {listing(files, limit=3)}" for split, files in sorted(by_split.items())
            )
            raise InputDataError(
                f"{root.name}: patient {patient} has images in several splits ({source})",
                expected="all images of one patient in one split",
                found=shown,
                fix="move this patient's images into one split; a patient in two splits "
                "leaks test data into training",
            )


def write(dataset: ImageDataset, dst: Path) -> Path:
    """Write a classification dataset as an ImageFolder at `dst` (which must not exist).

    Layout: `dst/<split>/<class>/<file>` when the dataset has predefined splits or test
    records (records outside every split go to train/, test records to test/), else
    `dst/<class>/<file>`. Files are copied byte for byte with their names; two images of one
    class folder with the same file name get a short hash of their source name as prefix
    (`<hash8>_<file>`). patients.csv (pseudonyms only) is written when some image's patient
    differs from the image itself. The folder is built next to `dst` and renamed into place,
    so a failed write leaves nothing behind.

    ImageFolder numbers classes by sorted folder name, so ids may change (a classes.txt order
    is not kept), and a class without images cannot be written (it has no folder). Every
    split must hold every class, as `read` requires.
    """
    dst = Path(dst)
    if dataset.task != "classification":
        raise OutputError(
            f"cannot write a 2D {dataset.task} dataset as an ImageFolder",
            expected="a classification dataset (one class per image)",
            found=f"task {dataset.task}",
            fix="write detection datasets as COCO or YOLO",
        )
    check_destination(dst)
    pool = [*dataset.records, *dataset.test_records]
    unlabelled = [r for r in pool if r.class_label is None]
    if unlabelled:
        raise OutputError(
            f"{dataset.root.name}: {len(unlabelled)} image(s) have no class",
            expected="a class for every image (ImageFolder keeps images in class folders)",
            found="unlabelled images " + listing(r.case_id for r in unlabelled),
            fix="label these images, or remove them before converting",
        )
    placement = _placement(dataset)
    _check_split_classes(dataset, placement, pool)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        used: set[str] = set()
        patient_rows: list[tuple[str, str]] = []
        grouped = any(r.patient_id != r.case_id for r in pool)
        for record in pool:
            folder = "/".join(p for p in (placement.get(record.case_id), record.class_label) if p)
            name = record.image_path.name
            target = f"{folder}/{name}"
            if target in used:
                tag = hashlib.sha256(
                    (record.source_name or record.case_id).encode("utf-8")
                ).hexdigest()[:8]
                target = f"{folder}/{tag}_{name}"
            if target in used:
                raise OutputError(
                    f"{target}: two images would be written to one file",
                    expected="distinct source images",
                    found=f"cases {record.case_id} and another with the same name",
                    fix="rename one of the source images",
                )
            used.add(target)
            (tmp / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy2(record.image_path, tmp / target)
            patient_rows.append((target, record.patient_id))
        if grouped:
            with open(tmp / PATIENTS_FILE, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["image", "patient"])
                writer.writerows(sorted(patient_rows))
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def _placement(dataset: ImageDataset) -> dict[str, str]:
    """Case id -> split folder; {} for a flat ImageFolder."""
    splits = dataset.predefined_splits or {}
    if not splits and not dataset.test_records:
        return {}
    unknown = sorted(set(splits) - set(SPLIT_ORDER))
    if unknown:
        raise OutputError(
            f"{dataset.root.name}: splits that ImageFolder cannot hold",
            expected="splits named train, val and test",
            found=f"splits {listing(unknown)}",
            fix="write without these splits (drop the split file) or rename them",
        )
    placement: dict[str, str] = {}
    for split in SPLIT_ORDER:
        for case_id in splits.get(split, ()):
            placement.setdefault(case_id, split)
    for record in dataset.records:
        placement.setdefault(record.case_id, "train")
    for record in dataset.test_records:
        placement[record.case_id] = "test"
    return placement


def _check_split_classes(
    dataset: ImageDataset, placement: Mapping[str, str], pool: Sequence[ImageRecord]
) -> None:
    """Refuse to write split folders that `read` would refuse (a class missing in a split)."""
    if not placement:
        return
    per_split: dict[str, set[str]] = {}
    for record in pool:
        per_split.setdefault(placement[record.case_id], set()).add(record.class_label or "")
    everything = set().union(*per_split.values())
    for split, present in sorted(per_split.items()):
        missing = sorted(everything - present)
        if missing:
            raise OutputError(
                f"{dataset.root.name}: split {split!r} has no images of some classes",
                expected="images of every class in every split (ImageFolder needs the same "
                "class folders in each split)",
                found=f"no {listing(missing)} in {split}",
                fix="re-split the dataset so every split holds every class, or write it "
                "without splits",
            )
