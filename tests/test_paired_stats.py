"""Paired statistics of `dentpy compare` against scipy and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dentpy.compare.paired_stats import (
    direction,
    holm,
    paired_bootstrap_ci,
    paired_bootstrap_cis,
    wilcoxon_signed_rank,
    win_tie_loss,
)


def test_exact_matches_scipy_on_tie_free_samples() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 51))
        d = rng.normal(rng.normal(0, 0.5), 1.0, n)
        ours = wilcoxon_signed_rank(d)
        reference = stats.wilcoxon(d, method="exact")
        assert ours.method == "exact"
        assert ours.p_value == pytest.approx(reference.pvalue, abs=1e-12)
        assert ours.statistic == pytest.approx(reference.statistic)


def test_approx_matches_scipy_with_ties_and_zeros() -> None:
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(300):
        n = int(rng.integers(2, 120))
        d = np.round(rng.normal(rng.normal(0, 0.3), 1.0, n), 1)  # rounding makes ties and zeros
        if np.all(d == 0):
            continue
        ours = wilcoxon_signed_rank(d, method="approx")
        reference = stats.wilcoxon(d, zero_method="wilcox", method="approx", correction=True)
        assert ours.p_value == pytest.approx(reference.pvalue, abs=1e-12)
        assert ours.n_zero == int(np.sum(d == 0))
        checked += 1
    assert checked > 250


def test_auto_uses_normal_approximation_with_ties_or_zeros() -> None:
    tied = wilcoxon_signed_rank([1.0, 1.0, 2.0, 3.0, -0.5])
    assert tied.method == "approx"
    reference = stats.wilcoxon([1.0, 1.0, 2.0, 3.0, -0.5], method="approx", correction=True)
    assert tied.p_value == pytest.approx(reference.pvalue)
    zeros = wilcoxon_signed_rank([0.0, 1.0, 2.0, 3.0])
    assert zeros.method == "approx" and zeros.n_zero == 1 and zeros.n_used == 3
    large = wilcoxon_signed_rank(np.arange(1, 61, dtype=float))
    assert large.method == "approx"


def test_closed_forms() -> None:
    # Five positive differences: only 1 of 32 sign patterns is as extreme on each side.
    five = wilcoxon_signed_rank([0.1, 0.2, 0.3, 0.4, 0.5])
    assert five.method == "exact" and five.p_value == pytest.approx(2 / 32)
    assert five.statistic == 0.0
    # One difference: p = 1 (both sign patterns equally extreme).
    assert wilcoxon_signed_rank([3.0]).p_value == pytest.approx(1.0)
    # Ten negative differences: 2 / 1024.
    assert wilcoxon_signed_rank(-np.arange(1, 11.0)).p_value == pytest.approx(2 / 1024)


def test_no_nonzero_difference_gives_p_one_with_note() -> None:
    for d in ([], [0.0, 0.0, 0.0], [1e-9, -1e-9]):
        result = wilcoxon_signed_rank(d, zero_tolerance=1e-6)
        assert result.p_value == 1.0
        assert result.note is not None and "p = 1" in result.note
        assert not np.isnan(result.p_value)


def test_zero_tolerance_drops_float_noise() -> None:
    result = wilcoxon_signed_rank([1e-12, 0.5, 0.6, 0.7], zero_tolerance=1e-6)
    assert result.n_zero == 1 and result.n_used == 3


def test_nan_differences_are_refused() -> None:
    with pytest.raises(ValueError):
        wilcoxon_signed_rank([1.0, float("nan")])


def test_holm_against_hand_computation() -> None:
    # m = 4: sorted 0.01, 0.02, 0.03, 0.5 -> 0.04, max(0.04, 0.06)=0.06, max(.06,.06)=.06, 0.5
    adjusted = holm([0.03, 0.01, None, 0.5, 0.02])
    assert adjusted == pytest.approx([0.06, 0.04, None, 0.5, 0.06])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


def test_win_tie_loss_respects_direction_and_tolerance() -> None:
    a = [0.5, 0.5, 0.5, 0.5]
    b = [0.6, 0.5 + 1e-9, 0.4, 0.7]
    assert win_tie_loss(a, b, "dice", 1e-6) == (2, 1, 1)
    # For HD95 lower is better: the same numbers flip wins and losses.
    assert win_tie_loss(a, b, "hd95_mm", 1e-6) == (1, 1, 2)
    assert direction("brier") == -1 and direction("p_true") == 1
    with pytest.raises(ValueError):
        direction("volume_pred_mm3")


def test_bootstrap_ci_matches_scipy_percentile() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(0.7, 0.1, 40)
    b = a + rng.normal(0.03, 0.05, 40)
    ours = paired_bootstrap_ci(a, b, n_boot=4000, seed=0)
    reference = stats.bootstrap(
        (a, b),
        lambda x, y: np.mean(y - x),
        paired=True,
        method="percentile",
        n_resamples=4000,
        random_state=np.random.default_rng(1),
    ).confidence_interval
    # Different random resamples: agreement within Monte-Carlo error (sd of the mean diff
    # is about 0.05 / sqrt(40) = 0.008; percentile endpoints vary by a few 1e-4).
    assert ours.low == pytest.approx(reference.low, abs=2e-3)
    assert ours.high == pytest.approx(reference.high, abs=2e-3)
    assert ours.low < float(np.mean(b - a)) < ours.high
    assert ours.n_valid == 4000


def test_bootstrap_is_deterministic_and_cluster_with_distinct_groups_is_plain() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(25), rng.random(25)
    plain = paired_bootstrap_ci(a, b, n_boot=500, seed=7)
    assert paired_bootstrap_ci(a, b, n_boot=500, seed=7) == plain
    distinct = paired_bootstrap_ci(a, b, groups=[f"p{i}" for i in range(25)], n_boot=500, seed=7)
    assert distinct == plain


def test_cluster_bootstrap_keeps_patients_together() -> None:
    # Two patients, all of one patient's cases differ by +1, the other's by -1: every
    # resample holds whole patients, so the mean diff is one of -1, 0, +1 only.
    d = np.array([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    groups = ["p1"] * 3 + ["p2"] * 3
    interval = paired_bootstrap_cis(d, groups, n_boot=400, seed=0)[0]
    assert interval.low == pytest.approx(-1.0) and interval.high == pytest.approx(1.0)


def test_identical_runs_give_degenerate_interval() -> None:
    a = np.linspace(0, 1, 9)
    interval = paired_bootstrap_ci(a, a, n_boot=200)
    assert (interval.low, interval.high) == (0.0, 0.0)


def test_columns_with_undefined_pairs() -> None:
    d = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, 5.0]])
    first, second = paired_bootstrap_cis(d, n_boot=300, seed=0)
    assert 1.0 <= first.low <= first.high <= 3.0
    # Column 2 is defined only when case 3 is drawn (~70% of resamples): value always 5.
    assert second.low == second.high == 5.0 and second.n_valid < 300
