"""Mirror test-time augmentation: the flipped scan's prediction comes back with left and
right classes swapped, and the two are averaged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dentpy.errors import SpecError
from dentpy.inference import mirror_swap_for, sliding_window_probabilities
from dentpy.spec import parse_spec
from dentpy.tasks.segmentation import SegmentationTask


class SideBlind(torch.nn.Module):
    """Calls every bright voxel 'left' (class 1) wherever it is: a model that cannot tell
    the sides apart. Class 2 is 'right', class 0 background."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = (x > 0).float()
        return torch.cat([4 * (1 - bright), 4 * bright, torch.zeros_like(x)], dim=1)


def test_mirror_averages_with_the_flipped_prediction_with_sides_swapped() -> None:
    image = -np.ones((16, 12, 8), dtype=np.float32)
    image[2:5, 4:8, 2:6] = 1.0  # one bright structure on one side
    model, device = SideBlind(), torch.device("cpu")
    plain = sliding_window_probabilities(model, image, (8, 8, 8), device)
    tta = sliding_window_probabilities(model, image, (8, 8, 8), device, mirror_swap=[0, 2, 1])
    # Independent reference: predict the flipped scan, flip back, swap left/right, average.
    flipped = sliding_window_probabilities(model, image[::-1].copy(), (8, 8, 8), device)
    reference = 0.5 * (plain + flipped.flip(1)[[0, 2, 1]])
    assert torch.allclose(tta, reference, atol=1e-6)
    # The side-blind model's 'left' evidence is split evenly between the sides.
    inside = tta[:, 3, 6, 4]
    assert inside[1].item() == pytest.approx(inside[2].item(), abs=1e-6)
    assert torch.allclose(tta.sum(0), torch.ones_like(tta[0]), atol=1e-5)


def test_an_equivariant_model_is_unchanged_by_mirroring() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(1, 2, 3, padding=1)
    with torch.no_grad():  # symmetric kernel along the left/right axis
        conv.weight.copy_(0.5 * (conv.weight + conv.weight.flip(2)))
    image = np.random.default_rng(0).normal(size=(12, 10, 8)).astype(np.float32)
    device = torch.device("cpu")
    plain = sliding_window_probabilities(conv, image, (12, 10, 8), device)
    tta = sliding_window_probabilities(conv, image, (12, 10, 8), device, mirror_swap=[0, 1])
    assert not torch.allclose(plain, plain.flip(1))  # the image itself is not symmetric
    assert torch.allclose(tta, plain, atol=1e-5)


def _spec(classes: list[str], mirror: bool) -> tuple[object, SegmentationTask]:
    spec = parse_spec(
        {
            "name": "x",
            "objective": {"task": "segmentation", "classes": classes},
            "input": {"data": "data"},
            "postprocess": {"mirror_tta": mirror},
        }
    )
    ids = [[i + 1] for i in range(len(classes))]
    task = SegmentationTask.from_dict(
        {"task": "segmentation", "class_names": classes, "class_label_ids": ids}
    )
    return spec, task


def test_the_spec_switches_it_on_and_unpaired_sides_are_refused() -> None:
    spec, task = _spec(["pulp", "left_ian", "right_ian"], mirror=True)
    assert mirror_swap_for(spec, task) == [0, 1, 3, 2]  # type: ignore[arg-type]
    spec, task = _spec(["pulp", "left_ian", "right_ian"], mirror=False)
    assert mirror_swap_for(spec, task) is None  # type: ignore[arg-type]
    spec, task = _spec(["left_ian"], mirror=True)
    with pytest.raises(SpecError, match="mirror_tta"):
        mirror_swap_for(spec, task)  # type: ignore[arg-type]
