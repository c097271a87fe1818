"""A ToothFairy2-shaped nnU-Net raw dataset: .mha files, FDI label ids with gaps, and a
dataset.json that repeats the key "NA" (as the real one does for ids 19, 20, 29, 30, 39,
40).

Python's json keeps only the last of repeated keys, which would leave "NA": 40 declared and
silently drop 19, 20, 29, 30 and 39. dentpy's nnU-Net reader keeps every entry instead,
naming repeated keys "NA (19)", "NA (20)", ...: the file declares those ids, so a label map
holding one of them is accepted like any declared id; an id the file never declares (e.g.
49) is refused, naming the case and the value.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from dentpy.data import fdi  # noqa: E402
from dentpy.data.dataset import open_dataset  # noqa: E402
from dentpy.data.layouts.detect import detect_layout  # noqa: E402
from dentpy.errors import InputDataError  # noqa: E402

SHAPE_ZYX = (6, 7, 8)
TEETH = [q * 10 + p for q in (1, 2, 3, 4) for p in range(1, 9)]


def _dataset_json_text(num_training: int) -> str:
    """dataset.json as raw text, in the real file's order, with "NA" repeated."""
    lines = []
    for name, label_id in fdi.TOOTHFAIRY2_LABELS.items():
        lines.append(f'    "{name}": {label_id}')
        if label_id in (18, 28, 38):
            lines += [f'    "NA": {label_id + 1}', f'    "NA": {label_id + 2}']
    return (
        "{\n"
        '  "name": "ToothFairy2",\n'
        '  "channel_names": {"0": "CBCT"},\n'
        '  "labels": {\n' + ",\n".join(lines) + "\n  },\n"
        f'  "numTraining": {num_training},\n'
        '  "file_ending": ".mha"\n'
        "}\n"
    )


def _write_mha(array_zyx: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing((0.3, 0.3, 0.3))
    image.SetOrigin((-10.0, 5.0, 2.5))
    sitk.WriteImage(image, str(path), useCompression=True)


def _write_dataset(root: Path, labels_zyx: dict[str, np.ndarray]) -> Path:
    root = root / "Dataset112_ToothFairy2"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for name, label in labels_zyx.items():
        image = rng.integers(-1000, 3000, SHAPE_ZYX).astype(np.int16)
        _write_mha(image, root / "imagesTr" / f"{name}_0000.mha")
        _write_mha(label.astype(np.uint8), root / "labelsTr" / f"{name}.mha")
    (root / "dataset.json").write_text(_dataset_json_text(len(labels_zyx)), encoding="utf-8")
    return root


def _all_teeth() -> np.ndarray:
    """Every ToothFairy2 label except the NA ids, once each (11..48 with gaps)."""
    label = np.zeros(SHAPE_ZYX, dtype=np.uint8)
    values = list(range(1, 11)) + TEETH
    label.flat[: len(values)] = values
    return label


def test_raw_json_really_repeats_na() -> None:
    text = _dataset_json_text(1)
    assert text.count('"NA"') == 6
    assert json.loads(text)["labels"]["NA"] == 40  # what plain json keeps


def test_dataset_with_repeated_na_keys_opens_and_loads(tmp_path: Path) -> None:
    root = _write_dataset(tmp_path, {"ToothFairy2F_001": _all_teeth()})
    assert detect_layout(tmp_path) == "nnunet"

    dataset = open_dataset(tmp_path)

    assert dataset.layout == "nnunet"
    # Every tooth id is declared under its own name; every NA id is kept, not only 40.
    for name, label_id in fdi.TOOTHFAIRY2_LABELS.items():
        assert dataset.labels[name] == label_id
    na = {name: v for name, v in dataset.labels.items() if name.startswith("NA")}
    assert sorted(na.values()) == list(fdi.TOOTHFAIRY2_NA_IDS)
    assert na["NA (19)"] == 19 and na["NA (40)"] == 40
    assert len(dataset.labels) == len(fdi.TOOTHFAIRY2_LABELS) + 6

    case = dataset.load(dataset.records[0])
    assert case.label is not None
    values = set(np.unique(case.label.array).tolist())
    assert values == {0, *range(1, 11), *TEETH}
    assert case.image.shape == SHAPE_ZYX[::-1]
    assert case.image.spacing_mm == pytest.approx((0.3, 0.3, 0.3))
    assert str(root) not in repr(dataset.records[0].case_id)

    # The left/right flip of a ToothFairy2 dataset is the scheme's permutation.
    table = fdi.flip_lookup(dataset.labels.values(), fdi.side_pairs_from_names(dataset.labels))
    assert {k: v for k, v in table.items() if k != v} == fdi.side_pairs("toothfairy2")


@pytest.mark.parametrize("na_id", fdi.TOOTHFAIRY2_NA_IDS)
def test_na_ids_are_declared_so_a_case_holding_one_loads(tmp_path: Path, na_id: int) -> None:
    label = _all_teeth()
    label[-1, -1, -1] = na_id
    _write_dataset(tmp_path, {"ToothFairy2F_002": label})

    dataset = open_dataset(tmp_path)
    case = dataset.load(dataset.records[0])

    assert case.label is not None and na_id in np.unique(case.label.array)


def test_undeclared_value_is_refused_with_the_case_and_value(tmp_path: Path) -> None:
    label = _all_teeth()
    label[-1, -1, -1] = 49  # after 48: never declared by ToothFairy2
    _write_dataset(tmp_path, {"ToothFairy2F_003": label})

    dataset = open_dataset(tmp_path)
    with pytest.raises(InputDataError) as error:
        dataset.load(dataset.records[0])

    assert "not declared labels: 49" in error.value.what
    assert "ToothFairy2F_003.mha" in error.value.what
    assert "19=NA (19)" in (error.value.expected or "")
    assert error.value.fix
