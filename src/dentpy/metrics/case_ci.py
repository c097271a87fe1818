"""Bootstrap confidence intervals of per-class means over cases (segmentation tables).

A segmentation evaluation has one row per (case, class). The uncertainty of a class's
mean Dice comes from which cases happened to be in the test set, so cases are resampled
with replacement (a percentile bootstrap); when several cases share a patient, whole
patients are resampled, so one patient's scans are never treated as independent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

CI_METRICS: tuple[str, ...] = (
    "dice",
    "iou",
    "precision",
    "recall",
    "hd95_mm",
    "abs_volume_error_mm3",
)
CI_DEFINITION = (
    "95% CI: percentile bootstrap of the mean over cases (resampling whole patients with "
    "replacement), per class; n_boot resamples, fixed seed"
)


def class_mean_cis(
    rows: Sequence[Mapping[str, Any]],
    metrics: Sequence[str] = CI_METRICS,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    patients: Mapping[str, str] | None = None,
) -> dict[str, dict[str, dict[str, float | int]]]:
    """{class: {metric: {low, high, n_cases, n_valid, n_boot}}} per class and metric of `rows`.

    `patients` maps case_id -> patient id (default: every case is its own patient). The
    same resampled patients are used for every metric of a class, so intervals of one
    class are computed from one set of resamples. `n_boot` 0 gives an empty dict. A class
    with one case gets the degenerate interval [value, value].
    """
    if n_boot <= 0:
        return {}
    if not 0.0 < level < 1.0:
        raise ValueError("level must lie in (0, 1)")
    by_class: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_class.setdefault(str(row["class"]), []).append(row)
    alpha = (1.0 - level) / 2.0
    result: dict[str, dict[str, dict[str, float | int]]] = {}
    for offset, (name, class_rows) in enumerate(by_class.items()):
        group_of = [(patients or {}).get(str(r["case_id"]), str(r["case_id"])) for r in class_rows]
        _, group_index = np.unique(np.asarray(group_of), return_inverse=True)
        n_groups = int(group_index.max()) + 1
        # Row membership per group: counts[b, g] = how often group g is drawn in resample b.
        rng = np.random.default_rng(seed + offset)
        draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
        counts = np.zeros((n_boot, n_groups))
        np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
        weights = counts[:, group_index]  # (n_boot, n_rows)
        out: dict[str, dict[str, float | int]] = {}
        for metric in metrics:
            if metric not in class_rows[0]:
                continue
            values = np.asarray([float(r[metric]) for r in class_rows])
            if not np.all(np.isfinite(values)):
                raise ValueError(f"class {name!r}: non-finite {metric} in the per-case rows")
            means = (weights @ values) / weights.sum(axis=1)
            low, high = np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
            out[metric] = {
                "low": float(low),
                "high": float(high),
                "n_cases": len(class_rows),
                "n_valid": n_boot,  # a mean is defined on every resample
                "n_boot": n_boot,
            }
        result[name] = out
    return result
