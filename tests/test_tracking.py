"""Experiment tracking: a real tiny run logged to a real MLflow SQLite store and to W&B
offline, read back with the trackers' own readers; no identifier ever reaches them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.errors import SpecError
from dentpy.spec import parse_spec
from dentpy.tracking import sync_run
from dentpy.tracking.base import TrackingError
from dentpy.tracking.content import evaluation_metrics, params_of
from dentpy.tracking.mlflow_tracker import safe_name
from dentpy.tracking.privacy import WITHHELD, redact, secrets_of

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
runner = CliRunner()
# Tests that use the built run train a model (through the CLI), like test_cli_e2e.
slow = pytest.mark.slow
SECRET = "PATIENT_SMITH"
FAST = [
    "train.iterations=4",
    "train.validate_every=2",
    "train.patch_size=[32, 32, 32]",
    "model.channels=[8, 16, 32]",
    "train.sw_batch_size=2",
]


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _identify_patients(dataset: Path) -> None:
    """Give every case file a name that identifies a person, as a careless export would."""
    for file in sorted(dataset.glob("*/*.nii.gz")):
        file.rename(file.with_name(file.name.replace("synth", f"{SECRET}_case")))


@pytest.fixture(scope="module")
def built_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny evaluated pulp run whose dataset folder and files name a patient."""
    root = tmp_path_factory.mktemp("track")
    os.environ["DENTPY_CACHE"] = str(root / "cache")
    studies = root / f"{SECRET}_study"
    invoke("synth", "cbct", "--out", str(studies), "--cases", "6", "--test-cases", "1")
    dataset = studies / f"Dataset001_{SECRET}"
    (studies / "Dataset001_SynthCBCT").rename(dataset)
    _identify_patients(dataset)
    assert any(SECRET in p.name for p in (dataset / "imagesTr").iterdir())
    spec = root / "spec.yaml"
    invoke("init", "--template", "pulp-cbct", "--data", str(dataset), "--out", str(spec))
    invoke("train", str(spec), *FAST, "--runs", str(root / "runs"), "--no-progress")
    run = root / "runs" / "pulp-cbct"
    invoke("evaluate", str(run))
    return run


@pytest.fixture
def run(built_run: Path, tmp_path: Path) -> Path:
    """A private copy of the run (syncs write RUN/tracking.json)."""
    copy = tmp_path / "runs" / built_run.name
    shutil.copytree(built_run, copy)
    return copy


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module (creating one takes seconds); each test logs to
    its own experiment."""
    return f"sqlite:///{(tmp_path_factory.mktemp('store') / 'mlflow.db').as_posix()}"


def _artifacts(client: Any, run_id: str, folder: str | None = None) -> list[str]:
    found: list[str] = []
    for item in client.list_artifacts(run_id, folder):
        found.extend(_artifacts(client, run_id, item.path) if item.is_dir else [item.path])
    return sorted(found)


def _training_rows(run: Path) -> list[dict[str, str]]:
    import csv

    with (run / "training_log.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@slow
def test_mlflow_round_trip(run: Path, uri: str, tmp_path: Path) -> None:
    logged = sync_run(run, ["mlflow"], mlflow_uri=uri, experiment="pulp-tests")
    run_id = logged["mlflow"].run_id
    client = _client(uri)
    record = client.get_run(run_id)
    experiment = client.get_experiment(record.info.experiment_id)
    assert experiment.name == "pulp-tests"
    # Files of a SQLite store live next to it, never in ./mlruns of the working directory.
    store = Path(uri.removeprefix("sqlite:///")).parent
    assert experiment.artifact_location == (store / "mlartifacts" / "pulp-tests").as_uri()

    spec = yaml.safe_load((run / "spec.yaml").read_text())
    plan = json.loads((run / "plan.json").read_text())
    params = record.data.params
    assert params == params_of(spec, plan)
    assert params["optimizer.lr"] == str(spec["optimizer"]["lr"])
    assert params["train.patch_size"] == "[32, 32, 32]"
    assert params["identity.data"] == plan["identity"]["data"]
    assert not any(key.startswith(("input.data", "tracking.")) for key in params)

    rows = _training_rows(run)
    assert [int(r["iteration"]) for r in rows] == [2, 4]  # one row per validation
    for column in ("train_loss", "lr", "val_dice_pulp"):
        history = client.get_metric_history(run_id, column)
        expected = [(int(r["iteration"]), float(r[column])) for r in rows if r[column] != ""]
        assert sorted((m.step, m.value) for m in history) == expected, column
    assert len(client.get_metric_history(run_id, "val_dice_pulp")) == 2  # validated at 2, 4

    summary = json.loads((run / "evaluation" / "test" / "summary.json").read_text())
    dice = client.get_metric_history(run_id, "test/dice/pulp")
    assert [m.value for m in dice] == [pytest.approx(summary["model"][0]["dice_mean"])]
    assert dice[0].step == summary["checkpoint_iteration"]
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert record.data.metrics["train/best_validation_score"] == pytest.approx(
        best["validation"]["score"]
    )

    assert _artifacts(client, run_id) == sorted(
        [
            "evaluation/test/summary.csv",
            "evaluation/test/summary.json",
            "model/best.json",
            f"model/{best['weights']}",
            "run/fingerprint.json",
            "run/plan.json",
            "run/spec.yaml",
            "run/train_summary.json",
            "run/training_log.csv",
        ]
    )
    down = Path(client.download_artifacts(run_id, "", str(tmp_path / "down")))
    assert _sha256(down / "model" / best["weights"]) == best["weights_sha256"]
    assert (down / "run" / "training_log.csv").read_bytes() == (
        run / "training_log.csv"
    ).read_bytes()
    shared = yaml.safe_load((down / "run" / "spec.yaml").read_text())
    assert shared["input"]["data"] == WITHHELD
    assert {k: v for k, v in shared.items() if k != "input"} == {
        k: v for k, v in spec.items() if k != "input"
    }
    assert "dataset" not in json.loads((down / "run" / "fingerprint.json").read_text())


@slow
def test_second_sync_resumes_and_adds_only_new_rows(run: Path, uri: str, tmp_path: Path) -> None:
    first = sync_run(run, ["mlflow"], mlflow_uri=uri, experiment="resume")["mlflow"].run_id
    second = sync_run(run, ["mlflow"], mlflow_uri=uri, experiment="resume")["mlflow"].run_id
    assert second == first
    client = _client(uri)
    assert len(client.search_runs([client.get_run(first).info.experiment_id])) == 1
    assert len(client.get_metric_history(first, "train_loss")) == 2
    assert len(client.get_metric_history(first, "test/dice/pulp")) == 1
    state = json.loads((run / "tracking.json").read_text())
    assert state["mlflow"]["run_id"] == first
    assert state["mlflow"]["last_iteration"] == 4

    # Training resumed for one more iteration: exactly that row is added.
    with (run / "training_log.csv").open("a") as handle:
        handle.write("5,0.5,0.001,1.0,,\n")
    assert sync_run(run, ["mlflow"], mlflow_uri=uri, experiment="resume")["mlflow"].run_id == first
    history = client.get_metric_history(first, "train_loss")
    assert sorted(m.step for m in history) == [2, 4, 5]
    assert [m.value for m in history if m.step == 5] == [0.5]


@slow
def test_a_deleted_tracker_run_is_replaced(run: Path, uri: str, tmp_path: Path) -> None:
    first = sync_run(run, ["mlflow"], mlflow_uri=uri, experiment="deleted")["mlflow"].run_id
    _client(uri).delete_run(first)
    second = sync_run(run, ["mlflow"], mlflow_uri=uri, experiment="deleted")["mlflow"].run_id
    assert second != first
    assert len(_client(uri).get_metric_history(second, "train_loss")) == 2


@slow
def test_default_store_is_sqlite_next_to_the_runs(run: Path) -> None:
    logged = sync_run(run, ["mlflow"])["mlflow"]
    runs = run.parent
    assert logged.location == f"sqlite:///{(runs / 'mlflow.db').resolve().as_posix()}"
    assert (runs / "mlflow.db").is_file()
    assert list((runs / "mlartifacts").rglob("spec.yaml"))
    assert "mlflow ui --backend-store-uri sqlite:///" in logged.view


def _wandb_records(path: Path) -> list[Any]:
    """The records of a .wandb file (LevelDB-style log: 32 KiB blocks, 7-byte headers)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    block, position, pending, records = 32768, 7, b"", []
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if length == 0 and kind == 0:
            position += left
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # FULL or LAST fragment
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@slow
def test_wandb_offline_run_holds_config_curves_and_summary(run: Path, tmp_path: Path) -> None:
    logged = sync_run(run, ["wandb"], wandb_dir=tmp_path / "wb")["wandb"]
    chunks = list((tmp_path / "wb" / "wandb").glob(f"offline-run-*-{logged.run_id}"))
    assert len(chunks) == 1
    records = _wandb_records(chunks[0] / f"run-{logged.run_id}.wandb")
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    steps: dict[int, dict[str, Any]] = {}
    for record in records:
        kind = record.WhichOneof("record_type")
        items = []
        if kind == "run":
            items = [(i.key, i.value_json) for i in record.run.config.update]
        if kind == "config":
            items = [(i.key, i.value_json) for i in record.config.update]
        config.update({k: json.loads(v) for k, v in items})
        if kind == "summary":
            summary.update({u.key: json.loads(u.value_json) for u in record.summary.update})
        if kind == "history":
            row = {
                i.key or "/".join(i.nested_key): json.loads(i.value_json)
                for i in record.history.item
            }
            steps[int(row["_step"])] = row
    spec = yaml.safe_load((run / "spec.yaml").read_text())
    assert config["optimizer.lr"] == str(spec["optimizer"]["lr"])
    assert "input.data" not in config
    rows = _training_rows(run)
    assert sorted(steps) == [int(r["iteration"]) for r in rows]
    assert [steps[int(r["iteration"])]["train_loss"] for r in rows] == [
        pytest.approx(float(r["train_loss"])) for r in rows
    ]
    evaluated = json.loads((run / "evaluation" / "test" / "summary.json").read_text())
    assert summary["test/dice/pulp"] == pytest.approx(evaluated["model"][0]["dice_mean"])
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    saved = chunks[0] / "files" / "model" / best["weights"]
    assert _sha256(saved) == best["weights_sha256"]
    assert not saved.is_symlink()

    # A second sync resumes the same W&B run id and logs no training row again.
    again = sync_run(run, ["wandb"], wandb_dir=tmp_path / "wb")["wandb"]
    assert again.run_id == logged.run_id
    chunks = sorted((tmp_path / "wb" / "wandb").glob(f"offline-run-*-{logged.run_id}"))
    newest = max(chunks, key=lambda c: c.stat().st_mtime_ns)
    assert not [
        r for r in _wandb_records(newest / f"run-{logged.run_id}.wandb") if r.HasField("history")
    ]


def _all_bytes(folder: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


@slow
def test_no_identifier_or_path_reaches_a_tracker(
    run: Path, built_run: Path, uri: str, tmp_path: Path
) -> None:
    report = run / "report"
    report.mkdir()
    spec = yaml.safe_load((run / "spec.yaml").read_text())
    dataset = spec["input"]["data"]
    assert SECRET in dataset
    # A report page that quotes the dataset path must still not leak it.
    (report / "report.html").write_text(f"<p>data: {dataset}</p><p>run at {run}</p>")
    logged = sync_run(
        run, ["mlflow", "wandb"], mlflow_uri=uri, experiment="privacy", wandb_dir=tmp_path / "wb"
    )

    client = _client(uri)
    record = client.get_run(logged["mlflow"].run_id)
    texts = [
        *record.data.params,
        *record.data.params.values(),
        *record.data.metrics,
        *record.data.tags,
        *record.data.tags.values(),
    ]
    down = Path(client.download_artifacts(logged["mlflow"].run_id, "", str(tmp_path / "down")))
    assert (down / "report" / "report.html").is_file()
    blobs = [_all_bytes(down), _all_bytes(tmp_path / "wb"), "\n".join(texts).encode()]
    for forbidden in (SECRET, dataset, str(built_run.parent.parent), str(run.resolve())):
        for blob in blobs:
            assert forbidden.encode() not in blob, forbidden
    assert WITHHELD.encode() in _all_bytes(down / "report")
    # Per-case tables are not uploaded.
    assert not list(down.rglob("per_case.csv"))


def test_secrets_cover_paths_and_names() -> None:
    spec = {"input": {"data": "/studies/PATIENT_X/Dataset001_Jaw"}, "model": {"pretrained": None}}
    secrets = secrets_of(spec, Path("/runs/r"), {"dataset": "Dataset001_Jaw"})
    text = redact("at /studies/PATIENT_X/Dataset001_Jaw, PATIENT_X, Dataset001_Jaw, data", secrets)
    assert text == f"at {WITHHELD}, {WITHHELD}, {WITHHELD}, data"
    assert "studies" in secrets and "data" not in secrets


def test_evaluation_metrics_per_task() -> None:
    classification = {
        "checkpoint_iteration": 7,
        "n_images": 10,
        "model": {"metrics": {"roc_auc": 0.9, "tp": 3}, "ci95": {"roc_auc": {"low": 0.8}}},
        "baselines": {"majority": {"metrics": {"roc_auc": 0.5}, "fitted_on": "4 cases"}},
        "definitions": {"roc_auc": "area"},
    }
    assert evaluation_metrics(classification, "test") == {
        "test/roc_auc": 0.9,
        "test/tp": 3.0,
        "test/ci95/roc_auc/low": 0.8,
        "test/baseline/majority/roc_auc": 0.5,
        "test/n_images": 10.0,
        "test/checkpoint_iteration": 7.0,
    }
    detection = {
        "model": {
            "ap50": 0.25,
            "ar": {"100": 0.5},
            "iou_thresholds": [0.5],
            "per_class": {"36": {"ap50": 0.1, "ap_per_iou": [0.1]}},
        },
        "baselines": {"blob_boxes": {"summary": {"ap50": 0.0}}},
        "at_threshold": {"micro": {"precision": None, "recall": 0.4}},
    }
    assert evaluation_metrics(detection, "val") == {
        "val/ap50": 0.25,
        "val/ar/100": 0.5,
        "val/per_class/36/ap50": 0.1,
        "val/baseline/blob_boxes/ap50": 0.0,
        "val/at_threshold/micro/recall": 0.4,
    }
    segmentation = {"model": [{"class": "pulp", "n_cases": 2, "dice_mean": 0.5, "dice_sd": 0.1}]}
    assert evaluation_metrics(segmentation, "test") == {
        "test/n_cases/pulp": 2.0,
        "test/dice/pulp": 0.5,
        "test/dice_sd/pulp": 0.1,
    }


def test_metric_names_are_made_mlflow_safe() -> None:
    assert safe_name("val_dice_Third Molar (Wisdom Tooth)") == "val_dice_Third Molar _Wisdom Tooth_"
    assert safe_name("/test//dice/") == "test/_/dice"


def test_spec_tracking_section() -> None:
    spec = parse_spec({})
    assert spec.tracking.backends == ["tensorboard"]
    assert spec.tracking.mlflow_uri is None and spec.tracking.wandb_mode == "offline"
    chosen = parse_spec({"tracking": {"backends": ["tensorboard", "mlflow", "wandb"]}})
    assert chosen.tracking.backends == ["tensorboard", "mlflow", "wandb"]
    # Where a run is logged is not what it is: the spec's identity ignores it.
    assert chosen.digest() == spec.digest()
    with pytest.raises(SpecError) as error:
        parse_spec({"tracking": {"backends": ["mlfow"]}})
    assert "tracking.backends" in error.value.what
    assert "did you mean 'mlflow'?" in (error.value.expected or "")
    with pytest.raises(SpecError) as error:
        parse_spec({"tracking": {"experimnt": "x"}})
    assert error.value.fix == "did you mean 'experiment'?"


@slow
def test_no_tracker_configured_costs_nothing(run: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from dentpy.tracking import sync_run; "
        f"print(sync_run(Path({str(run)!r})), 'mlflow' in sys.modules, 'wandb' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["{}", "False", "False"]
    assert not (run / "tracking.json").exists()


@slow
def test_missing_extra_names_the_install(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("mlflow", "mlflow.tracking", "wandb"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(TrackingError) as error:
        sync_run(run, ["mlflow"])
    assert error.value.fix == "`pip install 'dentpy[mlflow]'`"
    assert "MLflow is not installed" in str(error.value)
    with pytest.raises(TrackingError) as error:
        sync_run(run, ["wandb"])
    assert error.value.fix == "`pip install 'dentpy[wandb]'`"


@slow
def test_track_command(
    run: Path, uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["track", str(run), "--to", "mlflow", "--mlflow-uri", uri, "--experiment", "cli"]
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    run_id = json.loads((run / "tracking.json").read_text())["mlflow"]["run_id"]
    assert f"as run {run_id}" in result.output
    assert f"mlflow ui --backend-store-uri {uri}" in result.output
    assert not (tmp_path / "mlruns").exists()

    from dentpy.cli import main

    for args in (["--to", "mlfow"], [], ["--to", "mlflow", "--mlflow-uri", uri, "--x"]):
        monkeypatch.setattr(sys, "argv", ["dentpy", "track", str(run), *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        assert exit_info.value.code == 2, args
    monkeypatch.setattr(sys, "argv", ["dentpy", "track", str(tmp_path), "--to", "mlflow"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
