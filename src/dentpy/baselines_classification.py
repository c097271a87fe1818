"""Baselines a trained classifier must beat before its numbers mean anything.

`MajorityBaseline` knows only the training class frequencies: its accuracy is the share
of the commonest class and its ROC-AUC is 0.5 by construction. A network that does not
clearly beat it has learned nothing (on imbalanced caries data, 85% accuracy can be
exactly this). `IntensityLogistic` sees only global gray-value statistics: if the network
merely matches it, the network is probably reading exposure, device or contrast
differences between the classes, not the lesion.
"""

from __future__ import annotations

import numpy as np

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
HISTOGRAM_BINS = 16


class MajorityBaseline:
    """Predicts the training class frequencies for every image."""

    def __init__(self) -> None:
        self.frequencies: np.ndarray | None = None

    def fit(self, labels: np.ndarray, n_classes: int) -> MajorityBaseline:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if labels.size == 0:
            raise ValueError("MajorityBaseline.fit needs at least one label")
        counts = np.bincount(labels, minlength=n_classes)[:n_classes].astype(np.float64)
        self.frequencies = counts / counts.sum()
        return self

    def predict_proba(self, n: int) -> np.ndarray:
        """(n, C): the same training frequencies for every image, so every ranking is a
        tie (AUC 0.5) and the argmax is the majority class."""
        if self.frequencies is None:
            raise RuntimeError("MajorityBaseline: call fit() first")
        return np.tile(self.frequencies, (int(n), 1))

    def predict(self, n: int) -> np.ndarray:
        return self.predict_proba(n).argmax(axis=1)


class IntensityLogistic:
    """Multinomial logistic regression on per-image gray-value statistics.

    Features: mean, std, percentiles 1/5/25/50/75/95/99, the fraction of pixels darker than
    mean - 1 std and brighter than mean + 1 std, and a 16-bin normalised histogram over the
    training images' 1st-99th percentile range (fixed at fit, so absolute brightness
    counts). Features are standardised with the training mean/std; weights are fitted with
    L2 penalty `l2` by full-batch LBFGS in float64 on the CPU, which is deterministic.
    """

    def __init__(self, l2: float = 1e-2, max_iter: int = 200) -> None:
        self.l2 = l2
        self.max_iter = max_iter
        self.hist_range: tuple[float, float] | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.weight: np.ndarray | None = None
        self.bias: np.ndarray | None = None

    def features(self, images: np.ndarray) -> np.ndarray:
        """(N, F) features of (N, H, W) images."""
        if self.hist_range is None:
            raise RuntimeError("IntensityLogistic: call fit() first")
        flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
        mean = flat.mean(axis=1, keepdims=True)
        std = flat.std(axis=1, keepdims=True)
        percentiles = np.percentile(flat, PERCENTILES, axis=1).T
        dark = (flat < mean - std).mean(axis=1, keepdims=True)
        bright = (flat > mean + std).mean(axis=1, keepdims=True)
        low, high = self.hist_range
        edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
        clipped = np.clip(flat, low, high)
        histograms = np.stack(
            [np.histogram(row, bins=edges)[0] / row.size for row in clipped]
        ).astype(np.float64)
        return np.concatenate([mean, std, percentiles, dark, bright, histograms], axis=1)

    def fit(self, images: np.ndarray, labels: np.ndarray, n_classes: int) -> IntensityLogistic:
        import torch

        images = np.asarray(images, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if images.ndim != 3 or len(images) != len(labels) or len(labels) == 0:
            raise ValueError("IntensityLogistic.fit expects images (N, H, W) and N labels")
        low, high = (float(v) for v in np.percentile(images, (1, 99)))
        self.hist_range = (low, high if high > low else low + 1.0)
        raw = self.features(images)
        self.mean = raw.mean(axis=0)
        std = raw.std(axis=0)
        self.std = np.where(std > 1e-12, std, 1.0)
        x = torch.from_numpy((raw - self.mean) / self.std)
        y = torch.from_numpy(labels)
        weight = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS(
            [weight, bias], max_iter=self.max_iter, line_search_fn="strong_wolfe"
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            log_p = torch.log_softmax(x @ weight + bias, dim=1)
            loss = -log_p.gather(1, y[:, None]).mean() + self.l2 * (weight**2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        self.weight = weight.detach().numpy().copy()
        self.bias = bias.detach().numpy().copy()
        return self

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        if self.weight is None or self.bias is None or self.mean is None or self.std is None:
            raise RuntimeError("IntensityLogistic: call fit() first")
        x = (self.features(np.asarray(images, dtype=np.float32)) - self.mean) / self.std
        z = x @ self.weight + self.bias
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.predict_proba(images).argmax(axis=1)
