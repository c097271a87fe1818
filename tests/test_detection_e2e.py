"""End to end through the CLI: synthetic bitewings, the teeth-boxes and caries-boxes
templates, train, evaluate (AP, PR curves, examples), predict (COCO JSON, YOLO text)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.errors import OutputError

pytestmark = pytest.mark.slow
runner = CliRunner()
FAST = [
    "train.iterations=4",
    "train.validate_every=2",
    "train.batch_size=4",
    "model.channels=[8]",
    "preprocess.image_size=[128, 192]",
]


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("detection-e2e")
    os.environ["DENTPY_CACHE"] = str(root / "cache")
    invoke("synth", "xray", "--out", str(root / "data"), "--images", "16")
    spec = root / "teeth.yaml"
    invoke(
        "init",
        "--template",
        "teeth-boxes",
        "--data",
        "data/XraySynth/teeth_coco",
        "--out",
        str(spec),
    )
    invoke("train", str(spec), *FAST, "--runs", str(root / "runs"), "--no-progress")
    return root


def test_tooth_classes_are_fdi_numbers_and_threshold_is_stored(workspace: Path) -> None:
    run = workspace / "runs" / "teeth-boxes"
    plan = json.loads((run / "plan.json").read_text())
    classes = plan["task"]["classes"]
    assert plan["task"]["box_class"] == "tooth" and classes == sorted(classes, key=int)
    assert all(c.isdigit() and int(c) % 10 in range(4, 9) for c in classes)
    threshold = json.loads((run / "detection_threshold.json").read_text())
    assert 0.0 <= threshold["score_threshold"] <= 1.0 and "validation" in threshold["chosen_by"]


def test_evaluate_writes_ap_tables_and_pictures(workspace: Path) -> None:
    run = workspace / "runs" / "teeth-boxes"
    output = invoke("evaluate", str(run))
    assert "AP50" in output and "blob AP50" in output
    out = run / "evaluation" / "test"
    summary = json.loads((out / "summary.json").read_text())
    for key in ("ap", "ap50", "ap75"):
        assert summary["model"][key] is None or 0.0 <= summary["model"][key] <= 1.0
    assert summary["baselines"]["blob_boxes"]["parameters"]["polarity"] in ("bright", "dark")
    assert set(summary["definitions"]) >= {"ap", "ap50"}
    for picture in ("pr_curves.png", "examples.png"):
        assert (out / picture).stat().st_size > 5000


def test_predict_writes_coco_and_yolo_in_image_pixels(workspace: Path) -> None:
    images = sorted((workspace / "data" / "XraySynth" / "images").glob("*.png"))[:2]
    new = workspace / "new"
    new.mkdir()
    for path in images:
        (new / path.name).write_bytes(path.read_bytes())
    out = workspace / "pred"
    invoke(
        "predict", str(workspace / "runs" / "teeth-boxes"), str(new), "--out", str(out), "--overlay"
    )
    coco = json.loads((out / "predictions_coco.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == [p.name for p in images]
    width, height = Image.open(images[0]).size
    for annotation in coco["annotations"]:
        x, y, w, h = annotation["bbox"]
        assert x >= 0 and x + w <= width + 0.01 and y >= 0 and y + h <= height + 0.01
        assert annotation["score"] >= coco["info"]["score_threshold"]
    lines = [
        line.split()
        for path in sorted((out / "yolo").glob("*.txt"))
        for line in path.read_text().splitlines()
    ]
    assert len(lines) == len(coco["annotations"])
    values = np.array([[float(v) for v in line[1:5]] for line in lines]).reshape(-1, 4)
    assert np.all((values >= 0) & (values <= 1.0 + 1e-6))
    assert len(list(out.glob("*_boxes.png"))) == 2
    with pytest.raises(OutputError, match="already exists"):
        invoke("predict", str(workspace / "runs" / "teeth-boxes"), str(new), "--out", str(out))


def test_caries_boxes_template_trains_on_lesion_boxes(workspace: Path) -> None:
    spec = workspace / "caries.yaml"
    invoke(
        "init",
        "--template",
        "caries-boxes",
        "--data",
        "data/XraySynth/detection_coco",
        "--out",
        str(spec),
    )
    invoke("train", str(spec), *FAST, "--runs", str(workspace / "runs"), "--no-progress")
    plan = json.loads((workspace / "runs" / "caries-boxes" / "plan.json").read_text())
    assert set(plan["task"]["classes"]) <= {"mild", "moderate", "severe"}
