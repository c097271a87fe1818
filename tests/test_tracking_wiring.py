"""`dentpy evaluate` logs to the trackers the run's spec lists, and a tracker failure
after the work is done only warns."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dentpy.cli import app

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
pytestmark = pytest.mark.slow


def _with_tracking(run: Path, tmp_path: Path, tracking: dict[str, object]) -> Path:
    copy = tmp_path / "runs" / run.name
    shutil.copytree(run, copy)
    spec = yaml.safe_load((copy / "spec.yaml").read_text())
    spec["tracking"] = tracking
    (copy / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return copy


def test_evaluate_syncs_the_run_to_mlflow(
    segmentation_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    run = _with_tracking(segmentation_runs[0], tmp_path, {"backends": ["tensorboard", "mlflow"]})
    result = CliRunner().invoke(app, ["evaluate", str(run)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    state = json.loads((run / "tracking.json").read_text())
    run_id = state["mlflow"]["run_id"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    logged = client.get_run(run_id).data.metrics
    summary = json.loads((run / "evaluation" / "test" / "summary.json").read_text())
    for row in summary["model"]:
        key = next(k for k in logged if k.startswith("test/dice") and k.endswith(row["class"]))
        assert logged[key] == pytest.approx(row["dice_mean"])


def test_a_tracker_failure_after_evaluation_only_warns(
    segmentation_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    # An MLflow URI that cannot be opened: the evaluation is still written, exit code 0.
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store's folder should be")
    run = _with_tracking(
        segmentation_runs[0],
        tmp_path,
        {"backends": ["mlflow"], "mlflow_uri": f"sqlite:///{blocked}/store.db"},
    )
    result = CliRunner().invoke(app, ["evaluate", str(run)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (run / "evaluation" / "test" / "summary.json").is_file()
    assert "tracking skipped" in result.output
    assert f"dentpy track {run}" in result.output
