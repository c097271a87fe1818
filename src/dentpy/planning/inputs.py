"""What a plan is made from: the training cases in network space (after resampling to the
target spacing) and the dataset fingerprint's summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from dentpy.data.cache import PreparedCase

# Fingerprint entries a plan records: statistics only (no dataset name, folders or files).
FINGERPRINT_KEYS = ("n_cases", "spacing_mm", "shape", "intensity", "label_fractions")


@dataclass(frozen=True)
class PlanInputs:
    target_spacing_mm: tuple[float, float, float]
    median_shape: tuple[int, int, int]  # training cases in network space (voxels)
    n_train_cases: int
    dataset_voxels: int  # all training cases together
    largest_case_voxels: int  # training or validation (validation predicts a case whole)
    out_channels: int  # classes + background
    fingerprint: dict[str, Any] = field(default_factory=dict)
    target_spacing_rule: str = "given"

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_spacing_mm": list(self.target_spacing_mm),
            "target_spacing_rule": self.target_spacing_rule,
            "median_shape_network_space": list(self.median_shape),
            "n_train_cases": self.n_train_cases,
            "dataset_voxels": self.dataset_voxels,
            "largest_case_voxels": self.largest_case_voxels,
            "out_channels": self.out_channels,
            "fingerprint": self.fingerprint,
        }


def fingerprint_summary(fingerprint: dict[str, Any] | None) -> dict[str, Any]:
    return {k: fingerprint[k] for k in FINGERPRINT_KEYS if fingerprint and k in fingerprint}


def inputs_from_cases(
    train_cases: Sequence[PreparedCase],
    val_cases: Sequence[PreparedCase],
    target_spacing_mm: Sequence[float],
    out_channels: int,
    fingerprint: dict[str, Any] | None = None,
    spacing_rule: str = "given",
) -> PlanInputs:
    shapes = np.array([case.image.shape[-3:] for case in train_cases], dtype=np.int64)
    sizes = [int(np.prod(case.image.shape)) for case in [*train_cases, *val_cases]]
    median = np.median(shapes, axis=0)
    return PlanInputs(
        target_spacing_mm=tuple(float(s) for s in target_spacing_mm),  # type: ignore[arg-type]
        median_shape=tuple(round(s) for s in median),
        n_train_cases=len(train_cases),
        dataset_voxels=int(shapes.prod(axis=1).sum()),
        largest_case_voxels=max(sizes),
        out_channels=out_channels,
        fingerprint=fingerprint_summary(fingerprint),
        target_spacing_rule=spacing_rule,
    )
