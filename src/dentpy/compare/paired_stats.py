"""Paired statistics for comparing two runs case by case (numpy only).

Everything here works on paired differences d = B - A (run B minus the reference run A),
one per case, so the between-case variation that both runs share cancels out.

- ``paired_bootstrap_cis``: percentile bootstrap CI of the mean difference, resampling
  whole patients (cluster bootstrap, via dentpy.metrics.classification.bootstrap_cis).
- ``wilcoxon_signed_rank``: two-sided Wilcoxon signed-rank test, zero_method "wilcox".
- ``win_tie_loss``: how often B beats, ties or loses to A, respecting the metric direction.
- ``holm``: Holm step-down adjustment of a family of p-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dentpy.metrics.classification import Interval, bootstrap_cis

HIGHER_IS_BETTER: frozenset[str] = frozenset(
    {
        "dice",
        "iou",
        "precision",
        "recall",
        "specificity",
        "p_true",
        "correct",
        "f1",
        "tp",
        "roc_auc",
        "pr_auc",
        "balanced_accuracy",
        "quadratic_weighted_kappa",
    }
)
LOWER_IS_BETTER: frozenset[str] = frozenset(
    {"hd95_mm", "abs_volume_error_mm3", "brier", "fp", "fn"}
)
# Largest exact null distribution we enumerate (scipy uses the same cut-off).
EXACT_MAX_N = 50

WILCOXON_DEFINITION = (
    "two-sided Wilcoxon signed-rank test of the paired differences B - A, zero_method "
    "'wilcox' (differences within the tie tolerance of 0 are dropped and counted); exact "
    "null distribution when n <= 50 with no tied |d| and no zeros, otherwise the normal "
    "approximation with tie-corrected variance and a 0.5 continuity correction; n = 0 after "
    "dropping zeros gives p = 1. When a patient has several cases (classification images), "
    "the test ranks one mean difference per patient, because it assumes independent pairs"
)
HOLM_DEFINITION = (
    "Holm step-down adjustment over all rows of one comparison (every metric and class "
    "that has a Wilcoxon p-value): sort p ascending, p_adj(i) = max over j <= i of "
    "min(1, (m - j + 1) p(j)); controls the family-wise error rate at the nominal level"
)
BOOTSTRAP_DEFINITION = (
    "95% CI of the mean difference B - A: percentile bootstrap over cases, resampling whole "
    "patients with replacement (cluster bootstrap; each case is its own patient when the "
    "table has no patient id); the same resamples pair A and B, n_boot resamples, fixed seed"
)
WIN_TIE_LOSS_DEFINITION = (
    "per case, B wins when it is better than A by more than the metric's tie tolerance "
    "(better = higher, or lower for hd95_mm, abs_volume_error_mm3, brier, fp, fn), loses "
    "when worse by more than the tolerance, ties otherwise"
)


def direction(metric: str) -> int:
    """+1 when a higher value of `metric` is better, -1 when lower is better."""
    if metric in HIGHER_IS_BETTER:
        return 1
    if metric in LOWER_IS_BETTER:
        return -1
    raise ValueError(f"no known direction for metric {metric!r}")


@dataclass(frozen=True)
class WilcoxonResult:
    """Outcome of ``wilcoxon_signed_rank``.

    ``statistic`` is min(T+, T-) (scipy's two-sided statistic), ``n_used`` the number of
    non-zero differences that were ranked, ``n_zero`` the dropped zero differences,
    ``method`` "exact" | "approx" | "none", ``note`` says why when not a plain test.
    """

    p_value: float
    statistic: float
    n_used: int
    n_zero: int
    method: str
    note: str | None = None


def _average_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks 1..n with ties given their average rank, and the sizes of the tie blocks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values) != 0) + 1]
    sizes = np.diff(np.r_[starts, values.size])
    # A block occupying positions s..s+k-1 (0-based) gets the average rank s + (k + 1) / 2.
    block_rank = starts + (sizes + 1) / 2.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(block_rank, sizes)
    return ranks, sizes


def _exact_two_sided(t_plus: float, n: int) -> float:
    """P-value of T+ under the exact null (all 2^n sign patterns equally likely)."""
    total = n * (n + 1) // 2
    counts = np.zeros(total + 1, dtype=np.float64)
    counts[0] = 1.0
    for k in range(1, n + 1):
        # Adding rank k: each earlier sum s can stay (sign -) or move to s + k (sign +).
        counts[k:] = counts[k:] + counts[: total + 1 - k].copy()
    probabilities = counts / counts.sum()
    t = round(t_plus)
    lower = float(probabilities[: t + 1].sum())
    upper = float(probabilities[t:].sum())
    return min(1.0, 2.0 * min(lower, upper))


def wilcoxon_signed_rank(
    differences: Sequence[float] | np.ndarray, zero_tolerance: float = 0.0, method: str = "auto"
) -> WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test of paired differences (B - A).

    Differences with |d| <= ``zero_tolerance`` are zeros: dropped and counted (zero_method
    "wilcox"). Exact null distribution when at most 50 differences remain, none are tied
    in |d| and no zero was dropped; otherwise the normal approximation with the tie
    correction of the variance and a continuity correction of 0.5 (scipy's
    ``method="approx", correction=True``). ``method`` "exact" or "approx" forces one (exact
    still needs n <= 50 and no ties or zeros, else it falls back). NaN differences are not
    allowed (filter first). With no non-zero difference the p-value is 1.0 and ``note`` says why.
    """
    d = np.asarray(differences, dtype=np.float64).ravel()
    if not np.all(np.isfinite(d)):
        raise ValueError("differences must be finite; drop undefined pairs first")
    zero = np.abs(d) <= zero_tolerance
    n_zero = int(zero.sum())
    d = d[~zero]
    n = int(d.size)
    if n == 0:
        note = "no non-zero difference (all pairs tied or no pairs): p = 1"
        return WilcoxonResult(1.0, 0.0, 0, n_zero, "none", note)
    ranks, tie_sizes = _average_ranks(np.abs(d))
    t_plus = float(ranks[d > 0].sum())
    t_minus = float(ranks[d < 0].sum())
    statistic = min(t_plus, t_minus)
    has_ties = bool(np.any(tie_sizes > 1))
    exact_possible = n <= EXACT_MAX_N and not has_ties and n_zero == 0
    if method not in ("auto", "exact", "approx"):
        raise ValueError(f"method must be auto, exact or approx, got {method!r}")
    if exact_possible and method != "approx":
        return WilcoxonResult(_exact_two_sided(t_plus, n), statistic, n, n_zero, "exact")
    mean = n * (n + 1) / 4.0
    variance = n * (n + 1) * (2 * n + 1) / 24.0 - float(np.sum(tie_sizes**3 - tie_sizes)) / 48.0
    approx_note = None
    if n <= EXACT_MAX_N and not exact_possible:
        approx_note = "normal approximation (tied |differences| or zeros present)"
    if variance <= 0:
        return WilcoxonResult(1.0, statistic, n, n_zero, "approx", "zero variance: p = 1")
    correction = 0.5 * np.sign(t_plus - mean)
    z = (t_plus - mean - correction) / math.sqrt(variance)
    p_value = min(1.0, math.erfc(abs(z) / math.sqrt(2.0)))
    return WilcoxonResult(p_value, statistic, n, n_zero, "approx", approx_note)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values, same order; None entries stay None and are not counted."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def win_tie_loss(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, metric: str, tolerance: float
) -> tuple[int, int, int]:
    """(wins, ties, losses) of B against A; |B - A| <= tolerance is a tie."""
    diff = (np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)) * direction(metric)
    wins = int(np.sum(diff > tolerance))
    losses = int(np.sum(diff < -tolerance))
    return wins, int(diff.size) - wins - losses, losses


def paired_bootstrap_cis(
    differences: np.ndarray,
    groups: Sequence[str] | np.ndarray | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> list[Interval]:
    """Percentile bootstrap CIs of the column means of an (n_cases, k) difference array.

    NaN marks an undefined pair (left out of that column's mean). All columns share the
    same resamples of patients (``groups``: one patient id per case; None = every case its
    own patient). A resample in which a column has no defined pair counts as undefined
    there (``n_valid``); an empty table gives intervals of None.
    """
    diffs = np.asarray(differences, dtype=np.float64)
    if diffs.ndim == 1:
        diffs = diffs[:, None]
    n_cases, n_columns = diffs.shape
    if n_cases == 0:
        return [Interval(None, None, 0, n_boot) for _ in range(n_columns)]
    # Integer codes in order of first appearance: the resamples then do not depend on how
    # patient ids sort, and all-distinct groups give exactly the plain case bootstrap.
    names = list(range(n_cases)) if groups is None else list(groups)
    first_seen: dict[object, int] = {}
    group_ids = np.asarray([first_seen.setdefault(g, len(first_seen)) for g in names])
    defined = np.isfinite(diffs)
    filled = np.where(defined, diffs, 0.0)

    def column_means(indices: np.ndarray) -> dict[str, float | None]:
        counts = defined[indices].sum(axis=0)
        sums = filled[indices].sum(axis=0)
        return {
            str(j): (float(sums[j] / counts[j]) if counts[j] else None) for j in range(n_columns)
        }

    cis = bootstrap_cis(column_means, n_cases, group_ids, n_boot=n_boot, seed=seed, level=level)
    return [cis.get(str(j), Interval(None, None, 0, n_boot)) for j in range(n_columns)]


def paired_bootstrap_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    groups: Sequence[str] | np.ndarray | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile bootstrap CI of mean(B - A) over paired cases (see paired_bootstrap_cis)."""
    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    return paired_bootstrap_cis(diff, groups, n_boot=n_boot, seed=seed, level=level)[0]
