"""Validation as per-item predictions and one score (dentpy.engine.validation): how the items
are divided among ranks, and the segmentation score it computes in one process. Two real
ranks sharing it: tests/test_distributed.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from dentpy.data.cache import PreparedCase
from dentpy.engine.validation import ShardedValidation, shard
from dentpy.spec import Spec
from dentpy.tasks.segmentation import SegmentationTask


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_every_item_goes_to_exactly_one_rank_and_the_load_is_balanced(world_size: int) -> None:
    costs = [float(c) for c in np.random.default_rng(world_size).integers(1, 100, size=23)]

    shares = [shard(costs, r, world_size) for r in range(world_size)]

    assert sorted(i for s in shares for i in s) == list(range(len(costs)))
    loads = [sum(costs[i] for i in s) for s in shares]
    # Longest-first greedy: no rank carries more than one item's cost above another.
    assert max(loads) - min(loads) <= max(costs)
    assert shares == [shard(costs, r, world_size) for r in range(world_size)]  # deterministic


def test_one_large_case_is_not_stacked_on_top_of_others() -> None:
    assert shard([10.0, 1.0, 1.0, 1.0], 0, 2) == [0]
    assert shard([10.0, 1.0, 1.0, 1.0], 1, 2) == [1, 2, 3]
    assert shard([1.0] * 3, 0, 1) == [0, 1, 2]


def test_one_process_predicts_every_item_in_order() -> None:
    seen: list[int] = []

    def predict(network: Any, indices: Any) -> list[int]:
        seen.extend(indices)
        return [10 * i for i in indices]

    validation = ShardedValidation(4, predict, lambda values: {"score": float(sum(values))})

    assert validation(torch.nn.Identity()) == {"score": 60.0}
    assert seen == [0, 1, 2, 3]


class _Everywhere(torch.nn.Module):
    """Logits that make every voxel class 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 3, *x.shape[2:])
        logits[:, 1] = 10.0
        return logits


def test_segmentation_scores_are_the_mean_per_class_dice_over_cases() -> None:
    spec = Spec.model_validate(
        {
            "name": "v",
            "input": {"data": "unused"},
            "objective": {"classes": ["pulp", "canal"]},
            "train": {"patch_size": [8, 8, 8], "sw_window": "patch"},
        }
    )
    task = SegmentationTask(("pulp", "canal"), ((1,), (2,)))
    shape = (8, 8, 8)  # 512 voxels
    first = np.zeros(shape, dtype=np.uint8)
    first[:4] = 1  # 256 voxels of class 1, no class 2
    second = np.zeros(shape, dtype=np.uint8)
    second[:2] = 2  # 128 voxels of class 2, no class 1
    cases = [
        PreparedCase(name, np.zeros(shape, dtype=np.float32), label, ())
        for name, label in (("a", first), ("b", second))
    ]

    scores = task.validation(cases, spec, torch.device("cpu"), None)(_Everywhere())

    # Class 1 predicted everywhere: case a 2*256/(512+256), case b 0 (512 false positives).
    assert scores["dice_pulp"] == pytest.approx((2 * 256 / 768 + 0.0) / 2)
    # Class 2 never predicted: case a absent from both (counts 1), case b missed (0).
    assert scores["dice_canal"] == pytest.approx((1.0 + 0.0) / 2)
    assert scores["score"] == pytest.approx((scores["dice_pulp"] + scores["dice_canal"]) / 2)
