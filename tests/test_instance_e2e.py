"""End to end through the CLI on the tiny profile: FDI-labelled synthetic data, the
teeth+pulp instance template, train, evaluate (per-tooth table), predict --report, volume."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.errors import OutputError, SpecError

pytestmark = pytest.mark.slow
runner = CliRunner()

FAST = [
    "train.iterations=4",
    "train.validate_every=2",
    "train.patch_size=[32, 32, 32]",
    "model.channels=[8, 16, 32]",
    "train.sw_batch_size=2",
    "preprocess.target_spacing_mm=[1.0, 1.0, 1.0]",
]
RUN = "pulp-instances-cbct"


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("instance-e2e")
    os.environ["DENTPY_CACHE"] = str(root / "cache")
    invoke(
        "synth",
        "cbct",
        "--out",
        str(root / "data"),
        "--cases",
        "6",
        "--test-cases",
        "1",
        "--labels",
        "toothfairy3",
    )
    spec = root / "spec.yaml"
    invoke("init", "--template", RUN, "--data", "data/Dataset001_SynthCBCT", "--out", str(spec))
    invoke("train", str(spec), *FAST, "--runs", str(root / "runs"), "--no-progress")
    return root


def test_run_learns_one_class_per_fdi_number(workspace: Path) -> None:
    plan = json.loads((workspace / "runs" / RUN / "plan.json").read_text())
    ids = [ids[0] for ids in plan["task"]["class_label_ids"]]
    teeth = [*range(31, 39), *range(41, 49)]
    assert plan["task"]["instances"] == "teeth+pulp"
    assert ids == [*teeth, *(100 + t for t in teeth), 3, 4]


def test_evaluate_writes_per_tooth_table_and_instance_summary(workspace: Path) -> None:
    output = invoke("evaluate", str(workspace / "runs" / RUN))
    assert "instances (matched at IoU >= 0.5)" in output
    out = workspace / "runs" / RUN / "evaluation" / "test"
    summary = json.loads((out / "summary.json").read_text())
    for family in ("teeth", "pulp"):
        block = summary["instances"][family]
        assert 0.0 <= block["f1"] <= 1.0 and 0.0 <= block["pq"] <= 1.0
        assert block["n_reference"] > 0  # every reference tooth of the test cases is counted
    assert summary["baselines"] == {}
    with open(out / "per_tooth.csv") as handle:
        rows = list(csv.DictReader(handle))
    reference = [r for r in rows if r["status"] != "extra"]
    assert len(reference) == sum(summary["instances"][f]["n_reference"] for f in ("teeth", "pulp"))
    assert {r["family"] for r in rows} <= {"teeth", "pulp"}
    for row in reference:
        assert float(row["volume_true_mm3"]) > 0
        assert np.isfinite(float(row["volume_error_pct"]))


def test_predict_report_writes_fdi_numbers_and_tooth_table(workspace: Path) -> None:
    scans = workspace / "data" / "Dataset001_SynthCBCT" / "imagesTs"
    out = workspace / "predictions"
    run = str(workspace / "runs" / RUN)
    invoke("predict", run, str(scans), "--out", str(out), "--report", "--overlay")
    (seg,) = out.glob("*_seg.nii.gz")
    values = set(np.unique(np.asarray(nib.load(seg).dataobj)).tolist())
    allowed = {0, 3, 4, *range(31, 39), *range(41, 49), *range(131, 139), *range(141, 149)}
    assert values <= allowed
    stem = seg.name.removesuffix("_seg.nii.gz")
    report = json.loads((out / f"{stem}_teeth.json").read_text())
    assert report["canal_labels"] == [3, 4]
    assert set(report["definitions"]) >= {"tooth_volume_mm3", "apex_to_ian_mm"}
    with open(out / f"{stem}_teeth.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["fdi"]) for r in rows] == sorted(int(r["fdi"]) for r in rows)
    assert (out / f"{stem}_overlay.png").stat().st_size > 1000
    # A second run into the same folder refuses before writing anything.
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(OutputError, match="already exists"):
        invoke("predict", run, str(scans), "--out", str(out), "--report")
    assert sorted(p.name for p in out.iterdir()) == before


def test_report_is_refused_for_a_semantic_run(workspace: Path, tmp_path: Path) -> None:
    spec = workspace / "semantic.yaml"
    invoke(
        "init",
        "--template",
        "teeth-cbct",
        "--data",
        "data/Dataset001_SynthCBCT",
        "--out",
        str(spec),
    )
    # The FDI-labelled dataset has no "tooth"/"pulp" names: learn two teeth semantically.
    invoke(
        "train",
        str(spec),
        *FAST,
        "objective.classes=[Lower Left First Molar, Lower Right First Molar]",
        "--runs",
        str(workspace / "runs"),
        "--no-progress",
    )
    scans = workspace / "data" / "Dataset001_SynthCBCT" / "imagesTs"
    with pytest.raises(SpecError, match="does not number teeth"):
        invoke(
            "predict",
            str(workspace / "runs" / "teeth-cbct"),
            str(scans),
            "--out",
            str(tmp_path),
            "--report",
        )


def test_volume_instances_lists_teeth_of_a_prediction(workspace: Path) -> None:
    (seg,) = (workspace / "predictions").glob("*_seg.nii.gz")
    output = invoke("volume", str(seg), "--instances", "--json")
    teeth = json.loads(output)
    assert teeth and all(str(row["fdi"])[0] in "34" for row in teeth)
