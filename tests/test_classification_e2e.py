"""Classification end to end through the CLI on tiny generated datasets: init, train,
evaluate (metrics with CIs, threshold chosen on validation, baselines, pictures), predict
(CSV, Grad-CAM), resume; and the bad inputs of the classification issue."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dentpy.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()
FAST = [
    "model.name=tiny_cnn",
    "train.iterations=60",
    "train.validate_every=30",
    "train.batch_size=16",
    "preprocess.image_size=[32, 32]",
    "evaluation.bootstrap=50",
]


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _crop(rng: np.random.Generator, grade: int) -> np.ndarray:
    """A 16-bit 'tooth crop': bright crown, a dark wedge whose depth grows with the grade."""
    image = rng.normal(2400, 250, (40, 36)).clip(0, 4095)
    image[:8] = rng.normal(900, 150, (8, 36))  # background above the crown
    if grade:
        depth = 6 + 8 * grade
        for row in range(8, 8 + depth):
            half = max(1, (8 + depth - row) // 3)
            image[row, 2 : 2 + half] -= 900
    return image.clip(0, 4095).astype(np.uint16)


def _severity_csv(root: Path, n_patients: int = 24, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "crops").mkdir(parents=True)
    names = ["sound", "mild", "moderate", "severe"]
    rows = []
    for patient in range(n_patients):
        for tooth in range(4):
            grade = int(rng.choice(4, p=[0.55, 0.2, 0.15, 0.1]))
            name = f"crops/p{patient:02d}_t{tooth}.png"
            Image.fromarray(_crop(rng, grade)).save(root / name)
            rows.append([name, names[grade], f"patient{patient:02d}"])
    with (root / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "patient"])
        writer.writerows(rows)
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    return root


def _binary_folder(root: Path, n: int = 80, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "caries" if i % 3 == 0 else "sound"
        path = root / label / f"img{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_crop(rng, 2 if label == "caries" else 0)).save(path)
        rows.append([f"{label}/img{i:03d}.png", f"patient{i // 2:02d}"])
    with (root / "patients.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "patient"])
        writer.writerows(rows)
    return root


def test_binary_caries_train_evaluate_predict_explain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _binary_folder(tmp_path / "caries_crops")
    spec = tmp_path / "spec.yaml"
    invoke("init", "--template", "caries-binary", "--data", "caries_crops", "--out", str(spec))
    # val and test of different sizes, so the threshold check below can tell them apart.
    invoke(
        "train",
        str(spec),
        *FAST,
        "evaluation.val_fraction=0.3",
        "--runs",
        str(tmp_path / "runs"),
        "--no-progress",
    )
    run = tmp_path / "runs" / "caries-binary"
    plan = json.loads((run / "plan.json").read_text())
    assert plan["task"]["task"] == "classification"
    assert plan["task"]["positive_class"] == "caries"
    import dentpy.metrics.classification as metrics_module

    seen: list[int] = []
    choose = metrics_module.choose_threshold

    def recording(y_true: np.ndarray, *args: object, **kwargs: object) -> object:
        seen.append(len(y_true))
        return choose(y_true, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(metrics_module, "choose_threshold", recording)
    output = invoke("evaluate", str(run))
    splits = json.loads((run / "splits.json").read_text())
    # One threshold for the model and one for the logistic baseline (the majority baseline
    # needs none), each from validation images only.
    assert seen == [len(splits["val"])] * 2 and len(splits["val"]) != len(splits["test"])
    assert "roc_auc" in output and "majority" in output
    summary = json.loads((run / "evaluation" / "test" / "summary.json").read_text())
    model = summary["model"]
    assert 0.0 <= model["metrics"]["roc_auc"] <= 1.0
    assert model["ci95"]["roc_auc"]["n_boot"] == 50
    assert "validation" in summary["threshold_policy"]
    majority = summary["baselines"]["majority"]["metrics"]
    assert majority["roc_auc"] == pytest.approx(0.5)
    assert (majority["sensitivity"], majority["specificity"]) == (0.0, 1.0)  # always "sound"
    for picture in ("roc.png", "pr.png", "confusion.png"):
        assert (run / "evaluation" / "test" / picture).stat().st_size > 1000
    assert not set(splits["test"]) & (set(splits["train"]) | set(splits["val"]))

    out = tmp_path / "pred"
    invoke("predict", str(run), str(data / "caries"), "--out", str(out), "--explain")
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == len(list((data / "caries").glob("*.png")))
    assert set(rows[0]) == {"image", "predicted", "p_caries", "p_sound"}
    total = float(rows[0]["p_caries"]) + float(rows[0]["p_sound"])
    assert total == pytest.approx(1.0, abs=1e-5)
    assert len(list(out.glob("*_cam.png"))) == len(rows)
    threshold = json.loads((out / "threshold.json").read_text())
    assert threshold["threshold"] == pytest.approx(model["threshold"])


def test_ordinal_severity_reports_kappa_and_resumes(tmp_path: Path) -> None:
    _severity_csv(tmp_path / "severity")
    spec = tmp_path / "spec.yaml"
    invoke("init", "--template", "caries-severity", "--data", "severity", "--out", str(spec))
    invoke("train", str(spec), *FAST, "--runs", str(tmp_path / "runs"), "--no-progress")
    run = tmp_path / "runs" / "caries-severity"
    invoke(
        "train",
        str(run),
        *FAST[:1],
        "train.iterations=90",
        "--resume",
        "--no-progress",
    )
    manifest = json.loads((run / "checkpoints" / "last.json").read_text())
    assert manifest["iteration"] == 90
    invoke("evaluate", str(run))
    summary = json.loads((run / "evaluation" / "test" / "summary.json").read_text())
    metrics = summary["model"]["metrics"]
    assert -1.0 <= metrics["quadratic_weighted_kappa"] <= 1.0
    assert metrics["mae_grade"] >= 0
    assert summary["classes"] == ["sound", "mild", "moderate", "severe"]


def test_classification_bad_inputs_give_clear_errors(tmp_path: Path) -> None:
    from dentpy.errors import DentpyError

    data = _severity_csv(tmp_path / "severity", n_patients=6)
    spec = tmp_path / "spec.yaml"
    invoke("init", "--template", "caries-severity", "--data", "severity", "--out", str(spec))

    def error(*overrides: str) -> str:
        result = runner.invoke(
            app, ["train", str(spec), *FAST, *overrides, "--runs", str(tmp_path / "runs")]
        )
        assert isinstance(result.exception, DentpyError), result.output
        return str(result.exception)

    with (data / "labels.csv").open("a") as handle:
        handle.write("crops/p00_t0.png,moderate,patient00\n")
    assert "listed twice" in error() or "twice" in error()
    lines = (data / "labels.csv").read_text().splitlines()[:-1]
    lines = [
        ",".join(["crops/p01_t1.png", "caires", "patient01"])
        if line.startswith("crops/p01_t1.png")
        else line
        for line in lines
    ]
    (data / "labels.csv").write_text("\n".join(lines) + "\n")
    text = error()
    assert "caires" in text and "labels.csv line" in text
    lines = [line.replace("caires", "mild") for line in lines]
    (data / "labels.csv").write_text("\n".join(lines) + "\n")
    # A colour photo among grayscale X-rays.
    rgb = np.zeros((40, 36, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(data / "crops" / "p02_t2.png")
    assert "colour (RGB) image where a grayscale X-ray was expected" in error()
    Image.fromarray(_crop(np.random.default_rng(5), 0)).save(data / "crops" / "p02_t2.png")
    # An image listed in the CSV but missing on disk.
    missing = data / "crops" / "p04_t1.png"
    kept = missing.read_bytes()
    missing.unlink()
    text = error()
    assert "p04_t1.png" in text and "labels.csv line" in text
    missing.write_bytes(kept)
    # One patient in two splits of the user's own split column.
    rows = (data / "labels.csv").read_text().splitlines()
    with_split = [rows[0] + ",split"] + [
        row + (",test" if row.startswith("crops/p03_t0") else ",train") for row in rows[1:]
    ]
    (data / "labels.csv").write_text("\n".join(with_split) + "\n")
    assert "two splits" in error() or "in both" in error()
    assert not (tmp_path / "runs").exists()  # nothing written for a bad dataset
