"""Foreground-oversampled random patches from memory-mapped, preprocessed cases.

Dental targets are tiny (the IAN canal is under 0.1% of a scan's voxels), so a uniform
patch almost never contains one. A fraction of patches is centred on a random voxel of a
target class; the rest are uniform. The class is drawn uniformly among the classes the case
holds, or, with `class_probabilities` (one per foreground class, see dentpy.imbalance), with
those probabilities renormalised over the classes the case holds. All randomness comes from
one numpy Generator whose state is checkpointed, so a resumed run draws exactly the same
patches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dentpy.data.cache import PreparedCase, release_pages


def crop_padded(
    array: np.ndarray, start: Sequence[int], size: Sequence[int], fill: float
) -> np.ndarray:
    """array[start:start+size] on each axis, padding with `fill` where it leaves the array."""
    out = np.full(tuple(size), fill, dtype=array.dtype)
    src, dst = [], []
    for s, n, length in zip(start, size, array.shape, strict=True):
        lo, hi = max(s, 0), min(s + n, length)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = array[tuple(src)]
    return out


class PatchSampler:
    """Draws batches (B, 1, *patch) of image and label patches."""

    def __init__(
        self,
        cases: Sequence[PreparedCase],
        patch_size: Sequence[int],
        batch_size: int,
        foreground_fraction: float,
        seed: int,
        class_probabilities: Sequence[float] | None = None,
    ) -> None:
        self.cases = list(cases)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.batch_size = batch_size
        self.foreground_fraction = foreground_fraction
        self.rng = np.random.default_rng(seed)
        # Pad value per case: the recorded minimum; an older cache entry's is found on
        # first use (reading the whole volume once), not for every case up front, so RAM
        # does not grow with the dataset (the arrays are memory-mapped).
        self._fill: list[float | None] = [c.background for c in self.cases]
        self.class_probabilities = (
            None if class_probabilities is None else np.asarray(class_probabilities, float)
        )

    def _choose_class(self, classes: list[int]) -> int:
        """Index (0 = class 1) of the class a foreground patch is centred on."""
        if self.class_probabilities is None:
            # The historical rule, kept draw for draw so older runs resume identically.
            return int(self.rng.choice(classes))
        p = self.class_probabilities[classes]
        if p.sum() <= 0:
            return int(self.rng.choice(classes))
        return int(classes[int(self.rng.choice(len(classes), p=p / p.sum()))])

    def _start(self, case: PreparedCase) -> list[int]:
        shape = case.image.shape
        classes = [i for i, fg in enumerate(case.foreground) if len(fg)]
        if classes and self.rng.random() < self.foreground_fraction:
            positions = case.foreground[self._choose_class(classes)]
            centre = positions[int(self.rng.integers(len(positions)))]
            # Jitter so the structure is not always in the patch centre.
            jitter = self.rng.integers(
                -np.array(self.patch_size) // 4, np.array(self.patch_size) // 4 + 1
            )
            return [
                int(c + j - p // 2) for c, j, p in zip(centre, jitter, self.patch_size, strict=True)
            ]
        return [
            int(self.rng.integers(min(0, n - p), max(0, n - p) + 1))
            for n, p in zip(shape, self.patch_size, strict=True)
        ]

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for _ in range(self.batch_size):
            index = int(self.rng.integers(len(self.cases)))
            case = self.cases[index]
            start = self._start(case)
            images.append(crop_padded(case.image, start, self.patch_size, self._fill_of(index)))
            labels.append(crop_padded(case.label, start, self.patch_size, 0))
            # The crop is a copy: unmap what reading it mapped, so resident memory does
            # not grow with the number of cases sampled (benchmarks/memory_scaling.py).
            release_pages(case.image)
            release_pages(case.label)
        return np.stack(images)[:, None], np.stack(labels)[:, None]

    def use_cases(self, cases: Sequence[PreparedCase]) -> None:
        """Sample from `cases` from now on (the generator and its state are kept)."""
        self.cases = list(cases)
        self._fill = [c.background for c in self.cases]

    def _fill_of(self, index: int) -> float:
        fill = self._fill[index]
        if fill is None:
            fill = self._fill[index] = float(np.min(self.cases[index].image))
        return fill

    def state_dict(self) -> dict[str, object]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.rng.bit_generator.state = state["rng"]  # type: ignore[assignment]
