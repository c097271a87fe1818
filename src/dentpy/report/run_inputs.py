"""Everything the report reads from a run folder, loaded once, with the checks that make
`dentpy report` refuse early (not a run, not evaluated on the split)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dentpy.errors import CheckpointError

# Spec fields that name places on the user's disk: never shown in a report.
PATH_FIELDS = (("input", "data"), ("input", "unlabeled"))
WITHHELD = "(withheld: a local path)"


@dataclass(frozen=True)
class RunInputs:
    root: Path
    split: str
    kind: str  # segmentation | instance | classification | detection
    spec: dict[str, Any]  # the resolved spec as written by train (raw, not redacted)
    summary: dict[str, Any]
    fingerprint: dict[str, Any]
    train_summary: dict[str, Any]
    training_log: list[dict[str, str]]
    splits: dict[str, list[str]]
    plan: dict[str, Any]

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation" / self.split

    def csv_rows(self, name: str) -> list[dict[str, str]]:
        """Rows of RUN/evaluation/SPLIT/name, [] when the file is absent."""
        return read_csv(self.evaluation / name)

    def dataset_locations(self) -> list[str]:
        """The dataset paths the spec names (to keep them out of the report)."""
        found = []
        for section, key in PATH_FIELDS:
            value = (self.spec.get(section) or {}).get(key)
            if isinstance(value, str) and value:
                found.append(value)
                found.append(str(Path(value).expanduser().resolve()))
        return found


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def load_run_inputs(run_dir: Path, split: str) -> RunInputs:
    import yaml

    from dentpy.engine.run import require_run_folder, run_task

    run = require_run_folder(Path(run_dir))
    summary_path = run.evaluation / split / "summary.json"
    if not summary_path.is_file():
        raise CheckpointError(
            f"{run.root.name} has not been evaluated on the '{split}' split",
            expected=f"{summary_path.relative_to(run.root)} written by `dentpy evaluate`",
            found="no evaluation of that split",
            fix=f"run `dentpy evaluate {run_dir} --split {split}` first, then report again",
        )
    spec = yaml.safe_load(run.spec.read_text()) or {}
    task = run_task(run.root) or str(spec.get("objective", {}).get("task", "segmentation"))
    summary = json.loads(summary_path.read_text())
    kind = task
    if task == "segmentation" and "instances" in summary:
        kind = "instance"
    return RunInputs(
        root=run.root,
        split=split,
        kind=kind,
        spec=spec,
        summary=summary,
        fingerprint=_json_or_empty(run.fingerprint),
        train_summary=_json_or_empty(run.root / "train_summary.json"),
        training_log=read_csv(run.metrics_csv),
        splits=_json_or_empty(run.splits),
        plan=_json_or_empty(run.plan),
    )


def _json_or_empty(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else {}


def with_ci(value: Any, ci: Mapping[str, Any] | None) -> tuple[str, ...]:
    """A table cell: the value, and under it its 95% interval when one is known."""
    if ci and ci.get("low") is not None and ci.get("high") is not None:
        return (fmt(value), f"[{fmt(ci['low'])}, {fmt(ci['high'])}]")
    return (fmt(value),)


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: 'undefined' for None/NaN, integers as integers."""
    if value is None:
        return "undefined"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return "undefined"
    return f"{number:.{digits}f}"


def as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def unreadable_note(error: Exception, pictures: str) -> str:
    """A placeholder paragraph when the run's data cannot be read for `pictures`. Only the
    error's type is named: its message may hold a dataset folder or file name."""
    from dentpy.report.html_page import paragraph

    return paragraph(
        f"No {pictures}: the run's dataset could not be read ({type(error).__name__}). "
        "`dentpy evaluate RUN` on this machine shows the full message.",
        "placeholder",
    )
