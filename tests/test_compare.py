"""`dentpy compare` on small fake evaluated run folders written directly to disk."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.compare.compare import compare_runs
from dentpy.errors import InputDataError

runner = CliRunner()
SEG_FIELDS = [
    "case_id",
    "class",
    "dice",
    "iou",
    "precision",
    "recall",
    "specificity",
    "hd95_mm",
    "volume_pred_mm3",
    "volume_true_mm3",
    "abs_volume_error_mm3",
    "empty_rule",
]


def _write_csv(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def seg_rows(cases: list[str], classes: list[str], dice: list[float]) -> list[dict[str, Any]]:
    rows = []
    for i, case in enumerate(cases):
        for cls in classes:
            d = dice[i]
            rows.append(
                {
                    "case_id": case,
                    "class": cls,
                    "dice": d,
                    "iou": d / (2 - d),
                    "precision": d,
                    "recall": d,
                    "specificity": 0.99,
                    "hd95_mm": 10 * (1 - d),
                    "volume_pred_mm3": 100.0,
                    "volume_true_mm3": 100.0,
                    "abs_volume_error_mm3": 100 * (1 - d),
                    "empty_rule": "none",
                }
            )
    return rows


def make_seg_run(
    root: Path,
    name: str,
    dice: list[float],
    cases: list[str] | None = None,
    classes: tuple[str, ...] = ("pulp",),
    baseline_dice: list[float] | None = None,
) -> Path:
    """A segmentation run folder as `dentpy evaluate` leaves it (test split only)."""
    run = root / name
    cases = cases or [f"case-{i:010d}" for i in range(len(dice))]
    folder = run / "evaluation" / "test"
    _write_csv(folder / "per_case.csv", SEG_FIELDS, seg_rows(cases, list(classes), dice))
    base = baseline_dice if baseline_dice is not None else [0.1] * len(cases)
    _write_csv(folder / "baseline_per_case.csv", SEG_FIELDS, seg_rows(cases, list(classes), base))
    summary = {"run": name, "baselines": {"threshold": {"summary": []}}, "definitions": {}}
    (folder / "summary.json").write_text(json.dumps(summary))
    task = {"task": "segmentation", "class_names": list(classes), "instances": None}
    (run / "plan.json").write_text(json.dumps({"task": task}))
    return run


def make_classification_run(
    root: Path, name: str, p_caries: list[float], truth: list[str], output: str = "binary"
) -> Path:
    run = root / name
    folder = run / "evaluation" / "test"
    rows = []
    for i, (p, true) in enumerate(zip(p_caries, truth, strict=True)):
        rows.append(
            {
                "case_id": f"case-{i:010d}",
                "patient_id": f"case-p{i // 2:09d}",  # two images per patient
                "true": true,
                "predicted": "caries" if p >= 0.5 else "sound",
                "p_caries": p,
                "p_sound": 1 - p,
            }
        )
    fields = ["case_id", "patient_id", "true", "predicted", "p_caries", "p_sound"]
    _write_csv(folder / "per_case.csv", fields, rows)
    summary = {
        "task": "classification",
        "output": output,
        "classes": ["caries", "sound"],
        "positive_class": "caries",
        "model": {"metrics": {"roc_auc": 0.9}, "ci95": {}},
        "baselines": {"majority": {"metrics": {"roc_auc": 0.5}, "ci95": {}}},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    task = {"task": "classification", "classes": ["caries", "sound"], "output": output}
    (run / "plan.json").write_text(json.dumps({"task": task}))
    return run


def make_detection_run(root: Path, name: str, tp: list[int]) -> Path:
    run = root / name
    folder = run / "evaluation" / "test"
    rows = [
        {
            "case_id": f"case-{i:010d}",
            "n_true": 4,
            "n_predicted": t + 1,
            "tp": t,
            "fp": 1,
            "fn": 4 - t,
            "f1": 2 * t / (2 * t + 1 + 4 - t),
        }
        for i, t in enumerate(tp)
    ]
    _write_csv(folder / "per_image.csv", list(rows[0]), rows)
    summary = {
        "classes": ["tooth"],
        "model": {"ap": 0.3, "ap50": 0.5, "ar": {"100": 0.4}},
        "at_threshold": {"micro": {"f1": 0.45}},
        "baselines": {"blob_boxes": {"summary": {"ap": 0.1, "ap50": 0.2, "ar": {"100": 0.3}}}},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    (run / "plan.json").write_text(
        json.dumps({"task": {"task": "detection", "classes": ["tooth"]}})
    )
    return run


def rows_by_metric(result: dict[str, Any], index: int = 0) -> dict[str, dict[str, Any]]:
    return {row["metric"]: row for row in result["comparisons"][index]["rows"]}


DICE_A = [0.50, 0.60, 0.55, 0.70, 0.65, 0.40]


def test_run_against_itself_is_all_ties(tmp_path: Path) -> None:
    run = make_seg_run(tmp_path, "a", DICE_A)
    result = compare_runs([run, run], n_boot=200)
    for row in result["comparisons"][0]["rows"]:
        assert row["mean_diff"] == 0.0
        assert (row["ci_low"], row["ci_high"]) == (0.0, 0.0)
        assert row["p_value"] == 1.0 and row["p_holm"] == 1.0
        assert (row["wins"], row["ties"], row["losses"]) == (0, 6, 0)
        assert row["n"] == 6


def test_better_on_every_case_wins_everywhere_with_exact_p(tmp_path: Path) -> None:
    a = make_seg_run(tmp_path, "a", DICE_A)
    gains = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]  # distinct: no ties, exact test
    b = make_seg_run(tmp_path, "b", [d + g for d, g in zip(DICE_A, gains, strict=True)])
    result = compare_runs([a, b], n_boot=500, seed=1)
    rows = rows_by_metric(result)
    dice = rows["dice"]
    assert (dice["wins"], dice["ties"], dice["losses"]) == (6, 0, 0)
    assert dice["p_value"] == pytest.approx(2 / 64)
    assert dice["mean_diff"] == pytest.approx(np.mean(gains))
    assert 0.01 <= dice["ci_low"] < dice["mean_diff"] < dice["ci_high"] <= 0.06
    # HD95 falls (10 * (1 - dice)): lower is better, so B wins there too.
    hd95 = rows["hd95_mm"]
    assert hd95["mean_diff"] < 0 and hd95["wins"] == 6 and hd95["better"] == "lower"
    # Specificity is identical: all ties, p = 1 with a note.
    assert rows["specificity"]["ties"] == 6 and rows["specificity"]["p_value"] == 1.0
    # Holm: 6 rows with p = 2/64 and 1 row with p = 1 -> 7 * 2/64 for the smallest.
    assert dice["p_holm"] == pytest.approx(min(1.0, 7 * 2 / 64))
    assert result["tie_tolerances"]["dice"] == 1e-6


def test_refuses_different_case_sets(tmp_path: Path) -> None:
    a = make_seg_run(tmp_path, "a", DICE_A)
    cases_b = [f"case-{i:010d}" for i in range(3)] + ["case-x000000001", "case-x000000002"]
    b = make_seg_run(tmp_path, "b", DICE_A[:5], cases=cases_b)
    with pytest.raises(InputDataError) as error:
        compare_runs([a, b])
    message = str(error.value)
    assert "a: 6 cases, b: 5 cases, 3 shared" in message
    assert "case-0000000003" in message and "case-x000000001" in message


def test_refuses_different_tasks_and_classes(tmp_path: Path) -> None:
    a = make_seg_run(tmp_path, "a", DICE_A)
    other = make_seg_run(tmp_path, "b", DICE_A, classes=("canal",))
    with pytest.raises(InputDataError, match="different classes"):
        compare_runs([a, other])
    detection = make_detection_run(tmp_path, "boxes", [1, 2, 3])
    with pytest.raises(InputDataError, match="different tasks"):
        compare_runs([a, detection])


def test_refuses_unevaluated_split(tmp_path: Path) -> None:
    a = make_seg_run(tmp_path, "a", DICE_A)
    with pytest.raises(InputDataError) as error:
        compare_runs([a, a], split="val")
    assert f"dentpy evaluate {a} --split val" in str(error.value)


def test_multiclass_segmentation_rows_per_class(tmp_path: Path) -> None:
    a = make_seg_run(tmp_path, "a", DICE_A, classes=("pulp", "canal"))
    b = make_seg_run(tmp_path, "b", [d + 0.1 for d in DICE_A], classes=("pulp", "canal"))
    rows = compare_runs([a, b], n_boot=100)["comparisons"][0]["rows"]
    assert {(r["metric"], r["class"]) for r in rows if r["metric"] == "dice"} == {
        ("dice", "pulp"),
        ("dice", "canal"),
    }
    assert len(rows) == 14  # 7 metrics x 2 classes, all in one Holm family


def test_classification_compare_has_per_image_and_aggregate_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    truth = ["caries" if i % 3 == 0 else "sound" for i in range(30)]
    good = [
        float(np.clip((0.8 if t == "caries" else 0.2) + rng.normal(0, 0.1), 0.01, 0.99))
        for t in truth
    ]
    a = make_classification_run(tmp_path, "a", [0.5 + (p - 0.5) * 0.2 for p in good], truth)
    b = make_classification_run(tmp_path, "b", good, truth)
    result = compare_runs([a, b], n_boot=300)
    rows = rows_by_metric(result)
    assert set(rows) == {"correct", "p_true", "brier", "roc_auc", "pr_auc", "balanced_accuracy"}
    assert rows["p_true"]["mean_diff"] > 0 and rows["brier"]["mean_diff"] < 0
    assert rows["roc_auc"]["p_value"] is None and rows["roc_auc"]["ci_low"] is not None
    # Brier of a binary prediction: 2 (1 - p_true)^2.
    p_true_b = [p if t == "caries" else 1 - p for p, t in zip(good, truth, strict=True)]
    assert rows["brier"]["mean_b"] == pytest.approx(np.mean([2 * (1 - p) ** 2 for p in p_true_b]))
    same = compare_runs([b, b], n_boot=100)
    for row in same["comparisons"][0]["rows"]:
        assert row["mean_diff"] == 0.0 and row["ci_low"] == row["ci_high"] == 0.0


def test_detection_compare(tmp_path: Path) -> None:
    a = make_detection_run(tmp_path, "a", [1, 1, 2, 2, 0])
    b = make_detection_run(tmp_path, "b", [2, 3, 3, 4, 1])
    rows = rows_by_metric(compare_runs([a, b], n_boot=100))
    assert rows["tp"]["mean_diff"] == pytest.approx(1.4) and rows["tp"]["wins"] == 5
    assert rows["fn"]["wins"] == 5 and rows["fp"]["ties"] == 5
    assert rows["recall"]["mean_b"] == pytest.approx(np.mean([2, 3, 3, 4, 1]) / 4)


def test_cli_writes_outputs_and_refuses_overwrite(tmp_path: Path) -> None:
    a = make_seg_run(tmp_path, "a", DICE_A)
    b = make_seg_run(tmp_path, "b", [d + 0.05 for d in DICE_A])
    out = tmp_path / "cmp"
    args = ["compare", str(a), str(b), "--out", str(out), "--n-boot", "200"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Wilcoxon" in result.output and "dice" in result.output
    for name in ("compare.json", "compare.csv", "compare.md"):
        assert (out / name).is_file()
    saved = json.loads((out / "compare.json").read_text())
    assert saved["n_boot"] == 200 and saved["seed"] == 0 and "holm_p" in saved["definitions"]
    with (out / "compare.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 7
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--force" in again.output
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


def test_cli_mismatch_exits_2(tmp_path: Path) -> None:
    a = make_seg_run(tmp_path, "a", DICE_A)
    b = make_seg_run(tmp_path, "b", DICE_A[:4])
    result = runner.invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "different cases" in result.output
    assert not (tmp_path / "o").exists()


def test_cli_default_out_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = make_seg_run(tmp_path, "a", DICE_A)
    b = make_seg_run(tmp_path, "b", DICE_A)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["compare", str(a), str(b), "--n-boot", "50"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "comparisons" / "a-vs-b" / "compare.md").is_file()


def test_classification_wilcoxon_ranks_patients(tmp_path: Path) -> None:
    # 10 images of 5 patients (two each); B gives every true class more probability.
    truth = ["caries", "sound"] * 5
    p_a = [0.6, 0.4] * 5
    p_b = [0.6 + 0.01 * i if t == "caries" else 0.4 - 0.01 * i for i, t in enumerate(truth)]
    a = make_classification_run(tmp_path, "a", p_a, truth)
    b = make_classification_run(tmp_path, "b", p_b, truth)
    row = rows_by_metric(compare_runs([a, b], n_boot=100))["p_true"]
    assert "over patients" in row["test"]
    # Patient means of the gains: 0.005, 0.025, ... 0.085: 5 positive distinct -> 2/32.
    assert row["p_value"] == pytest.approx(2 / 32)
    assert row["wins"] == 9 and row["ties"] == 1  # image 0 has gain 0


@pytest.mark.slow
def test_cli_on_real_segmentation_runs(
    segmentation_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    """Through the CLI on two tiny trained + evaluated runs (tests/run_fixtures.py)."""
    a, b = segmentation_runs
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", str(a), str(b), "--out", str(out), "--n-boot", "100"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "compare.json").read_text())
    rows = saved["comparisons"][0]["rows"]
    classes = {row["class"] for row in rows}
    assert len(classes) >= 1 and {row["metric"] for row in rows} >= {"dice", "hd95_mm"}
    for row in rows:
        assert 0.0 <= row["p_value"] <= row["p_holm"] <= 1.0
        assert row["wins"] + row["ties"] + row["losses"] == row["n"]
    board = tmp_path / "board"
    result = runner.invoke(app, ["benchmark", str(a), str(b), "--out", str(board)])
    assert result.exit_code == 0, result.output
    entries = (board / "leaderboard.md").read_text()
    assert "threshold (baseline)" in entries and "seg-a" in entries and "seg-b" in entries
