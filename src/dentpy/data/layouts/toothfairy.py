"""Layout "toothfairy": the ToothFairy 2023 challenge (inferior alveolar canal).

    ROOT/P1/data.npy        the scan, int16, axes (Z, Y, X)
    ROOT/P1/gt_alpha.npy    dense canal label (0/1), missing for some patients
    ROOT/P1/gt_sparse.npy   sparse annotation (not used for training: it would teach
                            the network that unlabelled canal voxels are background)
    ROOT/splits.json        {"train": [...], "val": [...], "test": [...]} of folder names
    ROOT/spacing.json       optional {"spacing_mm": [x, y, z]} (a dentpy extension)

The arrays carry no spacing: ToothFairy scans are 0.3 mm, used unless spacing.json or
`assume_spacing_mm` says otherwise. Both canals share label 1 ("ian"), so no left/right
flip swap applies. Patients without gt_alpha go to `test_records` (unlabelled) rather
than being silently dropped.
"""

from __future__ import annotations

from pathlib import Path

from dentpy.data.case import CaseRecord, pseudonym
from dentpy.data.dataset import Dataset
from dentpy.data.layouts import read_json, read_splits, visible_entries
from dentpy.errors import InputDataError

IMAGE_FILE = "data.npy"
DENSE_LABEL_FILE = "gt_alpha.npy"
DEFAULT_SPACING_MM = (0.3, 0.3, 0.3)
LABELS = {"background": 0, "ian": 1}


def case_folders(root: Path) -> list[Path]:
    return [p for p in visible_entries(root) if p.is_dir() and (p / IMAGE_FILE).is_file()]


def _spacing(root: Path) -> tuple[float, float, float]:
    path = root / "spacing.json"
    if not path.is_file():
        return DEFAULT_SPACING_MM
    raw = read_json(path, root)
    values = raw.get("spacing_mm") if isinstance(raw, dict) else None
    if (
        not isinstance(values, list)
        or len(values) != 3
        or not all(isinstance(v, (int, float)) and v > 0 for v in values)
    ):
        raise InputDataError(
            f"{root.name}/spacing.json: unexpected content",
            expected='{"spacing_mm": [x, y, z]} with three positive numbers (mm)',
            found=repr(raw)[:120],
            fix="fix or delete the file (without it, 0.3 mm is assumed)",
        )
    return (float(values[0]), float(values[1]), float(values[2]))


def read(path: Path) -> Dataset:
    root = Path(path)
    folders = case_folders(root) if root.is_dir() else []
    if not folders:
        raise InputDataError(
            f"{root.name}: no ToothFairy patient folders found",
            expected="ROOT/<patient>/data.npy (+ gt_alpha.npy)",
            found="a file" if root.is_file() else "no folder with data.npy",
            fix="pass the folder that holds the P1, P2, ... folders",
        )
    records: list[CaseRecord] = []
    unlabelled: list[CaseRecord] = []
    names: dict[str, str] = {}
    for folder in folders:
        case_id = pseudonym(folder.name)
        names[folder.name] = case_id
        label = folder / DENSE_LABEL_FILE
        record = CaseRecord(
            case_id=case_id,
            patient_id=case_id,
            image_path=folder / IMAGE_FILE,
            label_path=label if label.is_file() else None,
            root=root,
            source_name=folder.name,
        )
        (records if record.label_path else unlabelled).append(record)
    splits_path = root / "splits.json"
    splits = read_splits(splits_path, root, names) if splits_path.is_file() else None
    if splits:
        labelled = {r.case_id for r in records}
        splits = {k: tuple(c for c in v if c in labelled) for k, v in splits.items()}
    return Dataset(
        root=root,
        layout="toothfairy",
        labels=dict(LABELS),
        records=tuple(records),
        test_records=tuple(unlabelled),
        predefined_splits=splits,
        assume_spacing_mm=_spacing(root),
    )
