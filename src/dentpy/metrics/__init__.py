"""Segmentation metrics with dentpy's conventions (docs/metrics.md, DESIGN.md §4)."""

from __future__ import annotations

from dentpy.metrics.segmentation import (
    EMPTY_RULES,
    METRIC_DEFINITIONS,
    BinaryMetrics,
    binary_metrics,
    case_metrics,
    summarize,
)
from dentpy.metrics.surface import (
    hd95_mm,
    image_diagonal_mm,
    surface_distances_mm,
    surface_voxels,
)

__all__ = [
    "EMPTY_RULES",
    "METRIC_DEFINITIONS",
    "BinaryMetrics",
    "binary_metrics",
    "case_metrics",
    "hd95_mm",
    "image_diagonal_mm",
    "summarize",
    "surface_distances_mm",
    "surface_voxels",
]
