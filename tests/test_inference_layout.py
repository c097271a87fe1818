"""Inference's memory layout follows the device's measured winner, and never changes what
is predicted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dentpy.engine import device as device_module
from dentpy.engine.device import cpu_flags, inference_memory_format_3d
from dentpy.inference import sliding_window_probabilities

CPU = torch.device("cpu")


def test_layout_follows_the_cpus_vector_extensions(monkeypatch: pytest.MonkeyPatch) -> None:
    # benchmarks/inference_window.py: channels_last_3d 1.07-1.15x on AVX-512, 0.89-1.05x on
    # AVX2; channels-first on CUDA as in training.
    monkeypatch.setattr(device_module, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert inference_memory_format_3d(CPU) == torch.channels_last_3d
    assert inference_memory_format_3d(torch.device("cuda")) == torch.contiguous_format
    monkeypatch.setattr(device_module, "cpu_flags", lambda: frozenset({"avx", "avx2", "fma"}))
    assert inference_memory_format_3d(CPU) == torch.contiguous_format
    monkeypatch.setattr(device_module, "cpu_flags", lambda: frozenset())  # no /proc/cpuinfo
    assert inference_memory_format_3d(CPU) == torch.contiguous_format


def test_cpu_flags_are_whole_words() -> None:
    flags = cpu_flags()
    # "avx512f" must not be found inside "avx512fp16" or similar: the set holds tokens.
    assert all(" " not in flag for flag in flags)
    if flags:  # Linux
        assert "fpu" in flags


def test_runs_predict_in_the_devices_layout_with_the_same_probabilities(
    monkeypatch: pytest.MonkeyPatch, segmentation_runs: tuple[Path, Path]
) -> None:
    from dentpy.data.io import read_image
    from dentpy.engine.run import load_trained
    from dentpy.preprocess import prepare_image

    run = segmentation_runs[0]
    test_images = run.parent.parent / "data" / "Dataset001_SynthCBCT" / "imagesTs"
    image = read_image(sorted(test_images.glob("*.nii.gz"))[0])
    probabilities = {}
    for layout in (torch.contiguous_format, torch.channels_last_3d):
        monkeypatch.setattr(device_module, "inference_memory_format_3d", lambda _, f=layout: f)
        trained = load_trained(run)
        convolutions = [m for m in trained.model.modules() if isinstance(m, torch.nn.Conv3d)]
        assert convolutions
        assert all(c.weight.is_contiguous(memory_format=layout) for c in convolutions)
        network, _ = prepare_image(image, trained.plan)
        spec = trained.spec.train
        probabilities[layout] = sliding_window_probabilities(
            trained.model, network, spec.patch_size, trained.device, spec.sw_batch_size
        )
    first, last = probabilities[torch.contiguous_format], probabilities[torch.channels_last_3d]
    # Only the kernels' summation order differs between the layouts.
    assert torch.allclose(first, last, atol=1e-5)
    assert (first.argmax(0) == last.argmax(0)).float().mean().item() >= 0.9999
