"""Simulated label scarcity: keep the labels of only a fraction of the training patients.

The other training cases become unlabelled: their ids are recorded in the run's
splits.json as "train_unlabeled" and their label files are never read by training.
Validation and test are untouched, and the choice is seeded by `evaluation.split_seed`
only, so a supervised and a semi-supervised run with the same fraction see exactly the same
labelled cases.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

UNLABELED_SPLIT = "train_unlabeled"


def labeled_patients(patients: list[str], fraction: float, seed: int) -> set[str]:
    """`fraction` of `patients` (at least one), drawn reproducibly from `seed`."""
    unique = sorted(set(patients))
    if not unique:
        return set()
    keep = max(1, int(fraction * len(unique) + 0.5))
    order = np.random.default_rng(seed).permutation(len(unique))
    return {unique[i] for i in order[:keep]}


def hide_labels(
    splits: Mapping[str, list[str]],
    patient_of: Mapping[str, str],
    fraction: float,
    seed: int,
) -> dict[str, list[str]]:
    """Splits whose "train" keeps the labelled patients' cases (in their order) and whose
    "train_unlabeled" holds the other training cases; other splits are copied unchanged."""
    train = list(splits["train"])
    keep = labeled_patients([patient_of[c] for c in train], fraction, seed)
    out = {name: list(ids) for name, ids in splits.items()}
    out["train"] = [c for c in train if patient_of[c] in keep]
    out[UNLABELED_SPLIT] = [c for c in train if patient_of[c] not in keep]
    return out
