"""Tiny trained and evaluated runs of every task, built once per test session.

Tests of the commands that read run folders (compare, benchmark, report, export, track)
share these instead of each training its own: every run is made through the real CLI on
the synthetic generators, with a few iterations, then `dentpy evaluate`d on its test split.
Tests must not modify these folders; copy one (shutil.copytree) to change it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dentpy.cli import app

SEGMENTATION_FAST = [
    "train.validate_every=2",
    "train.patch_size=[32, 32, 32]",
    "model.channels=[8, 16, 32]",
    "train.sw_batch_size=2",
    "evaluation.bootstrap=200",
]
CLASSIFICATION_FAST = [
    "model.name=tiny_cnn",
    "train.iterations=30",
    "train.validate_every=15",
    "train.batch_size=16",
    "preprocess.image_size=[32, 32]",
    "evaluation.bootstrap=50",
]
DETECTION_FAST = [
    "train.iterations=4",
    "train.validate_every=2",
    "train.batch_size=4",
    "model.channels=[8]",
    "preprocess.image_size=[128, 192]",
]


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"dentpy {' '.join(args)} failed:\n{result.output}")
    return result.output


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fixture-runs")
    os.environ["DENTPY_CACHE"] = str(root / "cache")
    return root


@pytest.fixture(scope="session")
def segmentation_runs(fixture_root: Path) -> tuple[Path, Path]:
    """Two pulp + IAN segmentation runs on the same data and split (4 and 6 iterations)."""
    root = fixture_root / "segmentation"
    invoke("synth", "cbct", "--out", str(root / "data"), "--cases", "8", "--test-cases", "1")
    spec = root / "spec.yaml"
    invoke(
        "init", "--template", "ian-cbct", "--data", "data/Dataset001_SynthCBCT", "--out", str(spec)
    )
    runs = []
    for name, iterations in (("seg-a", 4), ("seg-b", 6)):
        invoke(
            "train",
            str(spec),
            *SEGMENTATION_FAST,
            f"train.iterations={iterations}",
            "--runs",
            str(root / "runs"),
            "--name",
            name,
            "--no-progress",
        )
        invoke("evaluate", str(root / "runs" / name))
        runs.append(root / "runs" / name)
    return runs[0], runs[1]


@pytest.fixture(scope="session")
def instance_run(fixture_root: Path) -> Path:
    """FDI teeth + per-tooth pulp instance run (4 iterations), evaluated."""
    root = fixture_root / "instances"
    invoke(
        "synth", "cbct", "--out", str(root / "data"), "--cases", "6", "--test-cases", "1",
        "--labels", "toothfairy3",
    )  # fmt: skip
    spec = root / "spec.yaml"
    invoke(
        "init", "--template", "pulp-instances-cbct", "--data", "data/Dataset001_SynthCBCT",
        "--out", str(spec),
    )  # fmt: skip
    invoke(
        "train",
        str(spec),
        *SEGMENTATION_FAST,
        "train.iterations=4",
        "preprocess.target_spacing_mm=[1.0, 1.0, 1.0]",
        "--runs",
        str(root / "runs"),
        "--no-progress",
    )
    run = root / "runs" / "pulp-instances-cbct"
    invoke("evaluate", str(run))
    return run


@pytest.fixture(scope="session")
def xray_data(fixture_root: Path) -> Path:
    """The synthetic X-ray datasets (caries crops, severity, boxes): the XraySynth folder."""
    root = fixture_root / "xray"
    invoke("synth", "xray", "--out", str(root), "--images", "24")
    return root / "XraySynth"


@pytest.fixture(scope="session")
def classification_runs(xray_data: Path) -> tuple[Path, Path]:
    """Binary caries and ordinal caries-severity runs (tiny CNN, 30 iterations), evaluated."""
    root = xray_data.parent
    runs = []
    for template, folder in (
        ("caries-binary", "caries_binary"),
        ("caries-severity", "caries_severity"),
    ):
        spec = root / f"{template}.yaml"
        invoke("init", "--template", template, "--data", f"XraySynth/{folder}", "--out", str(spec))
        invoke(
            "train", str(spec), *CLASSIFICATION_FAST, "--runs", str(root / "runs"), "--no-progress"
        )
        invoke("evaluate", str(root / "runs" / template))
        runs.append(root / "runs" / template)
    return runs[0], runs[1]


@pytest.fixture(scope="session")
def detection_run(xray_data: Path) -> Path:
    """FDI tooth boxes on synthetic bitewings (4 iterations), evaluated."""
    root = xray_data.parent
    spec = root / "teeth-boxes.yaml"
    invoke(
        "init", "--template", "teeth-boxes", "--data", "XraySynth/teeth_coco", "--out", str(spec)
    )
    invoke("train", str(spec), *DETECTION_FAST, "--runs", str(root / "runs"), "--no-progress")
    run = root / "runs" / "teeth-boxes"
    invoke("evaluate", str(run))
    return run
