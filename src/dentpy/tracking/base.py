"""What every tracker offers, so `sync` can log one run folder to any of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dentpy.errors import DentpyError

# The trackers `sync_run` can log to (tensorboard is written by training itself).
SYNCED_BACKENDS = ("mlflow", "wandb")


class TrackingError(DentpyError):
    """A tracker cannot be used (not installed, unreachable store, refused data)."""


@dataclass(frozen=True)
class TrackerRun:
    """Where a run was logged and how to look at it."""

    backend: str
    run_id: str
    location: str
    view: str


class Tracker(Protocol):
    """One tracker run per dentpy run: `start` creates it or resumes `resume_id`."""

    backend: str

    def start(self, name: str, resume_id: str | None, tags: dict[str, str]) -> TrackerRun: ...

    def log_params(self, params: dict[str, str]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_final(self, metrics: dict[str, float], step: int) -> None:
        """Results that describe the finished run (evaluation), not a curve."""

    def log_artifact(self, path: Path, folder: str) -> None:
        """Copy `path` to `folder`/name in the tracker, replacing an earlier copy."""

    def finish(self) -> None: ...


def missing_extra(tracker: str, extra: str, error: ImportError) -> TrackingError:
    return TrackingError(
        f"{tracker} is not installed",
        expected=f"the '{extra}' extra of dentpy",
        found=f"ImportError: {error}",
        fix=f"`pip install 'dentpy[{extra}]'`",
    )
