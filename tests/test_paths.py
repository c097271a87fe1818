"""Paths (RELIABILITY.md C27): symlinks leading out of the dataset root, `../` and absolute
paths in split files are refused; outputs never overwrite inputs or earlier outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.data.dataset import open_dataset
from dentpy.data.layouts import imagefolder
from dentpy.errors import CheckpointError, InputDataError, OutputError

SHAPE = (6, 7, 8)
runner = CliRunner()


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)
    return path


def scan(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(500.0, 100.0, SHAPE).astype(np.float32)


def label() -> np.ndarray:
    array = np.zeros(SHAPE, dtype=np.uint8)
    array[1:3, 1:3, 1:3] = 1
    return array


def make_nnunet(parent: Path, names: tuple[str, ...] = ("CASE", "other")) -> Path:
    root = parent / "Dataset001_Teeth"
    for i, name in enumerate(names):
        save(root / "imagesTr" / f"{name}_0000.nii.gz", scan(i))
        save(root / "labelsTr" / f"{name}.nii.gz", label())
    meta = {
        "channel_names": {"0": "CBCT"},
        "labels": {"background": 0, "pulp": 1},
        "numTraining": len(names),
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def relink(path: Path, target: Path) -> None:
    """Replace `path` by a symlink to `target`."""
    path.unlink()
    os.symlink(target, path)


def load_case(root: Path, source_name: str) -> None:
    dataset = open_dataset(root)
    record = next(r for r in dataset.records if r.source_name == source_name)
    dataset.load(record)


# --- symlinks out of the dataset root ------------------------------------------------------


def test_nnunet_image_linking_outside_the_dataset_is_refused(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path)
    outside = save(tmp_path / "elsewhere" / "real.nii.gz", scan(5))
    relink(root / "imagesTr" / "CASE_0000.nii.gz", outside)
    with pytest.raises(InputDataError) as caught:
        load_case(root, "CASE")
    message = str(caught.value)
    assert "(imagesTr/CASE_0000.nii.gz): file points outside the dataset" in message
    assert "copy the file into the dataset" in message
    assert str(tmp_path) not in message and "elsewhere" not in message
    load_case(root, "other")  # the other case is unaffected


def test_nnunet_label_linking_outside_the_dataset_is_refused(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path)
    outside = save(tmp_path / "elsewhere" / "CASE.nii.gz", label())
    relink(root / "labelsTr" / "CASE.nii.gz", outside)
    with pytest.raises(InputDataError) as caught:
        load_case(root, "CASE")
    assert "(labelsTr/CASE.nii.gz): file points outside the dataset" in str(caught.value)


def test_relative_symlink_climbing_out_is_refused(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path)
    save(tmp_path / "elsewhere" / "real.nii.gz", scan(5))
    relink(root / "imagesTr" / "CASE_0000.nii.gz", Path("../../elsewhere/real.nii.gz"))
    with pytest.raises(InputDataError, match="file points outside the dataset"):
        load_case(root, "CASE")


def test_symlinks_inside_the_dataset_are_fine(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path)
    stored = root / "store" / "CASE_image.nii.gz"
    stored.parent.mkdir()
    (root / "imagesTr" / "CASE_0000.nii.gz").rename(stored)
    os.symlink(Path("../store/CASE_image.nii.gz"), root / "imagesTr" / "CASE_0000.nii.gz")
    load_case(root, "CASE")


def test_a_dataset_reached_through_a_symlinked_parent_still_loads(tmp_path: Path) -> None:
    # Only links leading out of the dataset matter, not how the user reaches the dataset.
    real = make_nnunet(tmp_path / "disk")
    os.symlink(real, tmp_path / "Dataset002_Link")
    dataset = open_dataset(tmp_path / "Dataset002_Link")
    for record in dataset.records:
        dataset.load(record)


def _png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_imagefolder_image_linking_outside_the_dataset_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "xrays"
    for cls in ("caries", "healthy"):
        for j in range(2):
            _png(root / cls / f"img{j}.png", j)
    outside = _png(tmp_path / "elsewhere" / "real.png", 9)
    relink(root / "caries" / "img1.png", outside)
    dataset = imagefolder.read(root)
    linked = next(
        r for r in dataset.records if r.image_path.name == "img1.png" and r.class_label == "caries"
    )
    with pytest.raises(InputDataError) as caught:
        linked.load()
    message = str(caught.value)
    assert "(caries/img1.png): file points outside the dataset" in message
    assert str(tmp_path) not in message
    for record in dataset.records:
        if record is not linked:
            record.load()


def test_imagefolder_symlink_inside_the_dataset_is_fine(tmp_path: Path) -> None:
    root = tmp_path / "xrays"
    for cls in ("caries", "healthy"):
        _png(root / cls / "img0.png", 0)
    _png(root / "healthy" / "img1.png", 1)
    os.symlink(Path("../healthy/img1.png"), root / "caries" / "img1.png")
    for record in imagefolder.read(root).records:
        record.load()


# --- `../` and absolute paths in split files -----------------------------------------------


@pytest.mark.parametrize("entry", ["../CASE", "/etc/passwd", "imagesTr/../../CASE", "CASE/.."])
def test_split_file_naming_a_path_is_refused(tmp_path: Path, entry: str) -> None:
    root = make_nnunet(tmp_path)
    (root / "splits.json").write_text(json.dumps({"train": ["CASE"], "val": [entry]}))
    with pytest.raises(InputDataError) as caught:
        open_dataset(root)
    message = str(caught.value)
    assert "splits.json: split 'val' names a case that is not in the dataset" in message
    assert repr(entry) in message
    assert str(tmp_path) not in message


# --- outputs never overwrite inputs ---------------------------------------------------------


def _fake_segmentation_run(tmp_path: Path) -> Path:
    # No model: the output check runs before the run is loaded, so any folder will do.
    run = tmp_path / "runs" / "never-trained"
    run.mkdir(parents=True)
    return run


def _predict(*args: str) -> BaseException | None:
    result = runner.invoke(app, ["predict", *args])
    return result.exception


def test_predict_into_the_input_folder_refuses_to_overwrite_an_existing_output(
    tmp_path: Path,
) -> None:
    scans = tmp_path / "scans"
    source = save(scans / "jaw.nii.gz", scan())
    earlier = scans / "jaw_seg.nii.gz"
    earlier.write_bytes(b"an earlier result the user keeps")
    before = sorted(p.name for p in scans.iterdir())
    error = _predict(str(_fake_segmentation_run(tmp_path)), str(source), "--out", str(scans))
    assert isinstance(error, OutputError), error
    message = str(error)
    assert "scans/jaw_seg.nii.gz: the output file already exists" in message
    assert "never overwrites" in message
    assert str(tmp_path) not in message
    assert earlier.read_bytes() == b"an earlier result the user keeps"
    assert sorted(p.name for p in scans.iterdir()) == before


def test_predict_refuses_an_output_that_is_an_input(tmp_path: Path) -> None:
    # A scan named like an output ("x_seg.nii.gz") predicted from its own folder.
    scans = tmp_path / "scans"
    save(scans / "jaw.nii.gz", scan(0))
    save(scans / "jaw_seg.nii.gz", scan(1))
    error = _predict(str(_fake_segmentation_run(tmp_path)), str(scans), "--out", str(scans))
    assert isinstance(error, OutputError), error
    assert "scans/jaw_seg.nii.gz: the output would overwrite an input" in str(error)


def test_predict_refuses_an_output_that_is_a_symlinked_input(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    source = save(scans / "jaw.nii.gz", scan(0))
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(source, out / "jaw_seg.nii.gz")
    error = _predict(str(_fake_segmentation_run(tmp_path)), str(source), "--out", str(out))
    assert isinstance(error, OutputError), error
    assert "out/jaw_seg.nii.gz" in str(error)


def test_predict_refuses_an_existing_overlay(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    source = save(scans / "jaw.nii.gz", scan())
    out = tmp_path / "out"
    out.mkdir()
    (out / "jaw_overlay.png").write_bytes(b"keep")
    run = str(_fake_segmentation_run(tmp_path))
    error = _predict(run, str(source), "--out", str(out), "--overlay")
    assert isinstance(error, OutputError), error
    assert "out/jaw_overlay.png: the output file already exists" in str(error)
    # Without --overlay the picture is not an output: the check passes and loading the
    # (fake) run fails next - proof that the check ran first.
    error = _predict(run, str(source), "--out", str(out))
    assert isinstance(error, CheckpointError), error


def test_predict_refuses_two_inputs_writing_the_same_output(tmp_path: Path) -> None:
    first = save(tmp_path / "a" / "jaw.nii.gz", scan(0))
    second = save(tmp_path / "b" / "jaw.nii.gz", scan(1))
    out = tmp_path / "out"
    run = str(_fake_segmentation_run(tmp_path))
    error = _predict(run, str(first), str(second), "--out", str(out))
    assert isinstance(error, OutputError), error
    assert "two inputs would write the same output" in str(error)
    assert not out.exists()


def test_predict_follows_a_symlinked_input_the_user_names(tmp_path: Path) -> None:
    # Inputs named one by one are not a dataset: a link to a scan elsewhere is accepted
    # (the check passes; only the fake run fails to load afterwards).
    real = save(tmp_path / "archive" / "real.nii.gz", scan())
    os.symlink(real, tmp_path / "jaw.nii.gz")
    error = _predict(
        str(_fake_segmentation_run(tmp_path)),
        str(tmp_path / "jaw.nii.gz"),
        "--out",
        str(tmp_path / "out"),
    )
    assert isinstance(error, CheckpointError), error
    assert "not a dentpy run folder" in str(error)


def _fake_classification_run(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "never-trained-cls"
    run.mkdir(parents=True)
    (run / "plan.json").write_text(json.dumps({"task": {"task": "classification"}}))
    return run


def test_classification_predict_refuses_an_existing_cam_picture(tmp_path: Path) -> None:
    images = tmp_path / "xrays"
    _png(images / "tooth.png")
    (images / "tooth_cam.png").write_bytes(b"keep")
    run = str(_fake_classification_run(tmp_path))
    error = _predict(run, str(images / "tooth.png"), "--out", str(images), "--explain")
    assert isinstance(error, OutputError), error
    assert "xrays/tooth_cam.png: the output file already exists" in str(error)
    assert (images / "tooth_cam.png").read_bytes() == b"keep"
    assert not (images / "predictions.csv").exists()


def test_classification_predict_refuses_an_existing_table_before_loading(tmp_path: Path) -> None:
    images = tmp_path / "xrays"
    _png(images / "tooth.png")
    (images / "predictions.csv").write_text("keep")
    run = str(_fake_classification_run(tmp_path))
    error = _predict(run, str(images), "--out", str(images))
    assert isinstance(error, OutputError), error
    assert "predictions.csv already exists" in str(error)
    assert (images / "predictions.csv").read_text() == "keep"
