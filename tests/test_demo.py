"""`dentpy demo` end to end on a tiny budget, twice into the same folder (a user re-running
the demo must not hit "output file already exists" after training)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dentpy.cli import app

pytestmark = pytest.mark.slow


def test_demo_runs_twice_into_one_folder(tmp_path: Path) -> None:
    os.environ["DENTPY_CACHE"] = str(tmp_path / "cache")
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(
            app,
            ["demo", "--out", str(tmp_path / "demo"), "--minutes", "0.05", "--cases", "6"],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "demo" / "demo_summary.json").read_text())
    assert Path(summary["prediction"]).is_file()
    report = Path(summary["report"]).read_text()
    assert report.startswith("<!DOCTYPE html>") and 'id="examples"' in report
    assert len(list((tmp_path / "demo" / "predictions").glob("*/*_seg.nii.gz"))) == 2
