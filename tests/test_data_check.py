from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.data.synth import write_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("check") / "d", cases=3, test_cases=1)


def test_sound_dataset_passes_with_fingerprint_json_and_pictures(
    synthetic: Path, tmp_path: Path
) -> None:
    report_path, pictures = tmp_path / "report.json", tmp_path / "pictures"
    result = runner.invoke(
        app,
        ["data", "check", str(synthetic), "--json", str(report_path), "--pictures", str(pictures)],
    )
    assert result.exit_code == 0, result.output
    assert "no problems found in 4 cases" in result.output
    report = json.loads(report_path.read_text())
    assert report["ok"] is True
    assert report["fingerprint"]["n_cases"] == 3
    assert set(report["fingerprint"]["label_fractions"]) >= {"pulp", "left_ian", "right_ian"}
    names = sorted(p.name for p in pictures.iterdir())
    assert "class_balance.png" in names and "intensity_histogram.png" in names
    assert len([n for n in names if n.startswith("case-")]) == 4  # labelled cases (+ labelsTs)
    assert all((pictures / n).read_bytes()[:4] == b"\x89PNG" for n in names)
    assert "synth_" not in report_path.read_text()  # pseudonyms only


def test_every_problem_is_listed_and_the_exit_code_is_1(synthetic: Path, tmp_path: Path) -> None:
    copy = tmp_path / "Dataset001_SynthCBCT"
    shutil.copytree(synthetic, copy)
    image_path = copy / "imagesTr" / "synth_000_0000.nii.gz"
    image = nib.load(image_path)
    array = np.asarray(image.dataobj).astype(np.float32)
    array[0, 0, 0] = np.inf
    nib.save(nib.Nifti1Image(array, image.affine), image_path)
    label_path = copy / "labelsTr" / "synth_001.nii.gz"
    label = nib.load(label_path)
    mask = np.asarray(label.dataobj).copy()
    mask[0, 0, 0] = 255
    nib.save(nib.Nifti1Image(mask, label.affine), label_path)
    result = runner.invoke(app, ["data", "check", str(copy)])
    assert result.exit_code == 1
    assert "2 problem(s) in 4 cases" in result.output
    assert (
        "(imagesTr/synth_000_0000.nii.gz): image contains 1 NaN or infinite voxels" in result.output
    )
    assert "labelsTr/synth_001.nii.gz" in result.output and "255" in result.output
