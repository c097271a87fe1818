from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.data.dataset import open_dataset
from dentpy.data.io import write_volume
from dentpy.data.synth import write_dataset
from dentpy.data.volume import IntensityImage, LabelMap

runner = CliRunner()


def test_pulpy_to_nnunet_keeps_voxels_geometry_and_labels(tmp_path: Path) -> None:
    source = write_dataset(tmp_path / "pulpy", cases=3, layout="pulpy")
    result = runner.invoke(app, ["data", "convert", str(source), str(tmp_path / "Dataset002_X")])
    assert result.exit_code == 0, result.output
    before, after = open_dataset(source), open_dataset(tmp_path / "Dataset002_X")
    assert after.layout == "nnunet" and after.labels == before.labels
    for a, b in zip(before.records, after.records, strict=True):
        case_a, case_b = before.load(a), after.load(b)
        assert a.case_id == b.case_id  # same case names -> same pseudonyms
        assert np.array_equal(case_a.image.array, case_b.image.array)
        assert np.allclose(case_a.image.affine, case_b.image.affine, atol=1e-5)
        assert np.array_equal(case_a.label.array, case_b.label.array)  # type: ignore[union-attr]
    again = runner.invoke(app, ["data", "convert", str(source), str(tmp_path / "Dataset002_X")])
    assert again.exit_code != 0
    assert "already exists" in str(again.exception)


def _mask_dataset(root: Path) -> None:
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    for name in ("P1", "P2"):
        image = np.random.default_rng(0).normal(size=(8, 8, 8)).astype(np.float32)
        mask = np.zeros((8, 8, 8), np.uint8)
        mask[2:5, 2:5, 2:5] = 255
        write_volume(IntensityImage(image, affine), root / name / "data.nii.gz")
        write_volume(LabelMap(mask, affine), root / name / "label.nii.gz")
    (root / "labels.json").write_text('{"background": 0, "pulp": 1}')


def test_0_255_masks_need_an_explicit_label_map(tmp_path: Path) -> None:
    _mask_dataset(tmp_path / "masks")
    refused = runner.invoke(app, ["data", "convert", str(tmp_path / "masks"), str(tmp_path / "a")])
    assert refused.exit_code != 0
    assert "255" in str(refused.exception)
    assert not (tmp_path / "a").exists()
    done = runner.invoke(
        app,
        ["data", "convert", str(tmp_path / "masks"), str(tmp_path / "b"), "--label-map", "255=1"],
    )
    assert done.exit_code == 0, done.output
    label = np.asarray(nib.load(next((tmp_path / "b" / "labelsTr").glob("*.nii.gz"))).dataobj)
    assert set(np.unique(label)) == {0, 1}
    assert int((label == 1).sum()) == 27


@pytest.mark.parametrize("entry", ["255", "bone=1"])
def test_bad_label_map_entries_are_explained(tmp_path: Path, entry: str) -> None:
    _mask_dataset(tmp_path / "masks")
    result = runner.invoke(
        app, ["data", "convert", str(tmp_path / "masks"), str(tmp_path / "c"), "--label-map", entry]
    )
    assert result.exit_code != 0
    assert "label map" in str(result.exception)
