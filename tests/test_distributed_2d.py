"""Data-parallel training of the 2D tasks: `dentpy train SPEC --nproc-per-node 2` for
classification and detection, on the CPU with gloo, from the synthetic radiographs.

The step's arithmetic (DDP averaging, 2 ranks x b = 1 process x 2b) is tested once for every
task in tests/test_distributed.py; here: each task's run is written once by rank 0, the
ranks draw different images, a resume continues every rank's stream, and the result
evaluates like a one-process run.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_distributed import _dentpy  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow
# A tiny classifier on small crops: a few seconds per run in two processes.
FAST_CLASSIFIER = [
    "model.name=tiny_cnn",
    "train.iterations=4",
    "train.validate_every=2",
    "train.batch_size=4",
    "preprocess.image_size=[32, 32]",
]


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def xray_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp2d")
    _ok(_dentpy(root, "synth", "xray", "--out", "data", "--images", "16"))
    for template, data in (
        ("caries-binary", "data/XraySynth/caries_binary"),
        ("teeth-boxes", "data/XraySynth/teeth_coco"),
    ):
        _ok(
            _dentpy(
                root, "init", "--template", template, "--data", data, "--out", f"{template}.yaml"
            )
        )
    return root


def _check_one_run_folder(run: Path, stdout: str, iterations: list[int], launches: int) -> dict:
    """One report, one log without duplicate rows, world_size 2, one TensorBoard file per
    launch (rank 0's), and checkpoints holding both ranks' (different) sample streams.
    Returns the summary."""
    assert stdout.count(f"run folder: runs/{run.name}") == 1  # rank 0 alone reports
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["iterations"] == iterations[-1]
    rows = (run / "training_log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["iteration", *map(str, iterations)]
    assert len(list((run / "tensorboard").iterdir())) == launches
    import torch

    last = json.loads((run / "checkpoints" / "last.json").read_text())
    state_file = run / "checkpoints" / f"ckpt-{iterations[-1]:08d}.state.pt"
    assert state_file.exists(), last
    state = torch.load(state_file, weights_only=True)
    assert len(state["ranks"]) == 2
    assert state["ranks"][0]["sampler"] == state["sampler"]
    assert state["ranks"][1]["sampler"] != state["sampler"]  # rank 1 drew other images
    return summary


def test_classification_trains_resumes_and_evaluates_in_two_processes(
    xray_workspace: Path,
) -> None:
    root = xray_workspace
    fast = [*FAST_CLASSIFIER, "evaluation.bootstrap=20"]
    spec = "caries-binary.yaml"
    stdout = _ok(
        _dentpy(root, "train", spec, *fast, "--runs", "runs", "--no-progress", "--nproc-per-node=2")
    )
    run = root / "runs" / "caries-binary"
    assert sorted(p.name for p in (root / "runs").iterdir()) == ["caries-binary"]
    _check_one_run_folder(run, stdout, [2, 4], launches=1)

    resumed = _dentpy(
        root,
        "train",
        "runs/caries-binary",
        "train.iterations=6",
        "--no-progress",
        "--resume",
        "--nproc-per-node=2",
    )
    _check_one_run_folder(run, _ok(resumed), [2, 4, 6], launches=2)

    evaluated = _ok(_dentpy(root, "evaluate", "runs/caries-binary"))
    assert "roc_auc" in evaluated
    summary = json.loads((run / "evaluation" / "test" / "summary.json").read_text())
    assert summary["n_images"] > 0


def test_detection_trains_and_chooses_its_threshold_once_in_two_processes(
    xray_workspace: Path,
) -> None:
    root = xray_workspace
    fast = [
        "train.iterations=4",
        "train.validate_every=2",
        "train.batch_size=2",
        "model.channels=[8]",
        "preprocess.image_size=[128, 192]",
    ]
    stdout = _ok(
        _dentpy(
            root,
            "train",
            "teeth-boxes.yaml",
            *fast,
            "--runs",
            "runs",
            "--no-progress",
            "--nproc-per-node=2",
        )
    )
    run = root / "runs" / "teeth-boxes"
    summary = _check_one_run_folder(run, stdout, [2, 4], launches=1)
    threshold = json.loads((run / "detection_threshold.json").read_text())
    assert threshold["score_threshold"] == summary["score_threshold"]
    assert "AP50" in _ok(_dentpy(root, "evaluate", "runs/teeth-boxes"))


def test_classification_pseudo_labels_cover_every_unlabelled_image_once(
    xray_workspace: Path,
) -> None:
    root = xray_workspace
    fast = [
        *FAST_CLASSIFIER,
        "paradigm.kind=semi-supervised",
        "paradigm.labeled_fraction=0.5",
        "paradigm.method=pseudo_label",
        "paradigm.confidence_threshold=0.5",  # 2 classes: keeps every image
    ]
    stdout = _ok(
        _dentpy(
            root,
            "train",
            "caries-binary.yaml",
            *fast,
            "--name",
            "pl2d",
            "--runs",
            "runs",
            "--no-progress",
            "--nproc-per-node=2",
        )
    )
    summary = _check_one_run_folder(root / "runs" / "pl2d", stdout, [2, 4], launches=1)
    (made,) = summary["semi_supervised"]["rounds"]
    n = summary["semi_supervised"]["n_unlabeled"]
    assert made["images"] == made["kept"] == n > 0
    assert sum(made["kept_per_class"].values()) == n
