"""End to end on the tiny synthetic profile: synth, init, train, evaluate, predict, volume,
resume — through the real CLI entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dentpy.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()

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


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    os.environ["DENTPY_CACHE"] = str(root / "cache")
    invoke("synth", "cbct", "--out", str(root / "data"), "--cases", "6", "--test-cases", "1")
    invoke(
        "init",
        "--template",
        "ian-cbct",
        "--data",
        "data/Dataset001_SynthCBCT",
        "--out",
        str(root / "spec.yaml"),
    )
    invoke("train", str(root / "spec.yaml"), *FAST, "--runs", str(root / "runs"), "--no-progress")
    return root


def test_train_writes_an_inspectable_run_folder(workspace: Path) -> None:
    run = workspace / "runs" / "ian-cbct"
    for name in ("spec.yaml", "fingerprint.json", "splits.json", "plan.json", "training_log.csv"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").iterdir())
    splits = json.loads((run / "splits.json").read_text())
    assert sum(len(v) for v in splits.values()) == 6
    assert not set(splits["train"]) & set(splits["test"])
    manifest = json.loads((run / "checkpoints" / "last.json").read_text())
    assert manifest["iteration"] == 4
    assert manifest["weights"].endswith(".safetensors")
    peak = json.loads((run / "train_summary.json").read_text())["peak_memory_mib"]
    # A process that imported torch and trained holds well over 100 MiB; no CUDA here.
    assert peak["process_rss"] > 100, peak
    assert peak["cuda_allocated"] is None or torch.cuda.is_available()


def test_evaluate_reports_every_metric_with_definitions(workspace: Path) -> None:
    output = invoke("evaluate", str(workspace / "runs" / "ian-cbct"))
    assert "HD95 = max of the two directed 95th-percentile" in output
    assert "Empty masks" in output
    summary = json.loads(
        (workspace / "runs" / "ian-cbct" / "evaluation" / "test" / "summary.json").read_text()
    )
    classes = [row["class"] for row in summary["model"]]
    assert classes == ["left_ian", "right_ian"]
    for row in summary["model"]:
        for key in ("dice_mean", "hd95_mm_mean", "specificity_mean", "abs_volume_error_mm3_mean"):
            assert np.isfinite(row[key])
    assert summary["baselines"]["threshold"]["windows"]
    assert summary["model_selection"].startswith("best checkpoint chosen on the validation")


def test_predict_keeps_the_input_geometry_and_volume_measures_it(workspace: Path) -> None:
    import nibabel as nib

    scan = next((workspace / "data" / "Dataset001_SynthCBCT" / "imagesTs").glob("*.nii.gz"))
    out = workspace / "pred"
    invoke(
        "predict",
        str(workspace / "runs" / "ian-cbct"),
        str(scan),
        "--out",
        str(out),
        "--keep-largest",
        "left_ian",
        "--overlay",
    )
    written = next(out.glob("*_seg.nii.gz"))
    picture = next(out.glob("*_overlay.png"))
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    source, prediction = nib.load(scan), nib.load(written)
    assert prediction.shape == source.shape
    assert np.allclose(prediction.affine, source.affine)
    rows = json.loads(invoke("volume", str(written), "--json"))
    labels = np.asarray(prediction.dataobj)
    for row in rows:
        assert row["voxels"] == int((labels == row["label"]).sum())
        assert row["volume_mm3"] == pytest.approx(row["voxels"] * 1.0, rel=1e-4)


def test_predict_takes_a_folder_of_scans(workspace: Path) -> None:
    folder = workspace / "data" / "Dataset001_SynthCBCT" / "imagesTs"
    out = workspace / "pred_folder"
    invoke("predict", str(workspace / "runs" / "ian-cbct"), str(folder), "--out", str(out))
    assert len(list(out.glob("*_seg.nii.gz"))) == len(list(folder.glob("*.nii.gz"))) == 1


def test_resume_continues_from_the_last_checkpoint(workspace: Path) -> None:
    run = workspace / "runs" / "ian-cbct"
    invoke("train", str(run), "train.iterations=6", "--resume", "--no-progress")
    manifest = json.loads((run / "checkpoints" / "last.json").read_text())
    assert manifest["iteration"] == 6


def test_training_again_into_an_existing_run_is_refused(workspace: Path) -> None:
    result = runner.invoke(
        app, ["train", str(workspace / "spec.yaml"), *FAST, "--runs", str(workspace / "runs")]
    )
    assert result.exit_code != 0
    assert "already holds a run" in str(result.exception)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dentpy.cli", *args], cwd=cwd, capture_output=True, text=True
    )


def test_cli_errors_are_clear_and_exit_2(workspace: Path) -> None:
    typo = _cli("train", "spec.yaml", "optimizer.lrr=0.1", cwd=workspace)
    assert typo.returncode == 2
    assert "unknown key 'optimizer.lrr'" in typo.stderr
    assert "did you mean 'lr'?" in typo.stderr
    assert "Traceback" not in typo.stderr

    missing = _cli("train", "spec.yaml", "--name", "never-ran", "--resume", cwd=workspace)
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr

    wrong_class = _cli(
        "train", "spec.yaml", "objective.classes=[pulpp]", "--name", "x", cwd=workspace
    )
    assert wrong_class.returncode == 2
    assert "did you mean 'pulp'?" in wrong_class.stderr


def test_resume_with_a_corrupt_checkpoint_is_refused(workspace: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(workspace / "runs" / "ian-cbct", copy)
    manifest = json.loads((copy / "checkpoints" / "last.json").read_text())
    weights = copy / "checkpoints" / manifest["weights"]
    weights.write_bytes(weights.read_bytes()[:-10])
    result = _cli("train", str(copy), "--resume", "--no-progress", cwd=workspace)
    assert result.returncode == 2
    assert "missing or corrupt" in result.stderr


def test_resume_is_exact(workspace: Path, tmp_path: Path) -> None:
    """6 iterations straight == 3, stop, resume to 6: identical weights (deterministic CPU)."""
    from safetensors.torch import load_file

    from dentpy.spec import load_spec
    from dentpy.train import train

    common = [*FAST, "train.validate_every=3", "constraints.deterministic=true"]
    straight = load_spec(workspace / "spec.yaml", [*common, "train.iterations=6"])
    train(straight, run_dir=tmp_path / "a", show_progress=False)
    half = load_spec(workspace / "spec.yaml", [*common, "train.iterations=3"])
    train(half, run_dir=tmp_path / "b", show_progress=False)
    train(straight, run_dir=tmp_path / "b", resume=True, show_progress=False)

    def weights(run: Path) -> dict:
        manifest = json.loads((run / "checkpoints" / "last.json").read_text())
        assert manifest["iteration"] == 6
        return load_file(str(run / "checkpoints" / manifest["weights"]))

    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] == b[key]).all(), key


def test_bad_data_is_refused_before_anything_is_written(workspace: Path, tmp_path: Path) -> None:
    import shutil

    import nibabel as nib

    data = tmp_path / "Dataset001_SynthCBCT"
    shutil.copytree(workspace / "data" / "Dataset001_SynthCBCT", data)
    image_path = sorted((data / "imagesTr").glob("*.nii.gz"))[2]
    image = nib.load(image_path)
    array = np.asarray(image.dataobj).astype(np.float32)
    array[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(array, image.affine), image_path)
    result = _cli(
        "train", "spec.yaml", f"input.data={data}", "--runs", str(tmp_path / "runs"), cwd=workspace
    )
    assert result.returncode == 2
    assert f"(imagesTr/{image_path.name}): image contains 1 NaN" in result.stderr
    assert "fix:" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_kill_9_mid_training_leaves_a_resumable_checkpoint(workspace: Path, tmp_path: Path) -> None:
    """A real process killed with SIGKILL while training (and possibly mid-checkpoint):
    the last manifest still points at verified files, no temp file is left behind, and
    --resume finishes the run."""
    import signal
    import time

    from dentpy.engine.checkpoint import load_checkpoint

    runs = tmp_path / "runs"
    args = [
        sys.executable, "-m", "dentpy.cli", "train", "spec.yaml", *FAST,
        "train.iterations=400", "train.validate_every=1", "--runs", str(runs),
        "--name", "killed", "--no-progress",
    ]  # fmt: skip
    process = subprocess.Popen(
        args, cwd=workspace, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    manifest = runs / "killed" / "checkpoints" / "last.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if manifest.exists() and json.loads(manifest.read_text() or "{}").get("iteration", 0) >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    checkpoints = runs / "killed" / "checkpoints"
    survived = load_checkpoint(checkpoints, "last")  # hashes verified inside
    assert survived.iteration >= 3
    invoke(
        "train", str(runs / "killed"), "train.iterations=" + str(survived.iteration + 2),
        "--resume", "--no-progress",
    )  # fmt: skip
    assert load_checkpoint(checkpoints, "last").iteration == survived.iteration + 2
    assert not list(checkpoints.glob(".*.tmp"))  # leftovers of a killed write are gone
    assert sorted(p.suffix for p in checkpoints.glob("ckpt-*")) in (
        [".pt", ".safetensors"],
        [".pt", ".pt", ".safetensors", ".safetensors"],  # last and best differ
    )
