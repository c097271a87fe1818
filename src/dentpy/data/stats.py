"""Small summary helpers shared by the 3D and 2D dataset fingerprints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def evenly_spaced(pool: Sequence[T], limit: int | None) -> list[T]:
    """Up to `limit` items spread evenly over `pool` (all of them when limit is None)."""
    if limit is None or limit >= len(pool):
        return list(pool)
    if limit <= 0:
        return []
    indices = np.linspace(0, len(pool) - 1, limit).round().astype(int)
    return [pool[i] for i in sorted(set(indices.tolist()))]


def min_median_max(rows: Sequence[Sequence[float]]) -> dict[str, list[float]] | None:
    """Column-wise min, median and max of a table of numbers; None for no rows."""
    if not rows:
        return None
    table = np.asarray(rows, dtype=np.float64)
    return {
        "min": table.min(axis=0).tolist(),
        "median": np.median(table, axis=0).tolist(),
        "max": table.max(axis=0).tolist(),
    }
