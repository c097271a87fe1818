"""Classification metrics (binary, multiclass, ordinal) with patient-level bootstrap CIs.

Pure numpy. Every metric has one written definition (METRIC_DEFINITIONS) and one written
rule for the inputs where it is undefined: such a metric is returned as ``None``, never NaN
and never a silent 0 or 1, so a report can print "undefined" with the reason and no mean
is ever taken over it. The undefined cases are:

- ``precision`` (PPV): no predicted positives (TP + FP = 0).
- ``recall`` / sensitivity: no positives in the reference (TP + FN = 0).
- ``specificity``: no negatives in the reference (TN + FP = 0).
- ``npv``: no predicted negatives (TN + FN = 0).
- ``f1``: 2TP + FP + FN = 0 (no positives and none predicted).
- ``balanced_accuracy`` (binary): either class absent from the reference.
- ``roc_auc``: only one class present in the reference.
- ``pr_auc`` (average precision): no positives in the reference.
- weighted kappa: expected disagreement is 0 (e.g. reference and prediction both constant
  and equal).
- anything on an empty input.

Macro averages are taken over the classes where the per-class metric is defined, and the
number of classes that entered each average is returned next to it (``n_defined``).

Prediction rule: a sample is predicted positive when its score is >= the threshold (the
same rule as scikit-learn's curves), multiclass predictions are the argmax of the
probabilities (ties -> the lowest class index).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dentpy.errors import InputDataError

METRIC_DEFINITIONS: dict[str, str] = {
    "accuracy": "(TP + TN) / N, multiclass: fraction of samples whose argmax class is right",
    "balanced_accuracy": (
        "mean per-class recall; binary: (sensitivity + specificity) / 2, undefined if a class "
        "is absent; multiclass: mean over the classes present in the reference (scikit-learn)"
    ),
    "precision": "PPV, TP / (TP + FP); undefined when nothing is predicted positive",
    "recall": "sensitivity, TP / (TP + FN); undefined when the reference has no positives",
    "sensitivity": "= recall, TP / (TP + FN); undefined when the reference has no positives",
    "specificity": "TN / (TN + FP); undefined when the reference has no negatives",
    "npv": "negative predictive value, TN / (TN + FN); undefined if nothing is predicted negative",
    "f1": "2TP / (2TP + FP + FN) (harmonic mean of precision and recall); undefined if 0/0",
    "roc_auc": (
        "area under the ROC curve = P(score of a random positive > score of a random "
        "negative), ties count 1/2; undefined when only one class is present"
    ),
    "pr_auc": (
        "average precision, sum_n (R_n - R_{n-1}) P_n over decreasing distinct thresholds "
        "(scikit-learn's step definition, no interpolation); undefined with no positives"
    ),
    "prevalence": "fraction of reference positives, (TP + FN) / N",
    "tp": "true positives (count)",
    "fp": "false positives (count)",
    "tn": "true negatives (count)",
    "fn": "false negatives (count)",
    "macro_precision": "mean of one-vs-rest precision over the classes where it is defined",
    "macro_recall": "mean of one-vs-rest recall over the classes where it is defined",
    "macro_specificity": "mean of one-vs-rest specificity over the classes where it is defined",
    "macro_f1": "mean of one-vs-rest F1 over the classes where it is defined",
    "macro_roc_auc": (
        "mean of one-vs-rest ROC-AUC (class probability as score) over the classes where it "
        "is defined (the class and at least one other class present)"
    ),
    "quadratic_weighted_kappa": (
        "Cohen's kappa on argmax grades with weights (i - j)^2: 1 - sum(w O) / sum(w E), "
        "E from the marginals; undefined when sum(w E) = 0"
    ),
    "linear_weighted_kappa": "Cohen's kappa on argmax grades with weights |i - j|",
    "mae_grade": "mean |argmax grade - true grade| (grades are the class indices 0..C-1)",
    "mae_expected_grade": "mean |sum_k k p_k - true grade| (expected grade under the probs)",
    "within_one_accuracy": "fraction of samples with |argmax grade - true grade| <= 1",
}


# --------------------------------------------------------------------------- validation


def _labels(y: np.ndarray, name: str, n_classes: int | None = None) -> np.ndarray:
    array = np.asarray(y)
    if array.ndim != 1:
        raise InputDataError(
            f"{name} must be one-dimensional",
            expected="an array of shape (N,)",
            found=f"shape {array.shape}",
            fix="flatten the labels, one entry per sample",
        )
    if array.size and not np.issubdtype(array.dtype, np.integer):
        whole = np.issubdtype(array.dtype, np.floating) and bool(np.all(np.mod(array, 1) == 0))
        if not (np.issubdtype(array.dtype, np.bool_) or whole):
            raise InputDataError(
                f"{name} must hold integer class labels",
                expected="integers 0..C-1",
                found=f"dtype {array.dtype}",
                fix="pass class indices, not probabilities or names",
            )
    array = array.astype(np.int64, copy=False)
    if n_classes is not None and array.size and (array.min() < 0 or array.max() >= n_classes):
        raise InputDataError(
            f"{name} has labels outside 0..{n_classes - 1}",
            expected=f"integers in 0..{n_classes - 1}",
            found=f"range {int(array.min())}..{int(array.max())}",
            fix="map class names to indices 0..C-1 before scoring",
        )
    return array


def _scores(s: np.ndarray, n: int, name: str = "scores") -> np.ndarray:
    array = np.asarray(s, dtype=np.float64)
    if array.shape != (n,):
        raise InputDataError(
            f"{name} do not match the labels",
            expected=f"shape ({n},)",
            found=f"shape {array.shape}",
            fix="pass one score per sample",
        )
    if not np.all(np.isfinite(array)):
        raise InputDataError(
            f"{name} contain NaN or inf",
            expected="finite scores",
            found=f"{int((~np.isfinite(array)).sum())} non-finite values",
            fix="check the model output (a diverged model gives NaN probabilities)",
        )
    return array


def _probs(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise InputDataError(
            "class probabilities must be a 2-D array with at least two classes",
            expected="shape (N, C), C >= 2",
            found=f"shape {p.shape}",
            fix="pass the softmax output, one row per sample",
        )
    y = _labels(y_true, "y_true", p.shape[1])
    if p.shape[0] != y.size:
        raise InputDataError(
            "probabilities and labels have different numbers of samples",
            expected=f"{y.size} rows",
            found=f"{p.shape[0]} rows",
            fix="pass one probability row per label",
        )
    if not np.all(np.isfinite(p)):
        raise InputDataError(
            "probabilities contain NaN or inf",
            expected="finite probabilities",
            found=f"{int((~np.isfinite(p)).sum())} non-finite values",
            fix="check the model output (a diverged model gives NaN probabilities)",
        )
    return y, p


def _div(num: float, den: float) -> float | None:
    """num / den, or None (undefined) when den == 0."""
    return None if den == 0 else float(num) / float(den)


def _mean_defined(values: list[float | None]) -> tuple[float | None, int]:
    defined = [v for v in values if v is not None]
    return (float(np.mean(defined)) if defined else None), len(defined)


# ------------------------------------------------------------------------ core metrics


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """C x C count matrix, rows = reference class, columns = predicted class (int64).

    Labels must be integers 0..n_classes-1. An empty input gives an all-zero matrix.
    """
    if n_classes < 1:
        raise ValueError("n_classes must be >= 1")
    t = _labels(y_true, "y_true", n_classes)
    p = _labels(y_pred, "y_pred", n_classes)
    if t.shape != p.shape:
        raise InputDataError(
            "y_true and y_pred have different lengths",
            expected=f"{t.size} predictions",
            found=f"{p.size}",
            fix="pass one prediction per reference label",
        )
    flat = np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def _cumulative_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TP and FP counts when predicting score >= t, for every distinct t, decreasing."""
    if y.size == 0:
        empty = np.zeros(0, dtype=np.float64)
        return empty, empty, empty
    # Order inside a block of tied scores is irrelevant: only block ends are kept.
    order = np.argsort(s)[::-1]
    s_sorted = s[order]
    last_of_block = np.flatnonzero(s_sorted[1:] != s_sorted[:-1])
    last_of_block = np.append(last_of_block, y.size - 1)
    tps = np.cumsum(y[order], dtype=np.float64)[last_of_block]
    fps = (last_of_block + 1.0) - tps
    return tps, fps, s_sorted[last_of_block]


def _auc_ap(y: np.ndarray, s: np.ndarray) -> tuple[float | None, float | None]:
    """ROC-AUC (trapezoid over all distinct thresholds = Mann-Whitney U / (P N) with ties
    counted 1/2) and average precision, from one sort. None where undefined."""
    n_pos = int(np.count_nonzero(y))
    n_neg = y.size - n_pos
    if n_pos == 0:
        return None, None
    tps, fps, _ = _cumulative_counts(y, s)
    d_tp = tps.copy()
    d_tp[1:] -= tps[:-1]
    ap = float(np.dot(d_tp, tps / (tps + fps))) / n_pos
    if n_neg == 0:
        return None, ap
    d_fp = fps.copy()
    d_fp[1:] -= fps[:-1]
    auc = float(np.dot(d_fp, tps - 0.5 * d_tp)) / (n_pos * n_neg)
    return auc, ap


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points (fpr, tpr, thresholds), thresholds decreasing.

    The first point is (0, 0) at threshold +inf (nothing predicted positive), then one
    point per distinct score t (predict positive when score >= t), ending at (1, 1). No
    intermediate points are dropped (scikit-learn's ``drop_intermediate=False``). A rate
    whose denominator is 0 (one class absent) is returned as NaN in the curve arrays only;
    the scalar ``roc_auc`` is then None.
    """
    y = _labels(y_true, "y_true", 2)
    s = _scores(scores, y.size)
    tps, fps, thresholds = _cumulative_counts(y, s)
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    n_pos, n_neg = tps[-1], fps[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = tps / n_pos if n_pos > 0 else np.full_like(tps, np.nan)
        fpr = fps / n_neg if n_neg > 0 else np.full_like(fps, np.nan)
    return fpr, tpr, np.r_[np.inf, thresholds]


def pr_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall points (precision, recall, thresholds), thresholds decreasing.

    One point per distinct score t (predict positive when score >= t); precision is
    always defined there (at least one sample is predicted positive). Recall is NaN when
    the reference has no positives. ``pr_auc`` (average precision) is the step sum
    sum_n (R_n - R_{n-1}) P_n over these points, with R_0 = 0.
    """
    y = _labels(y_true, "y_true", 2)
    s = _scores(scores, y.size)
    tps, fps, thresholds = _cumulative_counts(y, s)
    precision = tps / (tps + fps)
    n_pos = y.sum()
    recall = tps / n_pos if n_pos > 0 else np.full_like(tps, np.nan)
    return precision, recall, thresholds


def _counts_metrics(tp: int, fp: int, tn: int, fn: int) -> dict[str, float | None]:
    n = tp + fp + tn + fn
    recall = _div(tp, tp + fn)
    specificity = _div(tn, tn + fp)
    balanced = None if recall is None or specificity is None else (recall + specificity) / 2
    return {
        "accuracy": _div(tp + tn, n),
        "balanced_accuracy": balanced,
        "precision": _div(tp, tp + fp),
        "recall": recall,
        "sensitivity": recall,
        "specificity": specificity,
        "npv": _div(tn, tn + fn),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
    }


def binary_metrics(
    y_true: np.ndarray, p_positive: np.ndarray, threshold: float = 0.5
) -> dict[str, float | None]:
    """Binary metrics of scores ``p_positive`` against 0/1 labels at ``threshold``.

    Predicted positive: ``p_positive >= threshold``. Returns accuracy, balanced_accuracy,
    precision (PPV), recall (= sensitivity, also under that key), specificity, npv, f1,
    roc_auc and pr_auc (threshold-free, from the scores), the counts tp/fp/tn/fn, n and
    prevalence. Definitions: METRIC_DEFINITIONS; undefined metrics are None (module
    docstring lists when).
    """
    y = _labels(y_true, "y_true", 2)
    s = _scores(p_positive, y.size, "p_positive")
    pred = s >= threshold
    pos = y == 1
    tp = int(np.count_nonzero(pred & pos))
    fp = int(np.count_nonzero(pred & ~pos))
    fn = int(np.count_nonzero(~pred & pos))
    tn = y.size - tp - fp - fn
    out = _counts_metrics(tp, fp, tn, fn)
    out["roc_auc"], out["pr_auc"] = _auc_ap(y, s)
    out.update(tp=tp, fp=fp, tn=tn, fn=fn, n=int(y.size), prevalence=_div(tp + fn, y.size))
    return out


def multiclass_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Multiclass metrics of an (N, C) probability array against labels 0..C-1.

    Prediction = argmax. Returns accuracy, balanced_accuracy (mean recall over the classes
    present in the reference, scikit-learn's definition), macro_precision / macro_recall /
    macro_f1 / macro_specificity / macro_roc_auc (means over classes where defined; the
    count of classes that entered each is in ``n_defined``), ``per_class`` (class index ->
    one-vs-rest precision, recall, sensitivity, specificity, f1, roc_auc, pr_auc, support),
    ``confusion_matrix`` (list of lists, rows = reference) and ``n``.
    """
    y, p = _probs(y_true, probs)
    n_classes = p.shape[1]
    pred = p.argmax(axis=1)
    cm = confusion_matrix(y, pred, n_classes)
    n = int(y.size)
    per_class: dict[int, dict[str, float | None]] = {}
    for k in range(n_classes):
        tp = int(cm[k, k])
        fn = int(cm[k].sum()) - tp
        fp = int(cm[:, k].sum()) - tp
        tn = n - tp - fn - fp
        c = _counts_metrics(tp, fp, tn, fn)
        auc, ap = _auc_ap((y == k).astype(np.int64), p[:, k])
        per_class[k] = {
            "precision": c["precision"],
            "recall": c["recall"],
            "sensitivity": c["recall"],
            "specificity": c["specificity"],
            "f1": c["f1"],
            "roc_auc": auc,
            "pr_auc": ap,
            "support": tp + fn,
        }
    out: dict[str, Any] = {"n": n, "accuracy": _div(np.trace(cm), n)}
    present = [per_class[k]["recall"] for k in range(n_classes) if cm[k].sum() > 0]
    out["balanced_accuracy"], _ = _mean_defined(present)
    n_defined: dict[str, int] = {}
    for key in ("precision", "recall", "f1", "specificity", "roc_auc"):
        mean, count = _mean_defined([per_class[k][key] for k in range(n_classes)])
        out[f"macro_{key}"] = mean
        n_defined[f"macro_{key}"] = count
    out["n_defined"] = n_defined
    out["n_classes"] = n_classes
    out["per_class"] = per_class
    out["confusion_matrix"] = cm.tolist()
    return out


def _weighted_kappa(cm: np.ndarray, weights: np.ndarray) -> float | None:
    n = cm.sum()
    if n == 0:
        return None
    expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / n
    den = float(np.sum(weights * expected))
    if den == 0:
        return None
    return 1.0 - float(np.sum(weights * cm)) / den


def ordinal_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Ordinal (graded) metrics plus everything from ``multiclass_metrics``.

    Grades are the class indices 0..C-1 (their spacing is taken as equal). Kappas use the
    argmax grade and weights on the grade distance over all C grades, whether present or
    not (scikit-learn's ``cohen_kappa_score`` uses only the labels that occur unless
    ``labels=range(C)`` is passed). Adds quadratic_weighted_kappa, linear_weighted_kappa,
    mae_grade, mae_expected_grade (expected grade sum_k k p_k, probs taken as given) and
    within_one_accuracy; kappas are None when the expected disagreement is 0, MAEs None on
    empty input.
    """
    out = multiclass_metrics(y_true, probs)
    y, p = _probs(y_true, probs)
    n_classes = p.shape[1]
    pred = p.argmax(axis=1)
    cm = np.asarray(out["confusion_matrix"], dtype=np.float64)
    grades = np.arange(n_classes, dtype=np.float64)
    distance = np.abs(grades[:, None] - grades[None, :])
    out["quadratic_weighted_kappa"] = _weighted_kappa(cm, distance**2)
    out["linear_weighted_kappa"] = _weighted_kappa(cm, distance)
    error = np.abs(pred - y)
    n = y.size
    out["mae_grade"] = float(error.mean()) if n else None
    out["mae_expected_grade"] = float(np.abs(p @ grades - y).mean()) if n else None
    out["within_one_accuracy"] = float(np.mean(error <= 1)) if n else None
    return out


# ------------------------------------------------------------------ threshold selection


def choose_threshold(
    y_true: np.ndarray,
    p_positive: np.ndarray,
    method: Literal["youden", "sensitivity"] = "youden",
    target_sensitivity: float = 0.9,
) -> tuple[float, dict[str, Any]]:
    """Pick an operating threshold on VALIDATION data and say what it achieved there.

    Pass validation predictions only: a threshold chosen on the test set makes every
    test metric at that threshold optimistic. Candidates are the distinct scores t
    (predict positive when score >= t, so the returned threshold reproduces the reported
    numbers exactly).

    - ``"youden"``: maximise Youden's J = TPR - FPR; ties -> the higher threshold.
    - ``"sensitivity"``: the highest threshold whose sensitivity >= ``target_sensitivity``
      (the most specific operating point meeting the target). The lowest score always
      reaches sensitivity 1, so one always exists.

    Degenerate validation (only one class present, or no samples): returns 0.5 and a
    dict whose ``note`` says "validation has one class; threshold 0.5 used".

    The dict holds method, threshold, sensitivity, specificity, youden_j, n, n_positive
    and note (None unless degenerate).
    """
    if method not in ("youden", "sensitivity"):
        raise ValueError(f"method must be 'youden' or 'sensitivity', got {method!r}")
    if not 0.0 <= target_sensitivity <= 1.0:
        raise ValueError("target_sensitivity must lie in [0, 1]")
    y = _labels(y_true, "y_true", 2)
    s = _scores(p_positive, y.size, "p_positive")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    info: dict[str, Any] = {"method": method, "n": int(y.size), "n_positive": n_pos}
    if n_pos == 0 or n_neg == 0:
        info.update(
            threshold=0.5,
            sensitivity=None,
            specificity=None,
            youden_j=None,
            note="validation has one class; threshold 0.5 used",
        )
        return 0.5, info
    tps, fps, thresholds = _cumulative_counts(y, s)
    tpr, fpr = tps / n_pos, fps / n_neg
    if method == "youden":
        # argmax returns the first maximum, thresholds are decreasing -> highest threshold.
        index = int(np.argmax(tpr - fpr))
    else:
        # Small tolerance so that e.g. 9/10 counts as reaching 0.9.
        index = int(np.flatnonzero(tpr >= target_sensitivity - 1e-12)[0])
        info["target_sensitivity"] = target_sensitivity
    threshold = float(thresholds[index])
    info.update(
        threshold=threshold,
        sensitivity=float(tpr[index]),
        specificity=float(1.0 - fpr[index]),
        youden_j=float(tpr[index] - fpr[index]),
        note=None,
    )
    return threshold, info


# ---------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval.

    ``low``/``high`` are None when fewer than half of the resamples gave a defined metric;
    ``n_valid`` of ``n_boot`` resamples had a defined (not None, not NaN) value.
    """

    low: float | None
    high: float | None
    n_valid: int
    n_boot: int

    @property
    def fraction_valid(self) -> float:
        return self.n_valid / self.n_boot if self.n_boot else 0.0


def _group_layout(groups: np.ndarray, n_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = np.asarray(groups)
    if g.shape != (n_samples,):
        raise InputDataError(
            "bootstrap groups do not match the samples",
            expected=f"one group id per sample, shape ({n_samples},)",
            found=f"shape {g.shape}",
            fix="pass the patient id of every sample",
        )
    if n_samples == 0:
        raise InputDataError(
            "cannot bootstrap an empty sample",
            expected="at least one sample",
            found="0 samples",
            fix="check that the evaluation set is not empty",
        )
    _, inverse = np.unique(g, return_inverse=True)
    order = np.argsort(inverse, kind="mergesort")
    counts = np.bincount(inverse)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    return order, starts, counts


def bootstrap_cis(
    metrics: Callable[[np.ndarray], Mapping[str, float | None]],
    n_samples: int,
    groups: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Interval]:
    """Cluster-bootstrap percentile intervals of several metrics from one set of resamples.

    ``metrics(indices)`` returns a mapping name -> value for the samples at ``indices``
    (e.g. a slice of ``binary_metrics``); computing all metrics in one call per resample is
    much cheaper than one ``bootstrap_ci`` per metric. Resampling is as in
    ``bootstrap_ci``. Names missing from a resample's mapping count as undefined there.
    """
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    if not 0.0 < level < 1.0:
        raise ValueError("level must lie in (0, 1)")
    order, starts, counts = _group_layout(groups, n_samples)
    n_groups = counts.size
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    values: dict[str, list[float]] = {}
    names: list[str] = []
    for b in range(n_boot):
        chosen = draws[b]
        lengths = counts[chosen]
        total = int(lengths.sum())
        shift = np.repeat(starts[chosen] - (np.cumsum(lengths) - lengths), lengths)
        indices = order[shift + np.arange(total)]
        for name, value in metrics(indices).items():
            if name not in values:
                values[name] = []
                names.append(name)
            if value is not None and math.isfinite(float(value)):
                values[name].append(float(value))
    alpha = (1.0 - level) / 2.0
    result: dict[str, Interval] = {}
    for name in names:
        valid = values[name]
        if len(valid) * 2 < n_boot or not valid:
            result[name] = Interval(None, None, len(valid), n_boot)
            continue
        low, high = np.percentile(np.asarray(valid), [100 * alpha, 100 * (1 - alpha)])
        result[name] = Interval(float(low), float(high), len(valid), n_boot)
    return result


def bootstrap_ci(
    metric: Callable[[np.ndarray], float | None],
    n_samples: int,
    groups: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Patient-level (cluster) bootstrap percentile interval of one metric.

    Each resample draws as many groups (patients) as there are, with replacement; every
    sample of a drawn group enters together (a group drawn twice enters twice), so
    correlated samples of one patient (teeth, views, visits) are not treated as
    independent. ``metric`` is called with the int index array of the resample (indices
    into the caller's arrays, grouped by patient). The interval is the (1-level)/2 and
    (1+level)/2 percentiles (linear interpolation) of the defined values; resamples where
    the metric is None or NaN are skipped and counted (``n_valid`` of ``n_boot``). With
    fewer than 50 % defined resamples, low and high are None. Deterministic for a seed.
    """
    result = bootstrap_cis(
        lambda idx: {"metric": metric(idx)}, n_samples, groups, n_boot, seed, level
    )
    return result["metric"]
