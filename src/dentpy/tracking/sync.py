"""Log a run folder to MLflow / W&B, once per dentpy run, resumably.

`RUN/tracking.json` remembers, per tracker, the tracker's run id, the last training
iteration logged and a digest of each result already logged. A second sync resumes the same
tracker run, logs only newer training rows and changed results, and re-uploads the files
(replacing them). Nothing here imports a tracker unless a backend is asked for.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import yaml

from dentpy.tracking.base import SYNCED_BACKENDS, Tracker, TrackerRun, TrackingError
from dentpy.tracking.content import (
    best_model,
    curve_rows,
    evaluation_metrics,
    evaluation_splits,
    params_of,
    read_json,
    train_metrics,
)
from dentpy.tracking.privacy import (
    check_clean,
    clean_fingerprint,
    redact,
    scrub_paths,
    secrets_of,
    spec_yaml,
)

STATE_FILE = "tracking.json"
# Run-level files uploaded as they are (after the privacy pass); not the per-case tables.
_RUN_FILES = ("plan.json", "training_log.csv", "train_summary.json", "detection_threshold.json")
_EVALUATION_FILES = ("summary.json", "summary.csv")


def _spec_dict(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "spec.yaml"
    if not path.is_file():
        raise TrackingError(
            f"{run_dir.name}: not a dentpy run folder",
            expected="a folder written by `dentpy train` (with spec.yaml)",
            found="no spec.yaml",
            fix="pass the run folder, e.g. runs/pulp-cbct",
        )
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return data if isinstance(data, dict) else {}


def _settings(spec: dict[str, Any]) -> dict[str, Any]:
    tracking = spec.get("tracking")
    return tracking if isinstance(tracking, dict) else {}


def configured_backends(run_dir: Path) -> list[str]:
    """The trackers the run's spec asks `sync_run` for (tracking.backends minus
    tensorboard). Cheap: reads spec.yaml only, so callers can check before syncing."""
    path = Path(run_dir) / "spec.yaml"
    if not path.is_file():
        return []
    backends = _settings(_spec_dict(Path(run_dir))).get("backends") or []
    return [name for name in backends if name in SYNCED_BACKENDS]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class _Staging:
    """Privacy-checked copies of the files to upload, in a temporary folder."""

    def __init__(self, run_dir: Path, spec: dict[str, Any], secrets: list[str]) -> None:
        self.run_dir = run_dir
        self.spec = spec
        self.secrets = secrets
        self._temp = tempfile.TemporaryDirectory(prefix="dentpy-track-")
        self.root = Path(self._temp.name)
        self.files: list[tuple[Path, str]] = []

    def _text(self, folder: str, name: str, text: str) -> None:
        target = self.root / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(redact(text, self.secrets), encoding="utf-8")
        check_clean(target, self.secrets)
        self.files.append((target, folder))

    def _copy(self, source: Path, folder: str) -> None:
        if source.suffix == ".json":
            data = scrub_paths(json.loads(source.read_text(encoding="utf-8")))
            self._text(folder, source.name, json.dumps(data, indent=2))
        elif source.suffix in (".safetensors",):
            # Weights only: tensor names and numbers (dentpy writes no metadata there).
            self.files.append((source, folder))
        else:
            self._text(folder, source.name, source.read_text(encoding="utf-8", errors="replace"))

    def collect(self) -> list[tuple[Path, str]]:
        run = self.run_dir
        self._text("run", "spec.yaml", spec_yaml(self.spec))
        fingerprint = read_json(run / "fingerprint.json")
        if fingerprint:
            self._text(
                "run", "fingerprint.json", json.dumps(clean_fingerprint(fingerprint), indent=2)
            )
        for name in _RUN_FILES:
            if (run / name).is_file():
                self._copy(run / name, "run")
        for split in evaluation_splits(run):
            for name in _EVALUATION_FILES:
                if (split / name).is_file():
                    self._copy(split / name, f"evaluation/{split.name}")
        report = run / "report"
        for page in sorted(report.glob("*.html")) if report.is_dir() else []:
            self._copy(page, "report")
        model = best_model(run)
        if model is not None:
            manifest, weights = model
            self._copy(manifest, "model")
            self._copy(weights, "model")
        return self.files

    def close(self) -> None:
        self._temp.cleanup()


def _open_tracker(
    backend: str, run_dir: Path, spec: dict[str, Any], options: dict[str, Any]
) -> tuple[Tracker, dict[str, Any]]:
    """The tracker and the identity of its store (a new store means a new tracker run)."""
    settings = _settings(spec)
    runs_dir = run_dir.resolve().parent
    experiment = options.get("experiment") or settings.get("experiment") or spec.get("name")
    experiment = str(experiment or run_dir.name)
    if backend == "mlflow":
        from dentpy.tracking.mlflow_tracker import MlflowTracker, default_uri, local_artifact_root

        uri = str(options.get("mlflow_uri") or settings.get("mlflow_uri") or default_uri(runs_dir))
        mlflow = MlflowTracker(uri, experiment, local_artifact_root(uri))
        return mlflow, {"uri": uri, "experiment": experiment}
    if backend == "wandb":
        from dentpy.tracking.wandb_tracker import WandbTracker

        project = str(options.get("wandb_project") or settings.get("wandb_project") or "dentpy")
        mode = str(options.get("wandb_mode") or settings.get("wandb_mode") or "offline")
        folder = Path(options.get("wandb_dir") or runs_dir).resolve()
        wandb = WandbTracker(folder, project, experiment, mode)
        return wandb, {"dir": str(folder), "project": project, "mode": mode}
    raise TrackingError(
        f"unknown tracker '{backend}'",
        expected=f"one of: {', '.join(SYNCED_BACKENDS)}",
        found=backend,
        fix="use --to mlflow or --to wandb (TensorBoard is written by training itself)",
    )


def _read_state(run_dir: Path) -> dict[str, Any]:
    return read_json(run_dir / STATE_FILE)


def _write_state(run_dir: Path, state: dict[str, Any]) -> None:
    path = run_dir / STATE_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)


def _sync_one(
    tracker: Tracker,
    store: dict[str, Any],
    previous: dict[str, Any],
    run_dir: Path,
    spec: dict[str, Any],
    secrets: list[str],
    files: list[tuple[Path, str]],
) -> tuple[TrackerRun, dict[str, Any]]:
    # The same store: resume its run; another store (a new URI, a new folder): a new run.
    same_store = all(previous.get(key) == value for key, value in store.items())
    memory = previous if same_store else {}
    plan = read_json(run_dir / "plan.json")
    identity = plan.get("identity", {}) if isinstance(plan.get("identity"), dict) else {}
    tags = {
        "dentpy.run": str(spec.get("name") or run_dir.name),
        "dentpy.task": str((spec.get("objective") or {}).get("task", "")),
        "dentpy.output": str((spec.get("objective") or {}).get("output", "")),
        "dentpy.data_identity": str(identity.get("data", "")),
    }
    tags = {key: redact(value, secrets) for key, value in tags.items() if value}
    name = tags["dentpy.run"]
    started = tracker.start(name, memory.get("run_id"), tags)
    if started.run_id != memory.get("run_id"):
        memory = {}  # the old tracker run is gone: log everything again
    logged: dict[str, str] = dict(memory.get("logged", {}))
    try:
        params = params_of(spec, plan)
        tracker.log_params({key: redact(value, secrets) for key, value in params.items()})
        last = int(memory.get("last_iteration", 0))
        for iteration, values in curve_rows(run_dir / "training_log.csv", after=last):
            tracker.log_metrics({redact(k, secrets): v for k, v in values.items()}, iteration)
            last = iteration
        summary_path = run_dir / "train_summary.json"
        if summary_path.is_file() and logged.get("train_summary") != _digest(summary_path):
            summary = read_json(summary_path)
            step = int(summary.get("iterations", last) or last)
            tracker.log_final(train_metrics(summary), step=step)
            logged["train_summary"] = _digest(summary_path)
        for split in evaluation_splits(run_dir):
            path = split / "summary.json"
            key = f"evaluation/{split.name}"
            if logged.get(key) == _digest(path):
                continue
            summary = read_json(path)
            metrics = {
                redact(k, secrets): v for k, v in evaluation_metrics(summary, split.name).items()
            }
            step = int(summary.get("checkpoint_iteration") or last)
            tracker.log_final(metrics, step=step)
            logged[key] = _digest(path)
        for path, folder in files:
            tracker.log_artifact(path, folder)
    finally:
        tracker.finish()
    record = {**store, "run_id": started.run_id, "last_iteration": last, "logged": logged}
    return started, record


def sync_run(
    run_dir: Path,
    backends: list[str] | None = None,
    *,
    mlflow_uri: str | None = None,
    experiment: str | None = None,
    wandb_project: str | None = None,
    wandb_mode: str | None = None,
    wandb_dir: Path | None = None,
) -> dict[str, TrackerRun]:
    """Log `run_dir` to each tracker (default: the spec's tracking.backends minus
    tensorboard) and return where each run is. No tracker configured: returns {} at once.

    Logged: params (the resolved spec without paths, plus the data identity hash), the
    training curves (step = iteration), train_summary.json numbers, each evaluation split's
    results, and files: spec.yaml, plan.json, fingerprint.json (without the dataset name),
    training_log.csv, evaluation summaries, report/*.html and the best checkpoint's weights
    with its manifest. Never logged: paths, dataset or file names, per-case tables."""
    run_dir = Path(run_dir)
    chosen = configured_backends(run_dir) if backends is None else list(dict.fromkeys(backends))
    chosen = [name for name in chosen if name != "tensorboard"]
    if not chosen:
        return {}
    spec = _spec_dict(run_dir)
    options = {
        "mlflow_uri": mlflow_uri,
        "experiment": experiment,
        "wandb_project": wandb_project,
        "wandb_mode": wandb_mode,
        "wandb_dir": wandb_dir,
    }
    opened = [(name, *_open_tracker(name, run_dir, spec, options)) for name in chosen]
    secrets = secrets_of(spec, run_dir, read_json(run_dir / "fingerprint.json"))
    staging = _Staging(run_dir, spec, secrets)
    results: dict[str, TrackerRun] = {}
    try:
        files = staging.collect()
        for name, tracker, store in opened:
            state = _read_state(run_dir)
            started, record = _sync_one(
                tracker, store, state.get(name, {}), run_dir, spec, secrets, files
            )
            state[name] = record
            state["format"] = 1
            _write_state(run_dir, state)
            results[name] = started
    finally:
        staging.close()
    return results


def summary_lines(results: dict[str, TrackerRun], run_name: str) -> list[str]:
    """What to print after a sync: per tracker, the run id, where, and how to view it."""
    lines: list[str] = []
    for name, logged in results.items():
        lines.append(f"{name}: logged {run_name} as run {logged.run_id}")
        lines.append(f"  where: {logged.location}")
        lines.append(f"  view:  {logged.view}")
    return lines
