"""`dentpy benchmark`: leaderboard of runs and their baselines on fake evaluated runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

# The fake-run builders live with the compare tests (tests/ is on sys.path under pytest).
from test_compare import (  # type: ignore[import-not-found]
    DICE_A,
    make_classification_run,
    make_detection_run,
    make_seg_run,
)
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.compare.leaderboard import build_leaderboard
from dentpy.errors import InputDataError

runner = CliRunner()


def test_segmentation_board_sorted_with_shared_baseline_once(tmp_path: Path) -> None:
    a = make_seg_run(tmp_path, "a", DICE_A)
    b = make_seg_run(tmp_path, "b", [d + 0.1 for d in DICE_A])
    board = build_leaderboard([a, b])
    names = [e.name for e in board.entries]
    assert names == ["b", "a", "threshold (baseline)"]
    baseline = board.entries[2]
    assert baseline.kind == "baseline" and baseline.runs == ["a", "b"]
    assert board.primary == "dice[macro]"
    top = board.entries[0]
    assert top.values["dice[macro]"] == pytest.approx(np.mean(DICE_A) + 0.1)
    low, high = top.cis["dice[macro]"]  # type: ignore[misc]
    assert low < top.values["dice[macro]"] < high  # type: ignore[operator]
    assert top.values["hd95_mm[pulp]"] == pytest.approx(10 * (1 - np.mean(DICE_A) - 0.1))
    assert "sorted by dice[macro]" in board.notes[0]


def test_different_baselines_are_kept_apart(tmp_path: Path) -> None:
    a = make_seg_run(tmp_path, "a", DICE_A, baseline_dice=[0.1] * 6)
    b = make_seg_run(tmp_path, "b", DICE_A, baseline_dice=[0.2] * 6)
    names = [e.name for e in build_leaderboard([a, b]).entries]
    assert "threshold (baseline of b)" in names and "threshold (baseline of a)" in names
    assert names.index("threshold (baseline of b)") < names.index("threshold (baseline of a)")


def test_macro_is_mean_over_classes(tmp_path: Path) -> None:
    a = make_seg_run(tmp_path, "a", DICE_A, classes=("pulp", "canal"))
    entry = build_leaderboard([a]).entries[0]
    assert entry.values["dice[macro]"] == pytest.approx(
        (entry.values["dice[pulp]"] + entry.values["dice[canal]"]) / 2  # type: ignore[operator]
    )


def test_classification_and_detection_boards(tmp_path: Path) -> None:
    truth = ["caries", "sound"] * 5
    run = make_classification_run(tmp_path, "clf", [0.7, 0.3] * 5, truth)
    board = build_leaderboard([run])
    assert board.primary == "roc_auc"
    assert [(e.name, e.values["roc_auc"]) for e in board.entries] == [
        ("clf", 0.9),
        ("majority (baseline)", 0.5),
    ]
    boxes = build_leaderboard([make_detection_run(tmp_path, "det", [1, 2])])
    assert boxes.primary == "ap"
    assert [e.name for e in boxes.entries] == ["det", "blob_boxes (baseline)"]
    assert boxes.entries[0].values == {"ap": 0.3, "ap50": 0.5, "ar": 0.4, "f1": 0.45}
    assert boxes.entries[1].values["f1"] is None


def test_refuses_mixed_tasks_and_case_sets(tmp_path: Path) -> None:
    a = make_seg_run(tmp_path, "a", DICE_A)
    with pytest.raises(InputDataError, match="different tasks"):
        build_leaderboard([a, make_detection_run(tmp_path, "det", [1])])
    with pytest.raises(InputDataError, match="different cases"):
        build_leaderboard([a, make_seg_run(tmp_path, "short", DICE_A[:3])])


def test_cli_writes_self_contained_files(tmp_path: Path) -> None:
    a = make_seg_run(tmp_path, "a", DICE_A)
    b = make_seg_run(tmp_path, "b", [d - 0.1 for d in DICE_A])
    out = tmp_path / "board"
    args = ["benchmark", str(a), str(b), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    page = (out / "leaderboard.html").read_text()
    assert "http" not in page and "<script" not in page and "<link" not in page
    assert "<style>" in page and "threshold (baseline)" in page
    with (out / "leaderboard.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["entry"] for r in rows] == ["a", "b", "threshold (baseline)"]
    assert float(rows[0]["dice[macro]"]) == pytest.approx(np.mean(DICE_A))
    assert "dice[macro]" in (out / "leaderboard.md").read_text()
    assert runner.invoke(app, args).exit_code == 2
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    # Run folders are named by their folder name only, never by a full path.
    assert str(tmp_path) not in page


def test_stored_ci_is_used_when_present(tmp_path: Path) -> None:
    a = make_seg_run(tmp_path, "a", DICE_A)
    summary_path = a / "evaluation" / "test" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["ci95"] = {"pulp": {"dice": {"low": 0.11, "high": 0.99, "n_valid": 5, "n_boot": 5}}}
    summary_path.write_text(json.dumps(summary))
    entry = build_leaderboard([a]).entries[0]
    assert entry.cis["dice[pulp]"] == (0.11, 0.99)


@pytest.mark.slow
def test_benchmark_refuses_binary_with_ordinal(classification_runs: tuple[Path, Path]) -> None:
    binary, ordinal = classification_runs
    result = runner.invoke(app, ["benchmark", str(binary), str(ordinal)])
    assert result.exit_code == 2 and "different" in result.output
    board = build_leaderboard([binary])
    assert board.primary == "roc_auc"
    assert [e.kind for e in board.entries].count("model") == 1
    assert any(e.name == "majority (baseline)" for e in board.entries)
