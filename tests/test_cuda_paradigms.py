"""Issue 7's training paths on a CUDA GPU (skipped without one; run by
benchmarks/gpu_paradigms.sh): Mean Teacher and pseudo-label segmentation, masked-volume
pretraining then fine-tuning, and the LR range test, each with deterministic algorithms,
each finishing with finite weights on the GPU."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from dentpy.spec import parse_spec

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def cbct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dentpy.data.synth import write_dataset

    root = tmp_path_factory.mktemp("cuda_paradigms")
    os.environ["DENTPY_CACHE"] = str(root / "cache")
    return write_dataset(root / "data", 6, profile="tiny", seed=0)


def _spec(data: Path, **sections: dict[str, Any]) -> Any:
    base: dict[str, Any] = {
        "name": "cuda-paradigm",
        "objective": {"classes": ["pulp"]},
        "input": {"data": str(data)},
        "train": {"iterations": 6, "patch_size": [32, 32, 32], "validate_every": 3},
        "model": {"channels": [8, 16]},
        "constraints": {"device": "cuda", "deterministic": True},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return parse_spec(base)


def _finite_run(run: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    manifest = json.loads((run / "checkpoints" / "last.json").read_text())
    weights = load_file(str(run / "checkpoints" / manifest["weights"]))
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())
    summary: dict[str, Any] = json.loads((run / "train_summary.json").read_text())
    assert summary["device"].startswith("cuda")
    return summary


@pytest.mark.parametrize("method", ["mean_teacher", "pseudo_label"])
def test_semi_supervised_segmentation_on_cuda(cbct: Path, tmp_path: Path, method: str) -> None:
    from dentpy.train import train

    paradigm = {"kind": "semi-supervised", "method": method, "labeled_fraction": 0.5}
    spec = _spec(cbct, paradigm=paradigm, loss={"name": "0.5*dice + 0.5*focal"})
    summary = _finite_run(train(spec, run_dir=tmp_path / "run", show_progress=False))
    assert summary["semi_supervised"]["method"] == method


def test_pretrain_then_fine_tune_on_cuda(cbct: Path, tmp_path: Path) -> None:
    from dentpy.pretrain.run import pretrain
    from dentpy.train import train

    spec = _spec(cbct, pretrain={"iterations": 4, "batch_size": 2})
    encoder = pretrain(spec, tmp_path / "pre", show_progress=False)
    tuned = _spec(cbct, model={"pretrained": str(encoder)})
    summary = _finite_run(train(tuned, run_dir=tmp_path / "run", show_progress=False))
    assert summary["pretrained"]["tensors_loaded"] > 0


def test_lr_auto_on_cuda(cbct: Path, tmp_path: Path) -> None:
    from dentpy.train import train

    spec = _spec(cbct, optimizer={"lr": "auto", "lr_find_iterations": 20})
    summary = _finite_run(train(spec, run_dir=tmp_path / "run", show_progress=False))
    assert isinstance(summary["lr"], float) and summary["lr"] > 0
