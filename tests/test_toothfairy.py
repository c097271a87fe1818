"""ToothFairy 2023 layout: .npy volumes (Z, Y, X) without geometry, dense and sparse labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dentpy.data.dataset import open_dataset
from dentpy.data.layouts.detect import detect_layout
from dentpy.data.synth import generate_case, write_dataset
from dentpy.errors import InputDataError


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tf") / "ToothFairy"
    write_dataset(out, cases=5, profile="tiny", seed=0, layout="toothfairy")
    return out


def test_reads_the_synthetic_toothfairy_dataset_exactly(root: Path) -> None:
    assert detect_layout(root) == "toothfairy"
    dataset = open_dataset(root)
    assert dataset.layout == "toothfairy"
    assert dataset.labels == {"background": 0, "ian": 1}
    assert dataset.assume_spacing_mm == (1.0, 1.0, 1.0)  # from spacing.json
    assert dataset.predefined_splits is not None
    assert len(dataset.predefined_splits["val"]) == 1
    case = dataset.load(dataset.records[0])
    source = generate_case(0, 0, "tiny")
    assert np.array_equal(case.image.array, source.image.array)  # (Z, Y, X) undone
    canal = np.isin(source.label.array, (2, 3))
    assert np.array_equal(case.label.array == 1, canal)  # type: ignore[union-attr]
    assert case.image.spacing_mm == pytest.approx((1.0, 1.0, 1.0))


def test_without_spacing_file_real_toothfairy_spacing_is_assumed(
    root: Path, tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "tf"
    shutil.copytree(root, copy)
    (copy / "spacing.json").unlink()
    assert open_dataset(copy).assume_spacing_mm == (0.3, 0.3, 0.3)
    assert open_dataset(copy, assume_spacing_mm=(0.4, 0.4, 0.4)).assume_spacing_mm == (
        0.4,
        0.4,
        0.4,
    )


def test_patient_without_dense_label_is_kept_unlabelled_not_dropped(
    root: Path, tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "tf"
    shutil.copytree(root, copy)
    (copy / "P2" / "gt_alpha.npy").unlink()
    dataset = open_dataset(copy)
    assert len(dataset.records) == 4
    assert len(dataset.test_records) == 1
    assert dataset.test_records[0].label_path is None


def test_pickled_or_flat_arrays_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "tf" / "P1"
    folder.mkdir(parents=True)
    np.save(folder / "data.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    np.save(folder / "gt_alpha.npy", np.zeros((4, 4, 4), np.uint8))
    dataset = open_dataset(tmp_path / "tf")
    with pytest.raises(InputDataError) as error:
        dataset.load(dataset.records[0])
    assert "cannot be read completely" in error.value.what
    np.save(folder / "data.npy", np.zeros((4, 4), np.int16))
    with pytest.raises(InputDataError) as error:
        dataset.load(dataset.records[0])
    assert "expected a 3D volume" in error.value.what


def test_bad_spacing_file_is_explained(root: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "tf"
    shutil.copytree(root, copy)
    (copy / "spacing.json").write_text(json.dumps({"spacing_mm": [0.3, 0]}))
    with pytest.raises(InputDataError) as error:
        open_dataset(copy)
    assert "spacing.json: unexpected content" in error.value.what
