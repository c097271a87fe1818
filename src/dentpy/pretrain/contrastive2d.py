"""SimCLR contrastive pretraining for 2D classifiers.

Why contrastive rather than masked-image reconstruction for small grayscale X-rays: the
classifier's output is one linear layer on globally pooled features, and contrastive
learning trains exactly that pooled feature to be stable under crops, flips and exposure
changes while telling images apart; reconstruction mostly trains local texture and a
decoder the classifier throws away (MAE-style gains need long schedules and ViTs, SimCLR
works with ResNet-style CNNs). Each image gives two views (random resized crop, then the
spec's 2D augmentation made stronger); the network's final linear layer, a ReLU and a
linear layer form the projection head, and NT-Xent pulls the two views of an image
together against every other image in the batch. Only the layers before the final linear
layer are kept for fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dentpy.errors import InputDataError
from dentpy.pretrain.loop import LossLog, fit

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Spec

# Width of the network's own final layer during pretraining (the projection's hidden layer).
HIDDEN = 128
DEFAULT_BATCH = 32
CROP_AREA = (0.35, 1.0)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (Chen et al. 2020): for each of the 2N views, cross-entropy of picking its
    partner among the other 2N - 1 views by cosine similarity / temperature."""
    import torch

    n = z1.shape[0]
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    similarity = z @ z.T / temperature
    self_pairs = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    similarity = similarity.masked_fill(self_pairs, float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return torch.nn.functional.cross_entropy(similarity, partner)


def random_resized_crop(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random crop of CROP_AREA of each image (aspect 3:4 to 4:3), resized back."""
    import torch

    n = images.shape[0]
    area = CROP_AREA[0] + (CROP_AREA[1] - CROP_AREA[0]) * torch.rand(n, generator=generator)
    log_aspect = (torch.rand(n, generator=generator) * 2 - 1) * float(np.log(4 / 3))
    aspect = torch.exp(log_aspect)
    width = torch.sqrt(area * aspect).clamp(max=1.0)
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    shift_x = (torch.rand(n, generator=generator) * 2 - 1) * (1 - width)
    shift_y = (torch.rand(n, generator=generator) * 2 - 1) * (1 - height)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = width, shift_x
    theta[:, 1, 1], theta[:, 1, 2] = height, shift_y
    grid = torch.nn.functional.affine_grid(
        theta.to(images.device, images.dtype), list(images.shape), align_corners=False
    )
    return torch.nn.functional.grid_sample(
        images, grid, mode="bilinear", padding_mode="border", align_corners=False
    )


def view_augment(spec: Spec, device: torch.device, seed: int) -> object:
    """The spec's 2D augmentation with every transform on and stronger, as SimCLR needs
    views that differ enough for the task not to be solved by pixel statistics."""
    from dentpy.augment2d import BatchAugment2D

    cfg = spec.augment.model_copy(
        update={
            "probability": 0.8,
            "rotate_degrees": max(spec.augment.rotate_degrees, 15.0),
            "intensity_scale": max(spec.augment.intensity_scale, 0.3),
            "intensity_shift": max(spec.augment.intensity_shift, 0.3),
            "gamma_range": (0.7, 1.4),
            "noise_std": max(spec.augment.noise_std, 0.1),
        }
    )
    return BatchAugment2D(cfg, device, seed=seed)


@dataclass
class ContrastiveResult:
    model: torch.nn.Module
    log: LossLog
    # NT-Xent of random (untrained) features is about log(2N - 1); reported to compare.
    chance_loss: float


def pretrain_contrastive(
    spec: Spec, images: np.ndarray, device: torch.device, show_progress: bool
) -> ContrastiveResult:
    import torch

    from dentpy.engine import distributed
    from dentpy.models2d import build_classifier

    cfg = spec.pretrain
    batch = min(cfg.batch_size or DEFAULT_BATCH, len(images))
    if batch < 2:
        raise InputDataError(
            "contrastive pretraining needs at least 2 images per batch",
            expected="2 or more training-split or unlabelled images, pretrain.batch_size >= 2",
            found=f"{len(images)} images, batch size {cfg.batch_size}",
            fix="add images (input.unlabeled) or raise pretrain.batch_size",
        )
    torch.manual_seed(cfg.seed)
    network = build_classifier(spec.model.name, HIDDEN, 0.0)
    head = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(HIDDEN, cfg.projection_dim))
    model = torch.nn.Sequential(network, head).to(device)
    # Several processes: DDP, each rank its own images and views; a rank's negatives are
    # the other images of its own batch.
    trained = distributed.data_parallel(model)
    seed = distributed.rank_seed(cfg.seed)
    augment = view_augment(spec, device, seed=seed + 1)
    generator = torch.Generator().manual_seed(seed + 2)
    rng = np.random.default_rng(seed)
    pool = torch.from_numpy(np.ascontiguousarray(images))

    def step(iteration: int) -> torch.Tensor:
        trained.train()
        index = torch.from_numpy(rng.choice(len(pool), batch, replace=False))
        x = pool[index].to(device)
        views = [augment(random_resized_crop(x, generator)) for _ in range(2)]  # type: ignore[operator]
        return nt_xent(trained(views[0]), trained(views[1]), cfg.temperature)

    log = fit(
        model.parameters(),
        step,
        cfg.iterations,
        cfg.lr,
        cfg.weight_decay,
        cfg.time_budget_minutes or spec.constraints.time_budget_minutes,
        show_progress,
    )
    return ContrastiveResult(network, log, float(np.log(2 * batch - 1)))
