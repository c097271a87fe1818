"""Which training images make up each classification batch.

Plain: a shuffled pass over the training images, reshuffled each pass. Balanced: each
image drawn with probability proportional to 1 / (its class's count), so every class
appears equally often on average (`constraints.class_imbalance: balanced_sampler`).
Both keep their generator state for exact resume.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ClassSampler:
    def __init__(self, labels: np.ndarray, batch_size: int, balanced: bool, seed: int) -> None:
        if labels.size == 0:
            raise ValueError("no training images to sample from")
        self.labels = labels
        self.batch_size = batch_size
        self.balanced = balanced
        self.rng = np.random.default_rng(seed)
        counts = np.bincount(labels)
        weights = 1.0 / counts[labels]
        self.weights = weights / weights.sum()
        self.order = self.rng.permutation(labels.size)
        self.position = 0

    def next_indices(self) -> np.ndarray:
        if self.balanced:
            return self.rng.choice(self.labels.size, self.batch_size, p=self.weights)
        chosen: list[int] = []
        while len(chosen) < self.batch_size:
            if self.position >= self.order.size:
                self.order = self.rng.permutation(self.labels.size)
                self.position = 0
            take = min(self.batch_size - len(chosen), self.order.size - self.position)
            chosen.extend(self.order[self.position : self.position + take].tolist())
            self.position += take
        return np.asarray(chosen, dtype=np.int64)

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "order": self.order.tolist(),
            "position": self.position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order = np.asarray(state["order"], dtype=np.int64)
        self.position = int(state["position"])
