"""The sliding window of validation and inference (dentpy.inference_window)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dentpy.errors import SpecError
from dentpy.inference import network_probabilities
from dentpy.inference_window import (
    FORWARD_FIXED_BYTES,
    choose_window,
    forward_bytes_per_voxel,
    window_for,
)
from dentpy.models import build_model
from dentpy.spec import Spec

SHAPE = (144, 120, 80)
PATCH = (64, 64, 64)
STEP = 8
PER_VOXEL = 100.0
PLENTY = 10 * 2**30


def test_patch_setting_keeps_the_patch_tiling() -> None:
    window = choose_window("patch", SHAPE, PATCH, STEP, PER_VOXEL, PLENTY)

    assert window.roi == PATCH and window.overlap == (0.5, 0.5, 0.5)


def test_auto_predicts_the_whole_volume_when_it_fits() -> None:
    window = choose_window("auto", (141, 120, 77), PATCH, STEP, PER_VOXEL, PLENTY)

    assert window.roi == (144, 120, 80)  # rounded up to the network's step; MONAI pads
    assert window.overlap == (0.0, 0.0, 0.0) and "whole volume" in window.rule


def test_auto_never_goes_below_the_patch_on_small_volumes() -> None:
    window = choose_window("auto", (40, 100, 70), PATCH, STEP, PER_VOXEL, PLENTY)

    assert window.roi == (64, 104, 72)


def test_auto_shrinks_the_largest_axes_to_fit_the_memory_share() -> None:
    budget = FORWARD_FIXED_BYTES + int(PER_VOXEL * 96 * 96 * 80)

    window = choose_window("auto", SHAPE, PATCH, STEP, PER_VOXEL, budget)

    assert FORWARD_FIXED_BYTES + PER_VOXEL * np.prod(window.roi) <= budget
    assert all(r >= p for r, p in zip(window.roi, PATCH, strict=True))
    assert window.roi[2] == 80 and window.overlap[2] == 0.0  # the short axis stays whole
    # Partial axes overlap by half a patch: 32 voxels of the window.
    for axis in (0, 1):
        if window.roi[axis] < SHAPE[axis]:
            assert window.overlap[axis] == pytest.approx(32 / window.roi[axis])
    assert "largest window" in window.rule


def test_auto_falls_back_to_the_patch_when_nothing_larger_fits() -> None:
    window = choose_window("auto", SHAPE, PATCH, STEP, PER_VOXEL, FORWARD_FIXED_BYTES)

    assert window.roi == PATCH and window.overlap == (0.5, 0.5, 0.5)
    assert "only the training patch" in window.rule


def test_a_given_window_must_pass_through_the_network() -> None:
    with pytest.raises(SpecError, match="multiple of 8") as caught:
        choose_window((100, 96, 80), SHAPE, PATCH, STEP, PER_VOXEL, PLENTY)
    assert "[96, 96, 80]" in caught.value.fix
    window = choose_window((96, 96, 80), SHAPE, PATCH, STEP, PER_VOXEL, PLENTY)
    assert window.overlap == (pytest.approx(32 / 96), pytest.approx(32 / 96), 0.0)


def small_spec(window: object = "auto") -> Spec:
    return Spec.model_validate(
        {
            "name": "w",
            "input": {"data": "unused"},
            "objective": {"classes": ["pulp"]},
            "model": {"channels": [4, 8, 16]},
            "train": {"patch_size": [16, 16, 16], "sw_window": window},
        }
    )


def test_one_whole_volume_window_equals_one_forward_pass() -> None:
    """No blending artefact: a single Gaussian-weighted window divides its weights out."""
    spec = small_spec()
    torch.manual_seed(0)
    model = build_model(spec.model, in_channels=1, out_channels=2).eval()
    image = np.random.default_rng(0).normal(size=(40, 32, 24)).astype(np.float32)
    device = torch.device("cpu")

    window = window_for(spec, 2, image.shape, device)
    probabilities = network_probabilities(model, image, spec, 2, device)

    assert window.roi == (40, 32, 24)
    with torch.inference_mode():
        direct = torch.softmax(model(torch.from_numpy(image)[None, None])[0], dim=0)
    assert probabilities.shape == (2, 40, 32, 24)
    assert torch.allclose(probabilities, direct, atol=1e-5)


def test_the_memory_model_covers_the_network_width() -> None:
    narrow, wide = small_spec(), small_spec()
    wide.model.channels = [32, 64, 128]
    # Wider first layers hold more bytes per voxel: the estimate must grow with them.
    assert forward_bytes_per_voxel(wide, 2) > 4 * forward_bytes_per_voxel(narrow, 2)
