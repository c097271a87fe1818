"""Masked-volume reconstruction for 3D segmentation networks.

The segmentation architecture itself, with one output channel, sees a patch with
`mask_ratio` of it hidden in cubes and learns to reconstruct the original intensities; the
loss counts hidden voxels only. Filling in missing anatomy needs both the encoder's
context and the decoder's detail, so every layer but the output one learns something
useful for segmentation. Optionally the input gets a random gain/offset while the target
does not, which also teaches invariance to the scanner's intensity calibration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dentpy.engine.device import memory_format_3d
from dentpy.engine.sampling import crop_padded
from dentpy.pretrain.loop import LossLog, fit
from dentpy.pretrain.masking import batch_mask, masked_mse

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Spec

# Candidate patches drawn per sample; the most varied one is kept, so few patches are
# mostly air around the head, which would make the pretext task trivially easy.
CANDIDATES = 3
GAIN, OFFSET = 0.2, 0.2


class VolumePatchSampler:
    """Batches (B, 1, *patch) of random patches from network-space volumes, no labels."""

    def __init__(
        self, volumes: Sequence[np.ndarray], patch: Sequence[int], batch: int, seed: int
    ) -> None:
        self.volumes = list(volumes)
        self.patch = tuple(int(p) for p in patch)
        self.batch = batch
        self.rng = np.random.default_rng(seed)
        self._fill = [float(np.min(v)) for v in self.volumes]

    def _patch(self) -> np.ndarray:
        index = int(self.rng.integers(len(self.volumes)))
        volume = self.volumes[index]
        best: np.ndarray | None = None
        for _ in range(CANDIDATES):
            start = [
                int(self.rng.integers(min(0, n - p), max(0, n - p) + 1))
                for n, p in zip(volume.shape, self.patch, strict=True)
            ]
            crop = crop_padded(volume, start, self.patch, self._fill[index])
            if best is None or float(crop.std()) > float(best.std()):
                best = crop
        return best if best is not None else np.zeros(self.patch, dtype=np.float32)

    def next_batch(self) -> np.ndarray:
        return np.stack([self._patch() for _ in range(self.batch)])[:, None].astype(np.float32)


@dataclass
class MaskedResult:
    model: torch.nn.Module
    log: LossLog
    # Loss of predicting the mean (0 for z-scored intensities) at the hidden voxels, on
    # the example batch: a learnt model must beat it.
    example_baseline_loss: float
    example_loss: float
    example: tuple[np.ndarray, np.ndarray, np.ndarray]  # masked input, reconstruction, original


def corrupt(
    image: torch.Tensor, spec: Spec, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(network input, mask): gain/offset (optional), then hidden blocks filled."""
    import torch

    cfg = spec.pretrain
    n = image.shape[0]
    mask = batch_mask(n, image.shape[2:], cfg.mask_ratio, cfg.block_size, generator)
    mask = mask.to(image.device)
    corrupted = image
    if cfg.intensity_augment:
        shape = (n,) + (1,) * (image.dim() - 1)
        gain = 1 + GAIN * (2 * torch.rand(shape, generator=generator) - 1)
        offset = OFFSET * (2 * torch.rand(shape, generator=generator) - 1)
        corrupted = image * gain.to(image.device) + offset.to(image.device)
    if cfg.mask_fill == "noise":
        fill = torch.randn(image.shape, generator=generator).to(image.device)
    else:
        fill = torch.zeros_like(image)
    return torch.where(mask, fill, corrupted), mask


def pretrain_masked(
    spec: Spec,
    volumes: Sequence[np.ndarray],
    device: torch.device,
    show_progress: bool,
) -> MaskedResult:
    import torch

    from dentpy.engine import distributed
    from dentpy.models import build_model

    cfg = spec.pretrain
    patch = cfg.patch_size or spec.train.patch_size
    batch = cfg.batch_size or spec.train.batch_size
    torch.manual_seed(cfg.seed)
    model = build_model(spec.model, in_channels=1, out_channels=1).to(device)
    layout = memory_format_3d(device)  # as in `dentpy train`
    model = model.to(memory_format=layout)
    trained = distributed.data_parallel(model)  # several processes: DDP
    seed = distributed.rank_seed(cfg.seed)  # each rank its own patches and masks
    sampler = VolumePatchSampler(volumes, patch, batch, seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)

    def step(iteration: int) -> torch.Tensor:
        trained.train()
        image = torch.from_numpy(sampler.next_batch()).to(device)
        corrupted, mask = corrupt(image, spec, generator)
        prediction = trained(corrupted.contiguous(memory_format=layout))
        return masked_mse(prediction, image, mask)

    log = fit(
        model.parameters(),
        step,
        cfg.iterations,
        cfg.lr,
        cfg.weight_decay,
        cfg.time_budget_minutes or spec.constraints.time_budget_minutes,
        show_progress,
    )
    return MaskedResult(model, log, *_example(model, spec, volumes, patch, device))


def _example(
    model: torch.nn.Module,
    spec: Spec,
    volumes: Sequence[np.ndarray],
    patch: Sequence[int],
    device: torch.device,
) -> tuple[float, float, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A fixed batch (its own seed), reconstructed by the trained model."""
    import torch

    sampler = VolumePatchSampler(volumes, patch, 2, seed=spec.pretrain.seed + 1000)
    generator = torch.Generator().manual_seed(spec.pretrain.seed + 1001)
    image = torch.from_numpy(sampler.next_batch()).to(device)
    corrupted, mask = corrupt(image, spec, generator)
    model.eval()
    with torch.inference_mode():
        prediction = model(corrupted)
    baseline = float(masked_mse(torch.zeros_like(image), image, mask))
    loss = float(masked_mse(prediction, image, mask))
    middle = image.shape[-1] // 2
    planes = (corrupted, prediction, image)
    return baseline, loss, tuple(p[0, 0, :, :, middle].float().cpu().numpy() for p in planes)  # type: ignore[return-value]


def write_picture(panels: Sequence[np.ndarray], path: Path, zoom: int = 3) -> None:
    """Masked input | reconstruction | original side by side with titles, one gray scale
    (the original's 1st-99th percentile), so the reconstruction can be compared directly.
    `zoom` scales the figure with the patch (about `zoom` pixels per voxel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    original = panels[-1]
    low, high = np.percentile(original, [1, 99])
    side = max(2.2, zoom * original.shape[0] / 100)
    figure, axes = plt.subplots(1, len(panels), figsize=(side * len(panels), side + 0.4))
    titles = ("masked input", "reconstruction", "original")
    for axis, panel, title in zip(axes, panels, titles, strict=False):
        axis.imshow(panel, cmap="gray", vmin=low, vmax=max(float(high), float(low) + 1e-6))
        axis.set_title(title, fontsize=10)
        axis.axis("off")
    figure.suptitle("masked-volume pretraining: a held-out patch, middle slice", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
