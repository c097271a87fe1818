"""Classification metrics that only exist over a set of images (ROC-AUC, kappa...).

They have no per-image value, so there is no Wilcoxon test for them: the comparison is
the difference B - A on the whole split with a paired patient-level bootstrap CI (both
runs are scored on the same resampled patients). Metrics come from
dentpy.metrics.classification; threshold-dependent ones use each run's own predicted
class (its `predicted` column), so they match what `dentpy evaluate` reported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dentpy.compare.per_case import ALL_CLASSES, RunTable


def aggregate_names(output: str | None) -> tuple[str, ...]:
    """Aggregate metrics compared for a classification output kind."""
    if output == "binary":
        return ("roc_auc", "pr_auc", "balanced_accuracy")
    if output == "ordinal":
        return ("balanced_accuracy", "quadratic_weighted_kappa")
    return ("balanced_accuracy",)


def _scorer(table: RunTable, cases: list[str]) -> Callable[[np.ndarray], dict[str, float | None]]:
    from dentpy.metrics.classification import binary_metrics, multiclass_metrics, ordinal_metrics

    y = np.asarray([table.labels[c] for c in cases], dtype=np.int64)
    predicted = np.asarray([table.predicted[c] for c in cases], dtype=np.int64)
    probs = np.asarray([table.probabilities[c] for c in cases], dtype=np.float64)
    n_classes = len(table.classes)
    # One-hot of the run's decision: the argmax inside the metric functions then returns
    # exactly the run's predicted class (ordinal heads need not decide by argmax).
    decision = np.eye(n_classes)[predicted] if n_classes else np.zeros((len(cases), 0))
    positive = (
        table.classes.index(table.positive_class) if table.positive_class in table.classes else 0
    )

    def score(idx: np.ndarray) -> dict[str, float | None]:
        if table.output == "binary":
            truth = (y[idx] == positive).astype(np.int64)
            ranked = binary_metrics(truth, probs[idx, positive])
            decided = binary_metrics(truth, (predicted[idx] == positive).astype(np.float64))
            return {
                "roc_auc": ranked["roc_auc"],
                "pr_auc": ranked["pr_auc"],
                "balanced_accuracy": decided["balanced_accuracy"],
            }
        if table.output == "ordinal":
            out = ordinal_metrics(y[idx], decision[idx])
            return {
                "balanced_accuracy": out["balanced_accuracy"],
                "quadratic_weighted_kappa": out["quadratic_weighted_kappa"],
            }
        return {"balanced_accuracy": multiclass_metrics(y[idx], decision[idx])["balanced_accuracy"]}

    return score


def aggregate_rows(
    a: RunTable, b: RunTable, cases: list[str], n_boot: int, seed: int
) -> list[dict[str, Any]]:
    """One row per aggregate metric: values of A and B, difference and its bootstrap CI."""
    from dentpy.metrics.classification import bootstrap_cis

    if not cases:
        return []
    score_a, score_b = _scorer(a, cases), _scorer(b, cases)
    everything = np.arange(len(cases))
    full_a, full_b = score_a(everything), score_b(everything)

    def difference(idx: np.ndarray) -> dict[str, float | None]:
        sa, sb = score_a(idx), score_b(idx)
        return {
            name: (None if sa[name] is None or sb[name] is None else sb[name] - sa[name])  # type: ignore[operator]
            for name in sa
        }

    groups = np.asarray([a.patients.get(c, c) for c in cases])
    cis = bootstrap_cis(difference, len(cases), groups, n_boot=n_boot, seed=seed)
    rows = []
    for name in aggregate_names(a.output):
        va, vb = full_a.get(name), full_b.get(name)
        ci = cis.get(name)
        rows.append(
            {
                "metric": name,
                "class": ALL_CLASSES,
                "kind": "aggregate",
                "n": len(cases),
                "n_undefined": 0,
                "mean_a": va,
                "mean_b": vb,
                "mean_diff": None if va is None or vb is None else vb - va,
                "ci_low": ci.low if ci else None,
                "ci_high": ci.high if ci else None,
                "ci_n_valid": ci.n_valid if ci else 0,
                "p_value": None,
                "p_holm": None,
                "test": "none (aggregate metric: no per-image value to pair; CI only)",
                "wins": None,
                "ties": None,
                "losses": None,
                "better": "higher",
                "note": None if va is not None and vb is not None else "metric undefined",
            }
        )
    return rows
