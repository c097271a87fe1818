"""Bootstrap CIs of per-class means over cases (dentpy.metrics.case_ci)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dentpy.metrics.case_ci import class_mean_cis


def _rows(values: list[float], cls: str = "pulp") -> list[dict[str, object]]:
    return [{"case_id": f"c{i}", "class": cls, "dice": v} for i, v in enumerate(values)]


def test_constant_values_give_a_point_interval() -> None:
    ci = class_mean_cis(_rows([0.8] * 6), metrics=["dice"])
    assert ci["pulp"]["dice"]["low"] == pytest.approx(0.8)
    assert ci["pulp"]["dice"]["high"] == pytest.approx(0.8)
    assert ci["pulp"]["dice"]["n_cases"] == 6


def test_interval_agrees_with_scipy_percentile_bootstrap() -> None:
    values = np.random.default_rng(3).beta(5, 2, size=40)
    ours = class_mean_cis(_rows(list(values)), metrics=["dice"], n_boot=20000)["pulp"]["dice"]
    ref = stats.bootstrap(
        (values,), np.mean, n_resamples=20000, method="percentile", random_state=1
    ).confidence_interval
    width = ref.high - ref.low
    assert abs(ours["low"] - ref.low) < 0.05 * width
    assert abs(ours["high"] - ref.high) < 0.05 * width
    assert ours["low"] < values.mean() < ours["high"]


def test_cases_of_one_patient_are_resampled_together() -> None:
    # Patient A's two scans score 1, patient B's two score 0: resampling patients can only
    # give means 0, 0.5 or 1; resampling scans independently would also give 0.25, 0.75.
    rows = _rows([1.0, 1.0, 0.0, 0.0])
    patients = {"c0": "A", "c1": "A", "c2": "B", "c3": "B"}
    grouped = class_mean_cis(rows, metrics=["dice"], n_boot=4000, level=0.5, patients=patients)
    independent = class_mean_cis(rows, metrics=["dice"], n_boot=4000, level=0.5)
    assert grouped["pulp"]["dice"]["low"] in (0.0, 0.5)
    assert independent["pulp"]["dice"]["low"] == pytest.approx(0.25)


def test_classes_are_separate_and_seeded() -> None:
    rows = _rows([0.1, 0.9, 0.5], "pulp") + _rows([0.7, 0.7, 0.7], "canal")
    first = class_mean_cis(rows, metrics=["dice"])
    assert first == class_mean_cis(rows, metrics=["dice"])
    assert first["canal"]["dice"]["low"] == pytest.approx(0.7)
    assert first["pulp"]["dice"]["low"] < first["pulp"]["dice"]["high"]
    assert class_mean_cis(rows, n_boot=0) == {}


def test_non_finite_values_are_refused() -> None:
    with pytest.raises(ValueError, match="non-finite dice"):
        class_mean_cis(_rows([0.5, float("nan")]), metrics=["dice"])
