"""Patient-level train / validation / test splits.

A patient never sits in two splits (two scans of one patient in train and test would
flatter every metric). Model selection uses `val` only; `test` is touched by `evaluate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from dentpy.errors import InputDataError

SPLITS = ("train", "val", "test")


def split_by_patient(
    case_patients: Mapping[str, str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, list[str]]:
    """Case ids per split, grouping cases by patient. Deterministic for a seed."""
    patients = sorted(set(case_patients.values()))
    need = 1 + 1 + (1 if test_fraction > 0 else 0)
    if len(patients) < need:
        raise InputDataError(
            f"too few patients to split: {len(patients)}",
            expected=f"at least {need} patients (train, val{', test' if test_fraction else ''})",
            found=f"{len(patients)} patient(s) with labels",
            fix="add labelled cases, or set evaluation.test_fraction=0 for a smoke test",
        )
    order = np.random.default_rng(seed).permutation(len(patients))
    shuffled = [patients[i] for i in order]
    n_test = max(1, round(test_fraction * len(patients))) if test_fraction > 0 else 0
    n_val = max(1, round(val_fraction * len(patients)))
    n_val = min(n_val, len(patients) - n_test - 1)
    groups = {
        "test": set(shuffled[:n_test]),
        "val": set(shuffled[n_test : n_test + n_val]),
        "train": set(shuffled[n_test + n_val :]),
    }
    return {
        name: sorted(case for case, patient in case_patients.items() if patient in members)
        for name, members in groups.items()
    }


def check_split(splits: Mapping[str, Sequence[str]], case_patients: Mapping[str, str]) -> None:
    """Refuse predefined splits that put one patient in two splits or name unknown cases."""
    seen: dict[str, str] = {}
    for name, cases in splits.items():
        for case in cases:
            if case not in case_patients:
                raise InputDataError(
                    f"split '{name}' names a case that is not in the dataset: {case}",
                    expected="case ids of labelled cases",
                    found=case,
                    fix="regenerate the split file",
                )
            patient = case_patients[case]
            if patient in seen and seen[patient] != name:
                raise InputDataError(
                    f"patient {patient} appears in both '{seen[patient]}' and '{name}'",
                    expected="each patient in exactly one split",
                    found=f"case {case} in '{name}'",
                    fix="move all of this patient's cases into one split",
                )
            seen[patient] = name


def k_folds(case_patients: Mapping[str, str], k: int, seed: int) -> list[dict[str, list[str]]]:
    """K folds over patients: each fold's `val` is one k-th of the patients, `train` the
    rest. Deterministic for a seed; every patient is validated on exactly once."""
    patients = sorted(set(case_patients.values()))
    if not 2 <= k <= len(patients):
        raise InputDataError(
            f"cannot make {k} folds from {len(patients)} patients",
            expected=f"2 <= folds <= {len(patients)}",
            found=f"folds = {k}",
            fix="choose fewer folds, or add patients",
        )
    order = np.random.default_rng(seed).permutation(len(patients))
    groups: list[set[str]] = [set() for _ in range(k)]
    for rank, index in enumerate(order):
        groups[rank % k].add(patients[index])
    return [
        {
            "train": sorted(c for c, p in case_patients.items() if p not in group),
            "val": sorted(c for c, p in case_patients.items() if p in group),
        }
        for group in groups
    ]
