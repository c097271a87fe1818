"""Layout "msd": Medical Segmentation Decathlon task folders."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from dentpy.data.case import pseudonym
from dentpy.data.check import check_dataset
from dentpy.data.dataset import open_dataset
from dentpy.data.layouts import msd
from dentpy.data.layouts.detect import detect_layout
from dentpy.errors import InputDataError

SHAPE = (8, 10, 12)
LABELS = {"0": "background", "1": "pulp", "2": "canal"}
TRAIN = ("tooth_001", "tooth_002", "tooth_003")


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)


def scan(seed: int, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).normal(500.0, 100.0, size=shape).astype(np.float32)


def label() -> np.ndarray:
    array = np.zeros(SHAPE, dtype=np.uint8)
    array[1:4, 1:4, 1:4] = 1
    array[5:7, 5:8, 6:10] = 2
    return array


def make_task(parent: Path, **meta: Any) -> Path:
    root = parent / "Task01_Teeth"
    for i, name in enumerate(TRAIN):
        save(root / "imagesTr" / f"{name}.nii.gz", scan(i))
        save(root / "labelsTr" / f"{name}.nii.gz", label())
    save(root / "imagesTs" / "tooth_101.nii.gz", scan(9))
    base: dict[str, Any] = {
        "name": "Teeth",
        "modality": {"0": "CT"},
        "labels": LABELS,
        "numTraining": len(TRAIN),
        "numTest": 1,
        "training": [
            {"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in TRAIN
        ],
        "test": ["./imagesTs/tooth_101.nii.gz"],
    }
    write_meta(root, {**base, **meta})
    return root


def write_meta(root: Path, meta: dict[str, Any]) -> None:
    (root / "dataset.json").write_text(json.dumps(meta))


def entry(name: str, image: str | None = None, label: str | None = None) -> dict[str, str]:
    return {
        "image": image or f"./imagesTr/{name}.nii.gz",
        "label": label or f"./labelsTr/{name}.nii.gz",
    }


def error_of(call: Any, *args: Any, **kwargs: Any) -> InputDataError:
    with pytest.raises(InputDataError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_task_is_detected_and_read(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    assert detect_layout(root) == "msd"
    assert detect_layout(tmp_path) == "msd"  # the parent of one Task folder

    dataset = open_dataset(root)

    assert dataset.layout == "msd"
    assert dataset.root == root
    assert dataset.labels == {"background": 0, "pulp": 1, "canal": 2}
    assert [r.source_name for r in dataset.records] == list(TRAIN)
    assert all(r.case_id == pseudonym(r.source_name) for r in dataset.records)
    assert all(r.patient_id == r.case_id for r in dataset.records)
    assert [r.source_name for r in dataset.test_records] == ["tooth_101"]
    assert not dataset.test_records[0].has_label
    case = dataset.load(dataset.records[0])
    assert case.image.shape == SHAPE
    assert case.label is not None
    assert set(np.unique(case.label.array).tolist()) == {0, 1, 2}


def test_check_dataset_finds_no_problem(tmp_path: Path) -> None:
    report = check_dataset(open_dataset(make_task(tmp_path)))
    assert report.ok, report.problems
    assert report.n_cases == 4
    assert report.layout == "msd"


def test_forced_layouts(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    assert len(open_dataset(root, layout="msd").records) == 3
    error = error_of(open_dataset, root, layout="nnunet")
    assert error.what == "Task01_Teeth: an MSD (Decathlon) task, not an nnU-Net v2 dataset"
    assert error.fix is not None and "layout 'msd'" in error.fix


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        ("../outside.nii.gz", "dataset.json: training[1].image points outside the task folder"),
        (
            "./imagesTr/../../x.nii.gz",
            "dataset.json: training[1].image points outside the task folder",
        ),
        ("/etc/passwd.nii.gz", "dataset.json: training[1].image is an absolute path"),
        ("C:\\data\\x.nii.gz", "dataset.json: training[1].image is an absolute path"),
    ],
)
def test_paths_outside_the_task_are_refused(tmp_path: Path, bad: str, what: str) -> None:
    save(tmp_path / "outside.nii.gz", scan(5))
    bad_entry = entry(TRAIN[1], image=bad)
    root = make_task(tmp_path, numTraining=2, training=[entry(TRAIN[0]), bad_entry])
    error = error_of(open_dataset, root, layout="msd")
    assert error.what == what
    assert error.found == repr(bad)


def test_symlink_leading_outside_is_refused(tmp_path: Path) -> None:
    save(tmp_path / "elsewhere" / "real.nii.gz", scan(5))
    root = make_task(tmp_path / "task")
    (root / "imagesTr" / "tooth_002.nii.gz").unlink()
    os.symlink(tmp_path / "elsewhere" / "real.nii.gz", root / "imagesTr" / "tooth_002.nii.gz")
    error = error_of(open_dataset, root)
    assert error.what == (
        "dataset.json: training[1].image is a symlink that leads outside the task folder"
    )
    assert str(tmp_path) not in str(error)


def test_missing_file_is_named(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    (root / "labelsTr" / "tooth_003.nii.gz").unlink()
    error = error_of(open_dataset, root)
    assert error.what == "dataset.json: training[2].label names a file that does not exist"
    assert error.expected == "a file ./labelsTr/tooth_003.nii.gz in Task01_Teeth"
    assert error.fix is not None and "training[2]" in error.fix


def test_two_modalities_are_refused_as_planned(tmp_path: Path) -> None:
    root = make_task(tmp_path, modality={"0": "T2", "1": "ADC"})
    error = error_of(open_dataset, root)
    assert error.what == (
        "dataset.json: multi-channel (multi-modality) input is not supported yet (planned)"
    )
    assert error.found == "2 modalities: T2, ADC"


def test_4d_image_is_refused_at_load_as_planned(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    save(root / "imagesTr" / "tooth_001.nii.gz", scan(0, (*SHAPE, 2)))
    dataset = open_dataset(root)
    error = error_of(dataset.load, dataset.records[0])
    assert error.what == (
        f"case {dataset.records[0].case_id} (imagesTr/tooth_001.nii.gz): "
        "multi-channel (4D) MSD images are not supported yet (planned)"
    )
    assert error.fix is not None and "planned" in error.fix
    assert error.found is not None and error.found.startswith("4 dimensions")


def test_count_and_duplicates_and_unlisted_files(tmp_path: Path) -> None:
    root = make_task(tmp_path, numTraining=4)
    error = error_of(open_dataset, root)
    assert error.what == "dataset.json: numTraining does not match the training list"
    assert (error.expected, error.found) == (
        "numTraining = 3 (the entries under training)",
        "numTraining = 4",
    )

    write_meta(
        root,
        {
            "modality": {"0": "CT"},
            "labels": LABELS,
            "training": [entry(n) for n in TRAIN] + [entry(TRAIN[0])],
        },
    )
    error = error_of(open_dataset, root)
    assert error.what == "dataset.json: training[3] repeats case 'tooth_001'"
    assert error.found == "case 'tooth_001' in training[0] and training[3]"

    write_meta(
        root,
        {
            "modality": {"0": "CT"},
            "labels": LABELS,
            "training": [entry(TRAIN[0]), entry(TRAIN[1])],
            "test": ["./imagesTr/tooth_002.nii.gz"],
        },
    )
    error = error_of(open_dataset, root)
    assert error.what == "dataset.json: test[0] repeats case 'tooth_002'"

    write_meta(root, {"modality": {"0": "CT"}, "labels": LABELS, "training": [entry(TRAIN[0])]})
    error = error_of(open_dataset, root)
    assert error.what == "Task01_Teeth: 4 training file(s) are not listed in dataset.json"
    assert error.found == (
        "imagesTr/tooth_002.nii.gz, imagesTr/tooth_003.nii.gz, labelsTr/tooth_002.nii.gz, "
        "labelsTr/tooth_003.nii.gz"
    )


def test_nnunet_folder_forced_as_msd_points_back(tmp_path: Path) -> None:
    root = tmp_path / "Dataset001_Teeth"
    root.mkdir()
    write_meta(
        root,
        {
            "channel_names": {"0": "CBCT"},
            "labels": {"background": 0},
            "numTraining": 0,
            "file_ending": ".nii.gz",
        },
    )
    error = error_of(msd.read, root)
    assert error.what == "dataset.json: not an MSD (Decathlon) dataset.json"
    assert error.fix is not None and "'nnunet'" in error.fix
