"""Grad-CAM of an ordinal (CORAL) head explains the predicted grade through its C-1
threshold outputs, so the highest grade is explainable too."""

from __future__ import annotations

import pytest
import torch

from dentpy.report.cam import cam_target, grad_cam


def _coral_like(n_grades: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, n_grades - 1),  # one output per threshold "grade > k"
    )


def test_every_grade_maps_to_an_existing_output() -> None:
    assert [cam_target(g, cumulative=True) for g in range(4)] == [0, 0, 1, 2]
    assert [cam_target(g, cumulative=False) for g in range(4)] == [0, 1, 2, 3]


def test_highest_grade_gets_a_heat_map() -> None:
    model = _coral_like(4)
    image = torch.randn(1, 1, 16, 16)
    heatmap = grad_cam(model, image, target=cam_target(3, cumulative=True))
    assert heatmap.shape == (16, 16)
    with pytest.raises(IndexError):
        grad_cam(model, image, target=3)  # what `predict --explain` used to ask for
