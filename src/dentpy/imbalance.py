"""Class imbalance for segmentation: resolve `constraints.foreground_oversampling`,
`constraints.class_sampling` and `constraints.class_weights` from the training cases.

Dental targets are tiny (an IAN canal is under 0.1% of a scan's voxels, a pulp ~0.5%), so
uniform patches and an unweighted loss mostly learn background. What "auto" chooses
depends only on the class voxel fractions f_c of the training split, counted in network
space (after resampling) over up to `MAX_COUNTED_CASES` evenly chosen training cases:

- foreground_oversampling "auto": 0.33 when the rarest present foreground class covers
  at least 1% of the voxels, 0.67 at 0.01% or less, linear in log10(f_min) in between
  (rounded to 2 decimals). null keeps `train.foreground_fraction` (backward compatible).
- class_sampling "auto" / "inverse_size": p_c proportional to 1/sqrt(f_c) over the
  foreground classes with voxels (absent classes get 0), normalised to sum 1. "uniform":
  the historical rule, a uniform choice among the classes the drawn case holds.
- class_weights "auto": w_c = sqrt(f_max / f_c) clipped to [1, 10], background included
  (f_max: the commonest class, usually background, which gets 1; a class with no training
  voxels gets 10). "none": no weights.

Resolution is deterministic (same cases, same values) and its result is recorded in the
run's plan.json (`imbalance`) and train_summary.json, so a user sees what auto chose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dentpy.errors import SpecError

if TYPE_CHECKING:
    from dentpy.spec import Spec

MAX_COUNTED_CASES = 50
OVERSAMPLING_RANGE = (0.33, 0.67)
# log10 of the rarest class's fraction at which oversampling reaches its low / high end.
OVERSAMPLING_LOG10_FRACTIONS = (-2.0, -4.0)
MAX_CLASS_WEIGHT = 10.0


def class_voxel_counts(
    labels: Sequence[np.ndarray],
    n_classes: int,
    recorded: Sequence[Sequence[int] | None] | None = None,
) -> list[int]:
    """Voxels per class index 0..n_classes-1 (background first) over up to
    `MAX_COUNTED_CASES` evenly chosen label maps (network-space class indices).

    `recorded[i]`, when given, is label i's counts as the preprocessing cache recorded
    them: used instead of reading the (memory-mapped) label map."""
    indices = list(range(len(labels)))
    if len(indices) > MAX_COUNTED_CASES:
        picks = np.linspace(0, len(indices) - 1, MAX_COUNTED_CASES).round().astype(int)
        indices = [indices[i] for i in picks]
    total = np.zeros(n_classes, dtype=np.int64)
    for i in indices:
        known = recorded[i] if recorded is not None else None
        if known is not None and len(known) >= n_classes:
            counts = np.asarray(known, dtype=np.int64)
        else:
            counts = np.bincount(np.asarray(labels[i]).ravel(), minlength=n_classes)
        total += counts[:n_classes]
    return [int(c) for c in total]


def fractions_of(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def auto_oversampling(fractions: Sequence[float]) -> float:
    """Share of foreground-centred patches from the rarest present foreground class."""
    present = [f for f in fractions[1:] if f > 0]
    if not present:
        return OVERSAMPLING_RANGE[0]
    low_at, high_at = OVERSAMPLING_LOG10_FRACTIONS
    t = (low_at - math.log10(min(present))) / (low_at - high_at)
    t = min(max(t, 0.0), 1.0)
    low, high = OVERSAMPLING_RANGE
    return round(low + t * (high - low), 2)


def inverse_size_probabilities(fractions: Sequence[float]) -> list[float]:
    """Per foreground class: proportional to 1/sqrt(fraction); 0 for absent classes."""
    raw = [1.0 / math.sqrt(f) if f > 0 else 0.0 for f in fractions[1:]]
    total = sum(raw)
    if total == 0:
        return [1.0 / len(raw)] * len(raw) if raw else []
    return [r / total for r in raw]


def auto_class_weights(fractions: Sequence[float]) -> list[float]:
    """Per class, background first: sqrt(f_max / f_c) clipped to [1, MAX_CLASS_WEIGHT]."""
    commonest = max(fractions) if fractions else 0.0
    weights = []
    for f in fractions:
        w = math.sqrt(commonest / f) if f > 0 else MAX_CLASS_WEIGHT
        weights.append(round(min(max(w, 1.0), MAX_CLASS_WEIGHT), 4))
    return weights


@dataclass(frozen=True)
class ImbalancePlan:
    """What the sampler and the loss use. `class_probabilities` None = uniform among the
    classes a case holds (the historical rule); `class_weights` None = unweighted."""

    class_names: tuple[str, ...]
    class_fractions: tuple[float, ...]  # background first, network space
    foreground_fraction: float
    class_probabilities: tuple[float, ...] | None
    class_weights: tuple[float, ...] | None
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["class_fractions"] = dict(
            zip(("background", *self.class_names), self.class_fractions, strict=True)
        )
        data["rule"] = (
            "see dentpy.imbalance: oversampling 0.33-0.67 by log10 of the rarest class "
            "fraction (1% -> 0.33, 0.01% -> 0.67); sampling p ~ 1/sqrt(fraction); weights "
            "sqrt(f_max / f) clipped to [1, 10]"
        )
        return data


def _wrong_length(key: str, given: int, wanted: int, what: str) -> SpecError:
    return SpecError(
        f"constraints.{key} has {given} value(s)",
        expected=f"{wanted} values: {what}",
        found=f"{given} values",
        fix=f"list {wanted} values, or set constraints.{key}=auto",
    )


def resolve_imbalance(
    spec: Spec, class_names: Sequence[str], counts: Sequence[int]
) -> ImbalancePlan:
    """The spec's imbalance settings made concrete for `class_names` (foreground classes)
    from the training split's class voxel `counts` (background first)."""
    constraints = spec.constraints
    names = tuple(class_names)
    fractions = fractions_of(counts)
    oversampling = constraints.foreground_oversampling
    if oversampling is None:
        foreground = float(spec.train.foreground_fraction)
    elif oversampling == "auto":
        foreground = auto_oversampling(fractions)
    else:
        foreground = float(oversampling)

    sampling = constraints.class_sampling
    probabilities: tuple[float, ...] | None
    if sampling == "uniform":
        probabilities = None
    elif isinstance(sampling, list):
        if len(sampling) != len(names):
            raise _wrong_length(
                "class_sampling", len(sampling), len(names), f"one per class ({', '.join(names)})"
            )
        total = sum(sampling)
        probabilities = tuple(p / total for p in sampling)
    else:  # "auto" and "inverse_size"
        probabilities = tuple(inverse_size_probabilities(fractions))

    weights_setting = constraints.class_weights
    weights: tuple[float, ...] | None
    if weights_setting == "none":
        weights = None
    elif isinstance(weights_setting, list):
        if len(weights_setting) != len(names) + 1:
            raise _wrong_length(
                "class_weights",
                len(weights_setting),
                len(names) + 1,
                f"background, {', '.join(names)}",
            )
        weights = tuple(float(w) for w in weights_setting)
    else:
        weights = tuple(auto_class_weights(fractions))

    return ImbalancePlan(
        class_names=names,
        class_fractions=tuple(fractions),
        foreground_fraction=foreground,
        class_probabilities=probabilities,
        class_weights=weights,
        settings={
            "foreground_oversampling": oversampling,
            "class_sampling": sampling,
            "class_weights": weights_setting,
        },
    )
