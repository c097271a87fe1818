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


def _teeth_dataset(root: Path, cases: dict[str, list[int]]) -> Path:
    """An nnU-Net dataset whose label maps hold the given tooth ids (one voxel block each)."""
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True)
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    for name, ids in cases.items():
        image = np.random.default_rng(0).normal(size=(12, 12, 12)).astype(np.float32)
        label = np.zeros((12, 12, 12), dtype=np.uint8)
        for index, tooth in enumerate(ids):
            label.flat[index * 20 : index * 20 + 10] = tooth
        nib.save(nib.Nifti1Image(image, affine), root / "imagesTr" / f"{name}_0000.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / f"{name}.nii.gz")
    labels = {"background": 0, **{f"tooth_{i}": i for i in range(1, 49)}}
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CBCT"},
                "labels": labels,
                "numTraining": len(cases),
                "file_ending": ".nii.gz",
            }
        )
    )
    return root


def test_mixed_universal_and_fdi_numbering_is_a_problem(tmp_path: Path) -> None:
    fdi = [31, 36, 37, 41, 46, 47]
    universal = [18, 19, 20, 29, 30, 31]
    root = _teeth_dataset(tmp_path / "Dataset009_Teeth", {"a": fdi, "b": fdi, "c": universal})
    result = runner.invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "different tooth numbering schemes" in output
    assert "2 case(s) with FDI-only ids" in output and "1 case(s) with Universal-only" in output
    same = _teeth_dataset(tmp_path / "Dataset010_Teeth", {"a": fdi, "b": fdi})
    assert runner.invoke(app, ["data", "check", str(same)]).exit_code == 0


def test_numbering_scheme_needs_scheme_specific_evidence() -> None:
    from dentpy.data.numbering import scheme_of

    assert scheme_of([11, 21, 36, 46]) == "fdi"
    assert scheme_of([1, 8, 19, 30]) == "universal"
    assert scheme_of([11, 12, 21, 22]) is None  # shared by both schemes
    assert scheme_of([19, 36]) is None  # contradictory evidence is not judged
    assert scheme_of([19, 20, 40]) is None  # Universal stops at 32
