from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.data.dataset import open_dataset
from dentpy.data.split import k_folds
from dentpy.data.synth import write_dataset
from dentpy.errors import InputDataError

runner = CliRunner()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("split") / "d", cases=10, profile="tiny")


def test_split_is_written_into_the_dataset_and_used_by_its_reader(
    synthetic: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "Dataset001_SynthCBCT"
    shutil.copytree(synthetic, copy)
    result = runner.invoke(app, ["data", "split", str(copy), "--folds", "3"])
    assert result.exit_code == 0, result.output
    assert "no patient is in two splits" in result.output
    written = json.loads((copy / "splits.json").read_text())
    assert sum(len(v) for v in written.values()) == 10
    assert all(name.startswith("synth_") for v in written.values() for name in v)
    folds = json.loads((copy / "folds.json").read_text())
    assert len(folds["folds"]) == 3
    assert folds["test"] == written["test"]
    dataset = open_dataset(copy)
    assert dataset.predefined_splits is not None
    assert {k: len(v) for k, v in dataset.predefined_splits.items()} == {
        k: len(v) for k, v in written.items()
    }
    again = runner.invoke(app, ["data", "split", str(copy)])
    assert again.exit_code == 0
    assert "checked the dataset's splits.json" in again.output


def test_leaky_split_of_the_user_is_refused(synthetic: Path, tmp_path: Path) -> None:
    copy = tmp_path / "Dataset001_SynthCBCT"
    shutil.copytree(synthetic, copy)
    (copy / "patients.csv").write_text(
        "case,patient\n" + "".join(f"synth_{i:03d},p{i // 2}\n" for i in range(10))
    )
    (copy / "splits.json").write_text(
        json.dumps({"train": ["synth_000", "synth_002"], "val": ["synth_001"], "test": []})
    )
    result = runner.invoke(app, ["data", "split", str(copy)])
    assert result.exit_code != 0
    assert "appears in both 'train' and 'val'" in str(result.exception)


def test_k_folds_validate_every_patient_once() -> None:
    cases = {f"c{i}": f"p{i // 2}" for i in range(12)}
    folds = k_folds(cases, 3, seed=0)
    validated = [c for fold in folds for c in fold["val"]]
    assert sorted(validated) == sorted(cases)
    for fold in folds:
        patients_train = {cases[c] for c in fold["train"]}
        assert not patients_train & {cases[c] for c in fold["val"]}
    with pytest.raises(InputDataError):
        k_folds(cases, 7, seed=0)
