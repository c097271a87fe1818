"""MLflow: a local SQLite store next to the runs by default, or any tracking URI."""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from dentpy.tracking.base import TrackerRun, TrackingError, missing_extra

# MLflow names allow word characters, '.', '-', ' ', '/' (':' too, except on Windows).
_UNSAFE = re.compile(r"[^\w.\- /]")
_BATCH = 1000  # MLflow's limit of metrics per log_batch call
_PARAM_BATCH = 100


def safe_name(name: str) -> str:
    """A metric/param key MLflow accepts: other characters become '_', no empty parts."""
    cleaned = _UNSAFE.sub("_", name)
    return "/".join(part.strip() or "_" for part in cleaned.strip("/").split("/"))


def local_artifact_root(uri: str) -> Path | None:
    """Where a SQLite store's files go: next to the database (MLflow's default would be
    ./mlruns under whatever folder the command runs in). None for servers, which decide."""
    if not uri.startswith("sqlite:///"):
        return None
    # sqlite:////abs/path.db is absolute; sqlite:///rel/path.db is relative to the cwd.
    database = Path(uri.removeprefix("sqlite:///"))
    return database.resolve().parent / "mlartifacts"


def default_uri(runs_dir: Path) -> str:
    # MLflow 3 keeps the plain ./mlruns file store in maintenance mode; SQLite is its
    # recommended local store.
    return f"sqlite:///{(runs_dir / 'mlflow.db').resolve().as_posix()}"


def _import_mlflow() -> Any:
    # Usage telemetry would reach the network; a tracker of medical runs never does that
    # unless the user points the URI at a server.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # Creating a SQLite store logs its schema migrations at INFO: noise in `dentpy train`.
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as error:
        raise missing_extra("MLflow", "mlflow", error) from None
    return MlflowClient


class MlflowTracker:
    backend = "mlflow"

    def __init__(self, uri: str, experiment: str, artifact_root: Path | None) -> None:
        self.uri = uri
        self.experiment = experiment
        # Only for a local store: otherwise the server decides where artifacts live.
        self.artifact_root = artifact_root
        self.client: Any = None
        self.run_id = ""

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return str(found.experiment_id)
        location = None
        if self.artifact_root is not None:
            location = (self.artifact_root / _folder_name(self.experiment)).resolve().as_uri()
        return str(self.client.create_experiment(self.experiment, artifact_location=location))

    def _existing(self, run_id: str | None) -> str | None:
        if not run_id:
            return None
        try:
            run = self.client.get_run(run_id)
        except Exception:  # any lookup failure means "start a new run"
            return None
        return None if run.info.lifecycle_stage == "deleted" else run_id

    def start(self, name: str, resume_id: str | None, tags: dict[str, str]) -> TrackerRun:
        client_class = _import_mlflow()
        try:
            self.client = client_class(tracking_uri=self.uri)
            experiment_id = self._experiment_id()
            existing = self._existing(resume_id)
            if existing is None:
                run = self.client.create_run(experiment_id, run_name=name, tags=tags)
                self.run_id = run.info.run_id
            else:
                self.run_id = existing
                self.client.update_run(self.run_id, status="RUNNING")
                for key, value in tags.items():
                    self.client.set_tag(self.run_id, key, value)
        except TrackingError:
            raise
        except Exception as error:  # MLflow raises many kinds
            raise TrackingError(
                "cannot open the MLflow tracking store",
                expected="a reachable tracking URI (default: a SQLite file next to the runs)",
                found=f"{type(error).__name__}: {str(error)[:300]}",
                fix="check --mlflow-uri / tracking.mlflow_uri, or leave it unset",
            ) from None
        return TrackerRun(
            backend=self.backend,
            run_id=self.run_id,
            location=self.uri,
            view=f"mlflow ui --backend-store-uri {self.uri}",
        )

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        # Params are write-once in MLflow: log only the new ones; a changed value (a resumed
        # run with more iterations) is recorded in the spec.yaml artifact instead.
        logged = self.client.get_run(self.run_id).data.params
        fresh = [
            Param(safe_name(key), value)
            for key, value in params.items()
            if safe_name(key) not in logged
        ]
        for start in range(0, len(fresh), _PARAM_BATCH):
            self.client.log_batch(self.run_id, params=fresh[start : start + _PARAM_BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(safe_name(k), float(v), now, step) for k, v in metrics.items()]
        for start in range(0, len(rows), _BATCH):
            self.client.log_batch(self.run_id, metrics=rows[start : start + _BATCH])

    def log_final(self, metrics: dict[str, float], step: int) -> None:
        self.log_metrics(metrics, step)

    def log_artifact(self, path: Path, folder: str) -> None:
        self.client.log_artifact(self.run_id, str(path), folder or None)

    def finish(self) -> None:
        if self.client is not None and self.run_id:
            self.client.set_terminated(self.run_id, status="FINISHED")


def _folder_name(experiment: str) -> str:
    return re.sub(r"[^\w.-]", "_", experiment) or "experiment"
