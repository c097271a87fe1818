"""Dataset layouts: discovery, validation at load, pseudonyms and the fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from dentpy.data.case import pseudonym
from dentpy.data.dataset import LAYOUTS, Dataset, open_dataset
from dentpy.data.layouts.detect import detect_layout
from dentpy.errors import InputDataError

# A patient-like name in file and folder names; it must never surface in ids or fingerprints.
CANARY = "DOE_JOHN_1970"
SHAPE = (10, 12, 14)
TEETH = {"background": 0, "pulp": 1, "ian": 2}


def save(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)
    return path


def scan(seed: int, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).normal(500.0, 100.0, size=shape).astype(np.float32)


def labels(shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    label = np.zeros(shape, dtype=np.uint8)
    label[2:5, 2:5, 2:5] = 1
    label[6:8, 6:9, 6:10] = 2
    return label


def make_nnunet(
    parent: Path,
    names: tuple[str, ...] = (f"{CANARY}_001", "case_002", "case_003"),
    meta: dict | None = None,
) -> Path:
    root = parent / "Dataset001_Teeth"
    for i, name in enumerate(names):
        save(root / "imagesTr" / f"{name}_0000.nii.gz", scan(i))
        save(root / "labelsTr" / f"{name}.nii.gz", labels())
    base = {
        "channel_names": {"0": "CBCT"},
        "labels": TEETH,
        "numTraining": len(names),
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps({**base, **(meta or {})}))
    return root


def error_of(call: object, *args: object, **kwargs: object) -> InputDataError:
    with pytest.raises(InputDataError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


# --- nnU-Net v2 ---------------------------------------------------------------------------


def test_nnunet_dataset_is_discovered_from_its_parent(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path)

    dataset = open_dataset(tmp_path)

    assert isinstance(dataset, Dataset) and detect_layout(tmp_path) == "nnunet"
    assert dataset.layout == "nnunet" and dataset.root == root
    assert dataset.labels == TEETH
    assert len(dataset.records) == 3 and dataset.test_records == ()
    assert dataset.predefined_splits is None
    case = dataset.load(dataset.records[0])
    assert case.image.shape == SHAPE and case.label is not None
    assert set(np.unique(case.label.array)) == {0, 1, 2}
    for record in dataset.records:
        assert CANARY not in record.case_id and CANARY not in record.patient_id
        assert record.case_id.startswith("case-") and record.patient_id == record.case_id


def test_nnunet_test_images_and_patient_grouping(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path)
    save(root / "imagesTs" / "new_001_0000.nii.gz", scan(9))
    (root / "patients.csv").write_text(
        f"case,patient\n{CANARY}_001,{CANARY}\ncase_002,{CANARY}\ncase_003,P3\n"
    )

    dataset = open_dataset(root)

    assert len(dataset.test_records) == 1 and dataset.test_records[0].label_path is None
    assert dataset.load(dataset.test_records[0]).label is None
    patients = [r.patient_id for r in dataset.records]
    assert patients.count(pseudonym(CANARY)) == 2 and CANARY not in " ".join(patients)


def test_nnunet_missing_label_names_the_image_and_the_label_looked_for(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path)
    (root / "labelsTr" / "case_002.nii.gz").unlink()

    error = error_of(open_dataset, root)

    assert error.what == "labelsTr/: 1 image(s) have no label file"
    assert error.found is not None
    assert "imagesTr/case_002_0000.nii.gz" in error.found
    assert "labelsTr/case_002.nii.gz" in error.found


def test_nnunet_orphan_label_is_named(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path)
    save(root / "labelsTr" / "stray.nii.gz", labels())

    error = error_of(open_dataset, root)

    assert error.what == "labelsTr/: 1 label file(s) have no image"
    assert error.found == "orphan labels labelsTr/stray.nii.gz"


def test_label_deleted_after_opening_is_reported_at_load(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path)
    dataset = open_dataset(root)
    record = dataset.records[1]
    assert record.label_path is not None
    record.label_path.unlink()

    error = error_of(dataset.load, record)

    assert error.what == f"case {record.case_id} (labelsTr/case_002.nii.gz): label file not found"
    assert str(tmp_path) not in str(error)


def test_nnunet_num_training_must_match(tmp_path: Path) -> None:
    error = error_of(open_dataset, make_nnunet(tmp_path, meta={"numTraining": 5}))
    assert error.what == "dataset.json: numTraining does not match imagesTr"
    assert error.expected is not None and "numTraining = 3" in error.expected
    assert error.found == "numTraining = 5"


def test_nnunet_label_map_as_id_to_name_is_accepted(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path, meta={"labels": {"0": "background", "1": "pulp", "2": "ian"}})
    assert open_dataset(root).labels == TEETH


@pytest.mark.parametrize(
    ("meta", "what"),
    [
        (
            {"channel_names": {"0": "CBCT", "1": "MRI"}},
            "dataset.json: multi-channel input is not supported yet",
        ),
        (
            {"labels": {"background": 0, "tooth": [1, 2], "pulp": 2}},
            "dataset.json: region-based labels are not supported yet",
        ),
        ({"file_ending": ".png"}, "dataset.json: file_ending is missing or not a 3D volume format"),
    ],
)
def test_nnunet_unsupported_metadata(tmp_path: Path, meta: dict, what: str) -> None:
    assert error_of(open_dataset, make_nnunet(tmp_path, meta=meta)).what == what


def test_msd_dataset_is_detected_and_forced_nnunet_points_to_msd(tmp_path: Path) -> None:
    root = tmp_path / "Task01_Teeth"
    save(root / "imagesTr" / "t_001.nii.gz", scan(0))
    save(root / "labelsTr" / "t_001.nii.gz", labels())
    meta = {
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "tooth"},
        "training": [{"image": "./imagesTr/t_001.nii.gz", "label": "./labelsTr/t_001.nii.gz"}],
    }
    (root / "dataset.json").write_text(json.dumps(meta))

    assert detect_layout(root) == "msd"
    error = error_of(open_dataset, root, layout="nnunet")

    assert error.what == "Task01_Teeth: an MSD (Decathlon) task, not an nnU-Net v2 dataset"
    assert error.fix is not None and "layout 'msd'" in error.fix
    assert "nnUNetv2_convert_MSD_dataset" in error.fix


# --- validation at load (RELIABILITY A1-A5) -------------------------------------------------


def test_shape_mismatch_is_refused_never_resized(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path)
    save(root / "labelsTr" / "case_002.nii.gz", labels((10, 12, 13)))
    dataset = open_dataset(root)
    record = dataset.records[1]

    error = error_of(dataset.load, record)

    assert error.what == (
        f"case {record.case_id} (labelsTr/case_002.nii.gz): label shape differs from the image "
        "shape"
    )
    assert error.expected == "shape (10, 12, 14) (as imagesTr/case_002_0000.nii.gz)"
    assert error.found == "shape (10, 12, 13)"


@pytest.mark.parametrize(
    ("affine", "what", "found"),
    [
        (np.diag([1.0, 1.0, 1.01, 1.0]), "spacing (mm)", "(1, 1, 1.01)"),
        (
            np.array([[1, 0, 0, 0.5], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),
            "origin (mm)",
            "(0.5, 0, 0)",
        ),
        (np.diag([-1.0, 1.0, 1.0, 1.0]), "direction", "(-1, 0, 0, 0, 1, 0, 0, 0, 1)"),
    ],
)
def test_geometry_mismatch_is_refused(
    tmp_path: Path, affine: np.ndarray, what: str, found: str
) -> None:
    root = make_nnunet(tmp_path)
    save(root / "labelsTr" / "case_003.nii.gz", labels(), affine)
    dataset = open_dataset(root)

    error = error_of(dataset.load, dataset.records[2])

    assert error.what.endswith(f"(labelsTr/case_003.nii.gz): label {what} differs from the image")
    assert error.found == found


def test_undeclared_label_values_are_listed(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path)
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[3:6, 3:6, 3:6] = 255  # a 0/255 mask exported as an image
    save(root / "labelsTr" / "case_002.nii.gz", mask)
    dataset = open_dataset(root)

    error = error_of(dataset.load, dataset.records[1])

    assert "label map holds values that are not declared labels: 255" in error.what
    assert error.expected == "only the declared ids (0=background, 1=pulp, 2=ian)"
    assert error.found == "unexpected values 255; all values present: 0, 255"
    assert error.fix is not None and "explicit label map" in error.fix


def test_nan_image_error_names_the_case_and_file(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path)
    image = scan(1)
    image[0, 0, :2] = np.nan
    save(root / "imagesTr" / "case_002_0000.nii.gz", image)
    dataset = open_dataset(root)
    record = dataset.records[1]

    error = error_of(dataset.load, record)

    assert error.what == (
        f"case {record.case_id} (imagesTr/case_002_0000.nii.gz): "
        "image contains 2 NaN or infinite voxels"
    )
    assert error.found == f"2 of {np.prod(SHAPE)} voxels are NaN/Inf"


# --- Pulpy3D / EMRA workshop -----------------------------------------------------------------


def make_pulpy(parent: Path, flavour: str, affine: np.ndarray | None = None) -> Path:
    root = parent / "pulpy"
    for i, name in enumerate((f"{CANARY}_P1", "P2", "P3")):
        save(root / name / "data.nii.gz", scan(i), affine)
        if flavour == "label":
            label = labels()
            label[label == 2] = 3  # ids with a gap: inferred names follow the ids
            save(root / name / "label.nii.gz", label, affine)
        else:
            save(root / name / "gt_pulp.nii.gz", (labels() == 1).astype(np.uint8), affine)
            save(root / name / "gt_ian.nii.gz", (labels() == 2).astype(np.uint8) * 7, affine)
            save(root / name / "gt_instance.nii.gz", labels(), affine)
    return root


def test_pulpy_label_flavour_infers_labels_and_reads_splits(tmp_path: Path) -> None:
    root = make_pulpy(tmp_path, "label")
    (root / "splits.json").write_text(
        json.dumps({"train": [f"{CANARY}_P1", "P2"], "val": [], "test": ["P3"]})
    )

    dataset = open_dataset(root)

    assert detect_layout(root) == "pulpy" and dataset.layout == "pulpy"
    assert dataset.labels == {"background": 0, "label_1": 1, "label_3": 3}
    assert len(dataset.records) == 3 and dataset.test_records == ()
    assert dataset.predefined_splits == {
        "train": (pseudonym(f"{CANARY}_P1"), pseudonym("P2")),
        "val": (),
        "test": (pseudonym("P3"),),
    }
    assert all(CANARY not in r.case_id + r.patient_id for r in dataset.records)
    assert dataset.load(dataset.records[0]).label is not None


@pytest.mark.parametrize("file", ["labels.json", "dataset.json"])
def test_pulpy_label_map_file_is_used(tmp_path: Path, file: str) -> None:
    root = make_pulpy(tmp_path, "label")
    (root / file).write_text(json.dumps({"labels": {"pulp": 1, "canal": 3}}))

    assert detect_layout(root) == "pulpy"
    assert open_dataset(root).labels == {"background": 0, "pulp": 1, "canal": 3}


def test_pulpy_inference_refuses_255_masks(tmp_path: Path) -> None:
    root = make_pulpy(tmp_path, "label")
    save(root / "P2" / "label.nii.gz", (labels() > 0).astype(np.uint8) * 255)

    error = error_of(open_dataset, root)

    assert error.what == (
        f"case {pseudonym('P2')} (P2/label.nii.gz): label value 255 with no label map to declare it"
    )
    assert error.found == "values 0, 255"


def test_pulpy_gt_masks_are_combined(tmp_path: Path) -> None:
    root = make_pulpy(tmp_path, "gt")

    dataset = open_dataset(root)
    record = dataset.records[0]
    case = dataset.load(record)

    assert dataset.labels == {"background": 0, "pulp": 1, "ian": 2}
    assert [name for name, _ in record.label_parts] == ["pulp", "ian"]
    assert record.instance_path is not None and record.instance_path.name == "gt_instance.nii.gz"
    assert case.label is not None
    np.testing.assert_array_equal(case.label.array, labels())


def test_pulpy_overlapping_gt_masks_are_refused(tmp_path: Path) -> None:
    root = make_pulpy(tmp_path, "gt")
    save(root / "P3" / "gt_ian.nii.gz", (labels() > 0).astype(np.uint8))
    dataset = open_dataset(root)

    error = error_of(dataset.load, dataset.records[2])

    assert (
        error.what
        == f"case {pseudonym('P3')} (P3/gt_ian.nii.gz): mask 'ian' overlaps the mask of pulp"
    )
    assert error.found == "27 voxels belong to both"


def test_pulpy_folder_without_labels_is_named(tmp_path: Path) -> None:
    root = make_pulpy(tmp_path, "gt")
    (root / "P2" / "gt_ian.nii.gz").unlink()

    error = error_of(open_dataset, root)

    assert error.what == "P2/: mask gt_ian missing"
    assert error.found == "data.nii.gz, gt_instance.nii.gz, gt_pulp.nii.gz"


def test_assume_spacing_replaces_spacing_but_keeps_direction_and_origin(tmp_path: Path) -> None:
    stored = np.array([[-1.0, 0, 0, 5], [0, 1, 0, -3], [0, 0, 1, 2], [0, 0, 0, 1]])
    root = make_pulpy(tmp_path, "gt", stored)

    dataset = open_dataset(root, assume_spacing_mm=(0.3, 0.3, 0.5))
    case = dataset.load(dataset.records[0])

    expected = np.array([[-0.3, 0, 0, 5], [0, 0.3, 0, -3], [0, 0, 0.5, 2], [0, 0, 0, 1]])
    assert case.label is not None
    np.testing.assert_allclose(case.image.affine, expected)
    np.testing.assert_allclose(case.label.affine, expected)
    assert error_of(open_dataset, root, assume_spacing_mm=(0.3, 0.0, 0.3)).what == (
        "assumed voxel spacing is invalid"
    )


# --- files, detection, fingerprint ----------------------------------------------------------


def test_files_layout_from_a_folder_and_a_single_file(tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    first = save(folder / f"{CANARY}.nii.gz", scan(0))
    save(folder / "other.nii", scan(1))
    (folder / "notes.txt").write_text("not a scan")

    dataset = open_dataset(folder)
    single = open_dataset(first)

    assert detect_layout(folder) == "files" and dataset.layout == "files"
    assert dataset.records == () and len(dataset.test_records) == 2
    assert [r.case_id for r in single.test_records] == [pseudonym(CANARY)]
    assert single.load(single.test_records[0]).label is None


def test_detect_layout_says_what_it_looked_for_and_found(tmp_path: Path) -> None:
    (tmp_path / "mystery").mkdir()
    (tmp_path / "mystery" / "notes.txt").write_text("x")
    (tmp_path / "mystery" / "sub").mkdir()

    error = error_of(detect_layout, tmp_path / "mystery")

    assert error.what == "mystery: no known dataset layout found"
    assert error.expected is not None
    assert "dataset.json + imagesTr/" in error.expected and "data.nii.gz" in error.expected
    assert error.found == "notes.txt, sub/"


def test_unknown_layout_name_suggests_the_closest(tmp_path: Path) -> None:
    error = error_of(open_dataset, make_nnunet(tmp_path), layout="nnUnet")
    assert error.what == "unknown dataset layout 'nnUnet'"
    assert error.fix == "did you mean 'nnunet'?"
    assert LAYOUTS[:5] == ("nnunet", "msd", "pulpy", "toothfairy", "files")


def test_fingerprint_summarises_without_identifiers(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path)
    (root / "patients.csv").write_text(
        f"case,patient\n{CANARY}_001,{CANARY}\ncase_002,x\ncase_003,y\n"
    )
    dataset = open_dataset(tmp_path)

    fingerprint = dataset.fingerprint()
    text = json.dumps(fingerprint)

    assert set(fingerprint) == {
        "dataset",
        "layout",
        "labels",
        "n_cases",
        "n_test_cases",
        "n_cases_fingerprinted",
        "assume_spacing_mm",
        "spacing_mm",
        "shape",
        "intensity",
        "label_fractions",
        "orientations",
    }
    assert fingerprint["dataset"] == "Dataset001_Teeth" and fingerprint["n_cases"] == 3
    assert fingerprint["spacing_mm"]["median"] == [1.0, 1.0, 1.0]
    assert fingerprint["shape"]["max"] == list(SHAPE)
    assert fingerprint["orientations"] == {"RAS": 3}
    assert set(fingerprint["intensity"]["percentiles"]) == {"0.5", "50", "99.5"}
    assert fingerprint["intensity"]["region"] == "foreground"
    assert sum(fingerprint["label_fractions"].values()) == pytest.approx(1.0)
    assert fingerprint["label_fractions"]["pulp"] == pytest.approx(27 / np.prod(SHAPE))
    assert CANARY not in text and str(tmp_path) not in text and "/" not in text
    assert dataset.fingerprint(max_cases=2)["n_cases_fingerprinted"] == 2


def test_files_fingerprint_uses_all_voxels(tmp_path: Path) -> None:
    save(tmp_path / f"{CANARY}.nii.gz", scan(0))
    fingerprint = open_dataset(tmp_path).fingerprint()
    assert fingerprint["intensity"]["region"] == "all"
    assert fingerprint["label_fractions"] == {}
    assert CANARY not in json.dumps(fingerprint)


def test_dataset_refuses_a_case_in_training_and_test(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path)
    save(root / "imagesTs" / "case_002_0000.nii.gz", scan(5))

    error = error_of(open_dataset, root)

    assert error.what == "Dataset001_Teeth: the same case appears more than once"
    assert error.found == f"cases {pseudonym('case_002')} listed 2 times"


def test_corrupt_file_error_names_the_case_without_absolute_paths(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path)
    path = root / "imagesTr" / "case_003_0000.nii.gz"
    path.write_bytes(path.read_bytes()[:200])
    dataset = open_dataset(root)
    record = dataset.records[2]

    error = error_of(dataset.load, record)

    assert error.what.startswith(
        f"case {record.case_id} (imagesTr/case_003_0000.nii.gz): file cannot be read completely"
    )
    assert str(tmp_path) not in str(error)


def test_two_files_with_one_case_name_are_refused(tmp_path: Path) -> None:
    from PIL import Image

    from dentpy.data.dataset import open_any

    volumes = tmp_path / "scans"
    volumes.mkdir()
    image = nib.Nifti1Image(np.zeros((4, 4, 4), dtype=np.float32), np.eye(4))
    nib.save(image, volumes / "scan.nii")
    nib.save(image, volumes / "scan.nii.gz")
    with pytest.raises(InputDataError) as error:
        open_any(volumes)
    assert "two scans give the same case name" in error.value.what
    assert "scan.nii and scan.nii.gz" in (error.value.found or "")
    pictures = tmp_path / "xrays"
    pictures.mkdir()
    for suffix in (".png", ".tif"):
        Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(pictures / f"bw1{suffix}")
    with pytest.raises(InputDataError) as error:
        open_any(pictures)
    assert "two images give the same case name" in error.value.what
