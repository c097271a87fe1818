"""Segmentation and instance metrics with dentpy's conventions (docs/metrics.md, DESIGN.md §4)."""

from __future__ import annotations

from dentpy.metrics.instance import (
    INSTANCE_DEFINITIONS,
    InstanceResult,
    MatchedInstance,
    match_instances,
)
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
    "INSTANCE_DEFINITIONS",
    "METRIC_DEFINITIONS",
    "BinaryMetrics",
    "InstanceResult",
    "MatchedInstance",
    "binary_metrics",
    "case_metrics",
    "hd95_mm",
    "image_diagonal_mm",
    "match_instances",
    "summarize",
    "surface_distances_mm",
    "surface_voxels",
]
