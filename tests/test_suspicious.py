"""The suspicious-label report (`dentpy data check --suspicious RUN`): scoring and ranking
against an oracle model (closed-form values), a trained classification run whose three
swapped labels must rank first, a segmentation run through the run-loading path, and the
detection refusal."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.data.case import pseudonym
from dentpy.errors import SpecError
from dentpy.suspicious import (
    classification_rows,
    rank,
    segmentation_rows,
    suspicious_labels,
)

runner = CliRunner()
CLASSES = ("pulp", "canal")


def _oracle(truth: np.ndarray, n_classes: int = 3, sure: float = 0.96) -> np.ndarray:
    """A model that knows the true label: `sure` on it, the rest spread evenly."""
    rest = (1 - sure) / (n_classes - 1)
    probabilities = np.full((n_classes, *truth.shape), rest)
    for c in range(n_classes):
        probabilities[c][truth == c] = sure
    return probabilities


def _truth() -> np.ndarray:
    label = np.zeros((16, 16, 16), dtype=np.uint8)
    label[2:6, 2:6, 2:6] = 1  # pulp, 64 voxels
    label[10:12, 10:12, 2:14] = 2  # canal, 48 voxels
    return label


def test_segmentation_rows_rank_corrupted_labels_first_with_closed_form_values() -> None:
    truth = _truth()
    erased = truth.copy()
    erased[erased == 1] = 0  # pulp label erased
    no_pulp = erased.copy()  # a scan without pulp ...
    spurious = no_pulp.copy()
    spurious[12:15, 2:5, 2:5] = 1  # ... labelled with a 27-voxel pulp
    doubled = truth.copy()
    doubled[6:10, 2:6, 2:6] = 1  # pulp label twice the true volume, containing it
    cases = {  # case: (what the scan shows, its label)
        "case-a": (truth, truth),
        "case-b": (truth, erased),
        "case-c": (no_pulp, spurious),
        "case-d": (truth, doubled),
        "case-e": (no_pulp, no_pulp),
    }
    rows = []
    for case_id, (shown, label) in cases.items():
        rows += segmentation_rows(case_id, "train", _oracle(shown), label, CLASSES)
    ranked = rank(rows)
    top = [(r["case_id"], r["class"]) for r in ranked[:3]]
    assert set(top[:2]) == {("case-b", "pulp"), ("case-c", "pulp")}
    assert top[2] == ("case-d", "pulp")
    by_key = {(r["case_id"], r["class"]): r for r in ranked}

    # Spurious pulp: the oracle is sure (0.96) it is background, so every labelled voxel is
    # confidently another class; it ranks before the erased pulp (same Dice 0).
    assert top[0] == ("case-c", "pulp")
    row = by_key["case-c", "pulp"]
    assert row["dice"] == 0 and row["label_voxels"] == 27 and row["predicted_voxels"] == 0
    assert row["confidently_other_fraction"] == 1.0
    assert row["mean_ce"] == pytest.approx(-math.log(0.02), abs=1e-3)
    assert row["reason"] == "model finds 0 voxels of pulp where the label has 27"

    row = by_key["case-b", "pulp"]
    assert row["label_voxels"] == 0 and row["predicted_voxels"] == 64
    assert row["mean_ce"] is None
    assert row["reason"] == "label has no pulp; the model finds 64 voxels"

    row = by_key["case-d", "pulp"]
    assert row["dice"] == pytest.approx(2 * 64 / (128 + 64), abs=1e-4)
    assert row["reason"] == "label volume 2.0x the predicted"

    assert by_key["case-e", "pulp"]["reason"] == "no pulp in label or prediction"
    clean = by_key["case-a", "canal"]
    assert clean["dice"] == 1 and clean["disagreement"] == 0
    assert clean["mean_ce"] == pytest.approx(-math.log(0.96), abs=1e-3)
    assert [r["rank"] for r in ranked] == list(range(1, len(rows) + 1))


def test_classification_rows_rank_swapped_labels_lowest_self_confidence() -> None:
    classes = ("sound", "caries")
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 20)
    sure = np.where(truth[:, None] == np.arange(2), 0.9, 0.1)
    given = truth.copy()
    swapped = [3, 11, 17]
    given[swapped] = 1 - given[swapped]
    sure[11] = [0.6, 0.4] if truth[11] == 0 else [0.4, 0.6]  # a less sure model on one
    ids = [f"case-{i:02d}" for i in range(20)]
    ranked = rank(classification_rows(ids, ["train"] * 20, given, sure, classes))
    assert {r["case_id"] for r in ranked[:3]} == {ids[i] for i in swapped}
    assert ranked[0]["label_probability"] == pytest.approx(0.1)
    assert ranked[2]["case_id"] == ids[11] and ranked[2]["label_probability"] == 0.4
    assert ranked[0]["predicted_class"] == classes[truth[int(ranked[0]["case_id"][-2:])]]
    assert ranked[3]["label_probability"] == pytest.approx(0.9)
    assert "model says" in ranked[0]["reason"]


def _crop(rng: np.random.Generator, caries: bool) -> np.ndarray:
    image = rng.normal(2400, 150, (32, 32))
    if caries:
        image[4:28, 4:16] -= 1500  # unmistakable: a large dark lesion
    return image.clip(0, 4095).astype(np.uint16)


@pytest.mark.slow
def test_trained_classification_run_ranks_the_swapped_labels_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DENTPY_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    data = tmp_path / "crops"
    (data / "img").mkdir(parents=True)
    rows, swapped = [], []
    for i in range(48):
        caries = i % 2 == 0
        name = f"img/x{i:02d}.png"
        Image.fromarray(_crop(rng, caries)).save(data / name)
        label = "caries" if caries else "sound"
        if i in (5, 20, 33):  # three labels swapped on purpose
            label = "sound" if caries else "caries"
            swapped.append(pseudonym(name))
        rows.append(f"{name},{label},p{i:02d}")
    (data / "labels.csv").write_text("image,label,patient\n" + "\n".join(rows) + "\n")
    result = runner.invoke(
        app, ["init", "--template", "caries-binary", "--data", str(data), "--out",
              str(tmp_path / "spec.yaml")], catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    train = [
        "train", str(tmp_path / "spec.yaml"), "model.name=tiny_cnn", "train.iterations=40",
        "train.validate_every=40", "train.batch_size=16", "preprocess.image_size=[32, 32]",
        "evaluation.test_fraction=0", "augment.probability=0", "--runs",
        str(tmp_path / "runs"), "--no-progress",
    ]  # fmt: skip
    result = runner.invoke(app, train, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "caries-binary"
    check = ["data", "check", "--suspicious", str(run), "--top", "5"]
    result = runner.invoke(app, check, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "in-sample" in result.output and "x05.png" not in result.output

    with (run / "suspicious_labels.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 48
    assert {r["case_id"] for r in table[:3]} == set(swapped), table[:5]
    assert all(float(r["label_probability"]) < 0.5 for r in table[:3])
    assert float(table[3]["label_probability"]) > 0.5
    assert {r["split"] for r in table} == {"train", "val"}
    summary = json.loads((run / "suspicious_labels.json").read_text())
    assert summary["task"] == "classification" and len(summary["top"]) == 5
    assert summary["median_label_probability"] > 0.5 and "warning" not in result.output
    assert "label_probability" in summary["definitions"]
    assert "in-sample" in summary["in_sample_note"]
    # Pseudonyms only in the run folder; the file names only on request, on the terminal.
    assert "x05" not in (run / "suspicious_labels.csv").read_text()
    result = runner.invoke(app, [*check, "--show-files"], catch_exceptions=False)
    assert result.exit_code == 0 and "img/x" in result.output


@pytest.mark.slow
def test_segmentation_run_scores_every_train_and_val_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real run-loading path (a barely trained model: the structure, not the
    ranking, is checked here; the ranking is checked against the oracle above)."""
    monkeypatch.setenv("DENTPY_CACHE", str(tmp_path / "cache"))

    def invoke(*args: str) -> str:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    invoke("synth", "cbct", "--out", str(tmp_path / "data"), "--cases", "4", "--test-cases", "0")
    data = tmp_path / "data" / "Dataset001_SynthCBCT"
    invoke(
        "init", "--template", "pulp-cbct", "--data", str(data), "--out", str(tmp_path / "s.yaml")
    )
    invoke(
        "train", str(tmp_path / "s.yaml"), "train.iterations=1", "train.validate_every=1",
        "train.patch_size=[32, 32, 32]", "model.channels=[4, 8]", "train.sw_batch_size=8",
        "evaluation.test_fraction=0.25", "--runs", str(tmp_path / "runs"), "--no-progress",
    )  # fmt: skip
    run = tmp_path / "runs" / "pulp-cbct"
    report = suspicious_labels(run, top=3)
    splits = json.loads((run / "splits.json").read_text())
    names = json.loads((run / "plan.json").read_text())["task"]["class_names"]
    scored = {(r["case_id"], r["split"]) for r in report.rows}
    assert scored == {(c, s) for s in ("train", "val") for c in splits[s]}
    assert len(report.rows) == len(scored) * len(names)
    disagreement = [r["disagreement"] for r in report.rows]
    assert disagreement == sorted(disagreement, reverse=True)
    assert all(0 <= r["dice"] <= 1 and r["reason"] for r in report.rows)
    summary = json.loads((run / "suspicious_labels.json").read_text())
    assert summary["task"] == "segmentation" and "network space" in summary["definitions"]["space"]


def test_detection_runs_are_refused_clearly(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.yaml").write_text("objective:\n  task: detection\n  output: boxes\n")
    (run / "plan.json").write_text(json.dumps({"task": {"task": "detection"}}))
    with pytest.raises(SpecError, match="does not support detection runs yet"):
        suspicious_labels(run)
