"""Built-in baselines a trained model must beat.

Threshold baseline: per class, the intensity window [low, high] that maximises Dice on the
*training* cases (never on the cases it is scored on), applied to each case's normalised
image. It answers "could a gray-value window do this?" — for pulp and canal, it should not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dentpy.preprocess import normalize_intensity

# Candidate window edges: percentiles of training intensities. 64 edges -> 2016 windows.
N_EDGES = 64
VOXELS_PER_CASE = 400_000


@dataclass(frozen=True)
class ThresholdWindow:
    class_name: str
    low: float
    high: float
    training_dice: float

    def apply(self, normalized_image: np.ndarray) -> np.ndarray:
        return (normalized_image >= self.low) & (normalized_image < self.high)


def fit_threshold_windows(
    images: Sequence[np.ndarray],
    class_masks: Sequence[Sequence[np.ndarray]],
    class_names: Sequence[str],
    clip_percentiles: tuple[float, float],
    seed: int = 0,
) -> list[ThresholdWindow]:
    """images: raw arrays; class_masks[case][class] boolean truths on the same grid."""
    rng = np.random.default_rng(seed)
    values, truths = [], []
    for image, masks in zip(images, class_masks, strict=True):
        normalized = normalize_intensity(image, clip_percentiles).ravel()
        take = (
            rng.choice(normalized.size, VOXELS_PER_CASE, replace=False)
            if normalized.size > VOXELS_PER_CASE
            else np.arange(normalized.size)
        )
        values.append(normalized[take])
        truths.append(np.stack([m.ravel()[take] for m in masks], axis=1))
    all_values = np.concatenate(values)
    all_truths = np.concatenate(truths)
    edges = np.unique(np.percentile(all_values, np.linspace(0, 100, N_EDGES)))
    edges[-1] = np.nextafter(edges[-1], np.inf)
    all_counts, _ = np.histogram(all_values, bins=edges)
    windows = []
    for c, name in enumerate(class_names):
        fg_counts, _ = np.histogram(all_values[all_truths[:, c]], bins=edges)
        total_fg = int(fg_counts.sum())
        cum_all = np.concatenate([[0], np.cumsum(all_counts)])
        cum_fg = np.concatenate([[0], np.cumsum(fg_counts)])
        # Dice of every window [edges[i], edges[j]) at once.
        tp = cum_fg[None, :] - cum_fg[:, None]
        predicted = cum_all[None, :] - cum_all[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            dice = np.where(predicted + total_fg > 0, 2 * tp / (predicted + total_fg), 0.0)
        dice = np.triu(dice, k=1)
        i, j = np.unravel_index(int(np.argmax(dice)), dice.shape)
        windows.append(ThresholdWindow(name, float(edges[i]), float(edges[j]), float(dice[i, j])))
    return windows
