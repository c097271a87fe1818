"""The GPU path: train, checkpoint, evaluate and predict on CUDA, and a GPU-trained model
gives the same segmentation on the CPU. Skipped on machines without CUDA (CI); run on a GPU
machine with `pytest tests/test_cuda.py` (see docs/performance.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dentpy.cli import app

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_train_evaluate_predict_on_cuda_and_the_weights_agree_on_cpu(tmp_path: Path) -> None:
    from dentpy.data.dataset import open_dataset
    from dentpy.engine.run import load_trained
    from dentpy.inference import predict_volume

    os.environ["DENTPY_CACHE"] = str(tmp_path / "cache")
    invoke("synth", "cbct", "--out", str(tmp_path / "data"), "--cases", "6", "--test-cases", "1")
    spec = tmp_path / "spec.yaml"
    invoke(
        "init", "--template", "ian-cbct", "--data", "data/Dataset001_SynthCBCT", "--out", str(spec)
    )
    invoke(
        "train",
        str(spec),
        "train.iterations=40",
        "train.validate_every=20",
        "train.patch_size=[48, 48, 48]",
        "--runs",
        str(tmp_path / "runs"),
        "--no-progress",
    )
    run = tmp_path / "runs" / "ian-cbct"
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["device"].startswith("cuda"), summary
    assert summary["peak_memory_mib"]["cuda_allocated"] > 0, summary
    invoke("evaluate", str(run))
    invoke("predict", str(run), str(tmp_path / "data" / "Dataset001_SynthCBCT" / "imagesTs"),
           "--out", str(tmp_path / "pred"))  # fmt: skip
    assert list((tmp_path / "pred").glob("*.nii.gz"))

    trained = load_trained(run)
    assert trained.device.type == "cuda"
    case = open_dataset(tmp_path / "data" / "Dataset001_SynthCBCT").test_records[0]
    image = case.load().image
    patch = trained.spec.train.patch_size
    on_gpu = predict_volume(trained.model, image, trained.plan, patch, trained.device)
    cpu_model = trained.model.to("cpu")
    on_cpu = predict_volume(cpu_model, image, trained.plan, patch, torch.device("cpu"))
    agreement = float(np.mean(np.asarray(on_gpu.array) == np.asarray(on_cpu.array)))
    # fp32 on both (no autocast here): only summation order differs.
    assert agreement > 0.999, agreement
    np.testing.assert_allclose(on_gpu.affine, image.affine)
