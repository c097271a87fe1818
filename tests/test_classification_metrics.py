"""Classification metrics against scikit-learn, closed forms, undefined cases, bootstrap."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from dentpy.errors import InputDataError
from dentpy.metrics.classification import (
    METRIC_DEFINITIONS,
    Interval,
    binary_metrics,
    bootstrap_ci,
    bootstrap_cis,
    choose_threshold,
    confusion_matrix,
    multiclass_metrics,
    ordinal_metrics,
    pr_curve,
    roc_curve,
)
from dentpy.report.classification_plots import (
    save_confusion,
    save_error_grid,
    save_pr,
    save_roc,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _binary_case(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    # Informative scores with ties (rounded) so tie handling is exercised.
    s = np.clip(np.round(0.5 + 0.25 * (y - 0.5) + rng.normal(0, 0.25, n), 2), 0, 1)
    return y, s


def _multiclass_case(seed: int, n: int = 400, c: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), y] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.62])
def test_binary_matches_sklearn(seed: int, threshold: float) -> None:
    y, s = _binary_case(seed)
    pred = (s >= threshold).astype(int)
    m = binary_metrics(y, s, threshold)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (tp, fp, tn, fn)
    assert np.isclose(m["accuracy"], skm.accuracy_score(y, pred), rtol=1e-12)
    assert np.isclose(m["balanced_accuracy"], skm.balanced_accuracy_score(y, pred), rtol=1e-12)
    assert np.isclose(m["precision"], skm.precision_score(y, pred), rtol=1e-12)
    assert np.isclose(m["recall"], skm.recall_score(y, pred), rtol=1e-12)
    assert m["sensitivity"] == m["recall"]
    assert np.isclose(m["specificity"], skm.recall_score(y, pred, pos_label=0), rtol=1e-12)
    assert np.isclose(m["npv"], skm.precision_score(y, pred, pos_label=0), rtol=1e-12)
    assert np.isclose(m["f1"], skm.f1_score(y, pred), rtol=1e-12)
    assert np.isclose(m["roc_auc"], skm.roc_auc_score(y, s), rtol=1e-12)
    assert np.isclose(m["pr_auc"], skm.average_precision_score(y, s), rtol=1e-12)
    assert np.isclose(m["prevalence"], y.mean(), rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 5])
def test_curves_match_sklearn(seed: int) -> None:
    y, s = _binary_case(seed)
    fpr, tpr, thr = roc_curve(y, s)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, rtol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, rtol=1e-12)
    np.testing.assert_array_equal(thr[1:], sk_thr[1:])
    assert np.isinf(thr[0])
    assert np.isclose(np.trapezoid(tpr, fpr), skm.roc_auc_score(y, s), rtol=1e-12)
    precision, recall, pthr = pr_curve(y, s)
    sk_p, sk_r, sk_t = skm.precision_recall_curve(y, s, drop_intermediate=False)
    # scikit-learn: increasing thresholds, plus a final (P=1, R=0) point; compare shared ones.
    lookup = {t: (p, r) for p, r, t in zip(sk_p[:-1], sk_r[:-1], sk_t, strict=True)}
    for p, r, t in zip(precision, recall, pthr, strict=True):
        if t in lookup:
            assert np.isclose(p, lookup[t][0], rtol=1e-12)
            assert np.isclose(r, lookup[t][1], rtol=1e-12)
    ap = np.sum(np.diff(np.r_[0.0, recall]) * precision)
    assert np.isclose(ap, skm.average_precision_score(y, s), rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multiclass_matches_sklearn(seed: int) -> None:
    y, probs = _multiclass_case(seed)
    pred = probs.argmax(axis=1)
    m = multiclass_metrics(y, probs)
    labels = list(range(4))
    np.testing.assert_array_equal(
        np.asarray(m["confusion_matrix"]), skm.confusion_matrix(y, pred, labels=labels)
    )
    np.testing.assert_array_equal(
        confusion_matrix(y, pred, 4), skm.confusion_matrix(y, pred, labels=labels)
    )
    assert np.isclose(m["accuracy"], skm.accuracy_score(y, pred), rtol=1e-12)
    assert np.isclose(m["balanced_accuracy"], skm.balanced_accuracy_score(y, pred), rtol=1e-12)
    for key in ("precision", "recall", "f1"):
        scorer = getattr(skm, f"{key}_score")
        assert np.isclose(m[f"macro_{key}"], scorer(y, pred, average="macro"), rtol=1e-12)
        per = scorer(y, pred, average=None, labels=labels)
        for k in labels:
            assert np.isclose(m["per_class"][k][key], per[k], rtol=1e-12)
    cm = skm.confusion_matrix(y, pred, labels=labels)
    specs = []
    for k in labels:
        tn = cm.sum() - cm[k].sum() - cm[:, k].sum() + cm[k, k]
        spec = tn / (cm.sum() - cm[k].sum())
        specs.append(spec)
        assert np.isclose(m["per_class"][k]["specificity"], spec, rtol=1e-12)
        yk = (y == k).astype(int)
        assert np.isclose(
            m["per_class"][k]["roc_auc"], skm.roc_auc_score(yk, probs[:, k]), rtol=1e-12
        )
        assert np.isclose(
            m["per_class"][k]["pr_auc"],
            skm.average_precision_score(yk, probs[:, k]),
            rtol=1e-12,
        )
    assert np.isclose(m["macro_specificity"], np.mean(specs), rtol=1e-12)
    assert np.isclose(
        m["macro_roc_auc"],
        skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"),
        rtol=1e-12,
    )
    assert m["n_defined"]["macro_roc_auc"] == 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ordinal_kappa_matches_sklearn(seed: int) -> None:
    y, probs = _multiclass_case(seed, c=5)
    pred = probs.argmax(axis=1)
    m = ordinal_metrics(y, probs)
    for weights in ("quadratic", "linear"):
        expected = skm.cohen_kappa_score(y, pred, weights=weights, labels=list(range(5)))
        assert np.isclose(m[f"{weights}_weighted_kappa"], expected, rtol=1e-12)
    assert np.isclose(m["mae_grade"], skm.mean_absolute_error(y, pred), rtol=1e-12)
    assert np.isclose(m["mae_expected_grade"], np.mean(np.abs(probs @ np.arange(5) - y)))
    assert np.isclose(m["accuracy"], skm.accuracy_score(y, pred), rtol=1e-12)
    assert "per_class" in m and "macro_roc_auc" in m


def _one_hot(grades: list[int], c: int) -> np.ndarray:
    out = np.full((len(grades), c), 0.05)
    out[np.arange(len(grades)), grades] = 1.0 - 0.05 * (c - 1)
    return out


def test_ordinal_closed_forms() -> None:
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    perfect = ordinal_metrics(y, _one_hot(list(y), 4))
    assert perfect["quadratic_weighted_kappa"] == pytest.approx(1.0)
    assert perfect["linear_weighted_kappa"] == pytest.approx(1.0)
    assert perfect["mae_grade"] == 0.0
    assert perfect["within_one_accuracy"] == 1.0
    # Expected grade of the one-hot-ish rows: 0.85 k + 0.05 (sum of other indices).
    expected_grade = 0.85 * y + 0.05 * (6 - y)
    assert perfect["mae_expected_grade"] == pytest.approx(np.mean(np.abs(expected_grade - y)))

    # Every prediction off by one (0->1, 1->2, 2->3, 3->2): hand computed.
    y = np.array([0, 1, 2, 3])
    pred = [1, 2, 3, 2]
    m = ordinal_metrics(y, _one_hot(pred, 4))
    assert m["mae_grade"] == 1.0
    assert m["within_one_accuracy"] == 1.0
    assert m["accuracy"] == 0.0
    # Observed quadratic disagreement: 4 samples x weight 1 = 4. Reference marginals
    # (1, 1, 1, 1), predicted marginals (0, 1, 2, 1); expected disagreement
    # sum_j c_j sum_i (i - j)^2 / n = (1*6 + 2*6 + 1*14) / 4 = 8, so kappa = 1 - 4/8.
    assert m["quadratic_weighted_kappa"] == pytest.approx(0.5)
    # Linear: observed 4; expected (1*4 + 2*4 + 1*6) / 4 = 4.5, so kappa = 1 - 4/4.5.
    assert m["linear_weighted_kappa"] == pytest.approx(1 - 4 / 4.5)

    # Binary perfectly inverted: kappa = -1.
    m = ordinal_metrics(np.array([0, 1, 0, 1]), _one_hot([1, 0, 1, 0], 2))
    assert m["quadratic_weighted_kappa"] == pytest.approx(-1.0)


def test_undefined_cases_return_none() -> None:
    y = np.zeros(10, dtype=int)
    s = np.linspace(0, 1, 10)
    m = binary_metrics(y, s, 0.5)
    assert m["roc_auc"] is None
    assert m["pr_auc"] is None
    assert m["recall"] is None
    assert m["balanced_accuracy"] is None
    assert m["specificity"] == pytest.approx(0.5)
    # No predicted positives -> precision undefined; f1 still defined (= 0) with positives.
    y = np.array([0, 1, 0, 1])
    m = binary_metrics(y, np.array([0.1, 0.2, 0.3, 0.4]), 0.9)
    assert m["precision"] is None
    assert m["f1"] == 0.0
    assert m["recall"] == 0.0
    assert m["npv"] == 0.5
    # All predicted positive -> npv undefined.
    assert binary_metrics(y, np.array([0.1, 0.2, 0.3, 0.4]), 0.0)["npv"] is None
    # No values are NaN anywhere.
    for value in m.values():
        assert value is None or np.isfinite(value)
    # Multiclass with an absent class: per-class AUC None, macro over the defined ones.
    y = np.array([0, 1, 0, 1, 2, 2])
    probs = _one_hot([0, 1, 0, 0, 2, 2], 4)
    mc = multiclass_metrics(y, probs)
    assert mc["per_class"][3]["roc_auc"] is None
    assert mc["per_class"][3]["recall"] is None
    assert mc["per_class"][3]["precision"] is None
    assert mc["n_defined"]["macro_roc_auc"] == 3
    assert mc["n_defined"]["macro_recall"] == 3
    # Constant and equal reference and prediction: kappa undefined.
    const = ordinal_metrics(np.array([1, 1, 1]), _one_hot([1, 1, 1], 3))
    assert const["quadratic_weighted_kappa"] is None


def test_bad_inputs_raise() -> None:
    with pytest.raises(InputDataError):
        binary_metrics(np.array([0, 1]), np.array([0.2, 0.3, 0.4]), 0.5)
    with pytest.raises(InputDataError):
        binary_metrics(np.array([0, 2]), np.array([0.2, 0.3]), 0.5)
    with pytest.raises(InputDataError):
        binary_metrics(np.array([0, 1]), np.array([0.2, np.nan]), 0.5)
    with pytest.raises(InputDataError):
        multiclass_metrics(np.array([0, 4]), np.full((2, 4), 0.25))


def test_choose_threshold_youden_known_optimum() -> None:
    # Scores: negatives 0.1, 0.2, 0.3, 0.6; positives 0.4, 0.5, 0.7, 0.8.
    # J(t): t=0.8: .25; 0.7: .5; 0.6: .5-.25=.25; 0.5: .75-.25=.5; 0.4: 1-.25=.75 (max);
    # 0.3: 1-.5=.5 ...
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.5, 0.7, 0.8])
    t, info = choose_threshold(y, s, "youden")
    assert t == 0.4
    assert info["youden_j"] == pytest.approx(0.75)
    assert info["sensitivity"] == 1.0 and info["specificity"] == 0.75
    assert info["note"] is None
    # A tie: J(0.9) = 0.5 - 0 = 0.5, J(0.7) = 0.5 - 0.5 = 0, J(0.5) = 1 - 0.5 = 0.5,
    # J(0.3) = 0 -> the higher of the tied thresholds, 0.9, is chosen.
    y2 = np.array([1, 0, 1, 0])
    s2 = np.array([0.9, 0.7, 0.5, 0.3])
    t2, info2 = choose_threshold(y2, s2, "youden")
    assert t2 == 0.9 and info2["youden_j"] == pytest.approx(0.5)


def test_choose_threshold_sensitivity_target() -> None:
    y = np.array([1] * 10 + [0] * 10)
    s = np.r_[np.linspace(0.55, 1.0, 10), np.linspace(0.0, 0.6, 10)]
    t, info = choose_threshold(y, s, "sensitivity", target_sensitivity=0.9)
    # 9 of 10 positives have score >= 0.6 (the second lowest positive).
    assert t == pytest.approx(0.6)
    assert info["sensitivity"] == pytest.approx(0.9)
    # The highest such threshold: any higher score gives sensitivity < 0.9.
    higher = np.unique(s[s > t])
    assert all(binary_metrics(y, s, float(h))["recall"] < 0.9 for h in higher)
    # Reproducible with the >= rule.
    assert binary_metrics(y, s, t)["recall"] == info["sensitivity"]
    t1, info1 = choose_threshold(y, s, "sensitivity", target_sensitivity=1.0)
    assert t1 == pytest.approx(0.55) and info1["sensitivity"] == 1.0


def test_choose_threshold_one_class() -> None:
    t, info = choose_threshold(np.ones(5, dtype=int), np.linspace(0, 1, 5))
    assert t == 0.5
    assert info["note"] == "validation has one class; threshold 0.5 used"


def test_bootstrap_deterministic_and_contains_estimate() -> None:
    y, s = _binary_case(0, n=2000)
    groups = np.arange(y.size) // 4

    def auc(idx: np.ndarray) -> float | None:
        return binary_metrics(y[idx], s[idx], 0.5)["roc_auc"]

    a = bootstrap_ci(auc, y.size, groups, n_boot=200, seed=3)
    b = bootstrap_ci(auc, y.size, groups, n_boot=200, seed=3)
    c = bootstrap_ci(auc, y.size, groups, n_boot=200, seed=4)
    assert a == b
    assert a != c
    assert isinstance(a, Interval) and a.n_valid == 200 and a.fraction_valid == 1.0
    point = skm.roc_auc_score(y, s)
    assert a.low is not None and a.high is not None
    assert a.low < point < a.high
    assert a.high - a.low < 0.1


def test_bootstrap_resamples_whole_groups() -> None:
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 6, 40)
    groups = np.repeat(rng.permutation(1000)[:40], sizes)
    groups = groups[rng.permutation(groups.size)]  # members not contiguous
    seen: list[np.ndarray] = []

    def record(idx: np.ndarray) -> float:
        seen.append(idx.copy())
        return 0.0

    bootstrap_ci(record, groups.size, groups, n_boot=50, seed=1)
    assert len(seen) == 50
    members = {g: set(np.flatnonzero(groups == g)) for g in np.unique(groups)}
    for idx in seen:
        picked = groups[idx]
        for g in np.unique(picked):
            times_drawn = np.count_nonzero(picked == g) / len(members[g])
            assert times_drawn == int(times_drawn)  # whole groups, possibly several times
            assert set(idx[picked == g]) == members[g]
        assert len(np.unique(picked)) <= 40
    # On average about 63 % of groups appear in a resample.
    mean_unique = np.mean([len(np.unique(groups[i])) for i in seen])
    assert 20 < mean_unique < 30


def test_bootstrap_fraction_valid() -> None:
    groups = np.arange(20)
    y = np.r_[1, np.zeros(19, dtype=int)]

    def auc(idx: np.ndarray) -> float | None:
        return binary_metrics(y[idx], np.linspace(0, 1, 20)[idx], 0.5)["roc_auc"]

    interval = bootstrap_ci(auc, 20, groups, n_boot=400, seed=0)
    # The single positive enters a resample with probability 1 - (19/20)^20 ~ 0.64.
    assert 0.5 < interval.fraction_valid < 0.78
    assert interval.low is not None
    # A metric that is almost never defined: no interval, but the count is reported.
    rare = bootstrap_ci(lambda idx: 1.0 if 0 in idx and 1 in idx else None, 20, groups, 400)
    assert rare.low is None and rare.high is None
    assert 0 < rare.n_valid < 200 and rare.n_boot == 400
    # NaN counts as undefined.
    nan = bootstrap_ci(lambda idx: float("nan"), 20, groups, 10)
    assert nan == Interval(None, None, 0, 10)


def test_bootstrap_speed() -> None:
    y, s = _binary_case(1, n=500)
    groups = np.arange(500) // 3
    keys = (
        "accuracy",
        "balanced_accuracy",
        "precision",
        "recall",
        "specificity",
        "npv",
        "f1",
        "roc_auc",
        "pr_auc",
        "prevalence",
    )

    def all_metrics(idx: np.ndarray) -> dict[str, float | None]:
        m = binary_metrics(y[idx], s[idx], 0.5)
        return {k: m[k] for k in keys}

    start = time.perf_counter()
    intervals = bootstrap_cis(all_metrics, 500, groups, n_boot=1000, seed=0)
    elapsed = time.perf_counter() - start
    assert set(intervals) == set(keys)
    assert elapsed < 3.0, elapsed
    assert all(iv.n_valid == 1000 for iv in intervals.values())


def test_metric_definitions_cover_outputs() -> None:
    y, probs = _multiclass_case(0)
    m = ordinal_metrics(y, probs)
    b = binary_metrics((y == 0).astype(int), probs[:, 0], 0.5)
    scalar = [k for k, v in {**m, **b}.items() if not isinstance(v, (dict, list))]
    missing = set(scalar) - set(METRIC_DEFINITIONS) - {"n", "n_classes"}
    assert not missing


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def test_plots_written(tmp_path: Path) -> None:
    y, s = _binary_case(0, n=120)
    m = binary_metrics(y, s, 0.5)
    roc = save_roc(tmp_path / "roc.png", y, s, m["roc_auc"], "caries", (0.7, 0.8), 0.5)
    pr = save_pr(tmp_path / "sub" / "pr.png", y, s, m["pr_auc"], "caries", None, 0.5)
    cm = save_confusion(tmp_path / "cm.png", [[5, 1, 0], [2, 7, 1], [0, 0, 0]], ["a", "b", "c"])
    cm_counts = save_confusion(tmp_path / "cmc.png", np.eye(2, dtype=int), ["x", "y"], False)
    rng = np.random.default_rng(0)
    images = [rng.normal(size=(32, 24)) for _ in range(18)]
    grid = save_error_grid(tmp_path / "err.png", images, [f"p={i}" for i in range(18)], "errors")
    one = save_error_grid(tmp_path / "one.png", [np.zeros((8, 8))], ["flat"], "one image")
    # Degenerate: one class only, AUC undefined.
    undefined = save_roc(tmp_path / "roc1.png", np.ones(5, int), np.linspace(0, 1, 5), None, "x")
    for path in (roc, pr, cm, cm_counts, grid, one, undefined):
        assert _is_png(path), path
