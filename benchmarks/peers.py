"""The peer pipelines dentpy's benchmarks compare against, and what the benchmarks share.

Every arm trains the same network (MONAI UNet 16-32-64-128, one residual unit), loss
(MONAI DiceCELoss, dentpy: its own Dice+CE), optimizer (AdamW) and gradient clipping on
the same preprocessed cases (dentpy's cache: canonical orientation, target spacing,
percentile clip + z-score); what differs is how patches are drawn and augmented:

- MONAI reference: the MONAI tutorial pattern: per-sample dictionary transforms
  (RandCropByPosNegLabeld, RandFlipd, RandAffined, RandScaleIntensityd,
  RandShiftIntensityd, RandAdjustContrastd, RandGaussianNoised) over in-memory volumes,
  collated by a DataLoader.
- TorchIO: a reconstruction of the TorchIO tutorial pattern (as the KnightsLab dental
  workshop notebooks use it; we do not have those notebooks): a tio.SubjectsDataset of
  ScalarImage/LabelMap subjects, per-volume preprocessing (ToCanonical, Resample,
  ZNormalization) and augmentation (RandomFlip, RandomAffine, RandomGamma, RandomNoise),
  a tio.Queue drawing patches with a tio.LabelSampler (foreground-centred patches with
  dentpy's foreground fraction), collated by a DataLoader.
- dentpy: memory-mapped cache, numpy patch sampler, batch augmentation on the device
  (dentpy.augment), the device's memory layout, as `dentpy train` does.

All DataLoaders use num_workers=0: every arm gets the same cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

# (image, label) batches: float32 (B, 1, I, J, K) and integer (B, 1, I, J, K) tensors.
Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]

# TorchIO's Queue: patches drawn from each volume once it is loaded and augmented, and how
# many patches it holds; the values of TorchIO's own tutorial.
SAMPLES_PER_VOLUME = 10
QUEUE_LENGTH = 300


def build(
    device: torch.device,
    out_channels: int = 4,
    lr: float = 1e-3,
    seed: int = 0,
    channels: Sequence[int] = (16, 32, 64, 128),
):
    """(model, loss, optimizer): the network, loss and optimizer every arm trains."""
    from monai.losses import DiceCELoss

    from dentpy.models import build_model
    from dentpy.spec import Model

    torch.manual_seed(seed)
    model = build_model(Model(channels=list(channels), num_res_units=1), 1, out_channels)
    loss = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-5)
    return model, loss, optimizer


# Set once by a benchmark's main(): the autocast dtype every arm uses (None = fp32).
AMP: list[torch.dtype | None] = [None]


def train_step(model, loss_fn, optimizer, image, label) -> torch.Tensor:
    model.train()
    with torch.autocast(image.device.type, dtype=AMP[0], enabled=AMP[0] is not None):
        loss = loss_fn(model(image), label)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
    optimizer.step()
    return loss.detach()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def arrays_of(cases) -> list[tuple[np.ndarray, np.ndarray]]:
    """In-memory (image, label) copies of prepared cases, as the peers' tutorials hold them."""
    return [(np.asarray(c.image).copy(), np.asarray(c.label).copy()) for c in cases]


def monai_batches(
    arrays: Sequence[tuple[np.ndarray, np.ndarray]],
    patch: int | Sequence[int],
    batch: int,
    seed: int = 0,
) -> Batches:
    """The MONAI tutorial pattern, endlessly (a new epoch when the loader is exhausted)."""
    from monai.data import DataLoader, Dataset
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandGaussianNoised,
        RandScaleIntensityd,
        RandShiftIntensityd,
        SpatialPadd,
    )

    size = (patch,) * 3 if isinstance(patch, int) else tuple(patch)
    keys = ["image", "label"]
    transforms = Compose(
        [
            SpatialPadd(keys, spatial_size=size),
            RandCropByPosNegLabeld(keys, "label", spatial_size=size, pos=1, neg=1, num_samples=1),
            RandFlipd(keys, prob=0.5, spatial_axis=0),
            RandAffined(
                keys,
                prob=0.5,
                rotate_range=(0.17, 0.17, 0.17),
                scale_range=(0.1, 0.1, 0.1),
                mode=("bilinear", "nearest"),
                padding_mode="border",
            ),
            RandScaleIntensityd("image", factors=0.1, prob=0.5),
            RandShiftIntensityd("image", offsets=0.1, prob=0.5),
            RandAdjustContrastd("image", gamma=(0.8, 1.25), prob=0.5),
            RandGaussianNoised("image", std=0.05, prob=1.0),
        ]
    )
    data = [{"image": image[None], "label": label[None]} for image, label in arrays]
    transforms.set_random_state(seed)
    torch.manual_seed(seed)  # the DataLoader's shuffling
    loader = DataLoader(Dataset(data, transforms), batch_size=batch, shuffle=True, num_workers=0)
    while True:
        for item in loader:
            yield torch.as_tensor(item["image"]).float(), torch.as_tensor(item["label"]).long()


def torchio_batches(
    arrays: Sequence[tuple[np.ndarray, np.ndarray]],
    patch: int | Sequence[int],
    batch: int,
    spacing_mm: float,
    n_classes: int,
    foreground_fraction: float = 0.5,
    seed: int = 0,
) -> Batches:
    """The TorchIO tutorial pattern (a reconstruction, see the module docstring), endlessly."""
    import torchio as tio
    from torch.utils.data import DataLoader

    torch.manual_seed(seed)  # TorchIO draws its random parameters from torch's generator
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    subjects = [
        tio.Subject(
            image=tio.ScalarImage(tensor=torch.from_numpy(image)[None], affine=affine),
            label=tio.LabelMap(tensor=torch.from_numpy(label)[None], affine=affine),
        )
        for image, label in arrays
    ]
    preprocessing = [tio.ToCanonical(), tio.Resample(spacing_mm), tio.ZNormalization()]
    # Volumes smaller than a patch (the tiny profile is 48 voxels deep): padded to the
    # patch size, as the MONAI reference's SpatialPadd and dentpy's sampler do.
    size = (patch,) * 3 if isinstance(patch, int) else tuple(patch)
    short = [max(0, p - n) for p, n in zip(size, arrays[0][0].shape, strict=True)]
    if any(short):
        padding = [p for n in short for p in (n // 2, n - n // 2)]
        preprocessing.append(tio.Pad(tuple(padding)))
    augmentation = [
        tio.RandomFlip(axes=(0,), flip_probability=0.5),
        tio.RandomAffine(scales=0.1, degrees=10, p=0.5),
        tio.RandomGamma(log_gamma=(float(np.log(0.8)), float(np.log(1.25))), p=0.5),
        tio.RandomNoise(std=(0.0, 0.05)),
    ]
    dataset = tio.SubjectsDataset(subjects, transform=tio.Compose(preprocessing + augmentation))
    # dentpy's foreground fraction: that share of patches centred on a (uniformly chosen)
    # class, the rest on background.
    probabilities = {0: 1.0 - foreground_fraction}
    probabilities.update({c: foreground_fraction / n_classes for c in range(1, n_classes + 1)})
    sampler = tio.LabelSampler(size, label_name="label", label_probabilities=probabilities)
    queue = tio.Queue(
        dataset,
        max_length=QUEUE_LENGTH,
        samples_per_volume=SAMPLES_PER_VOLUME,
        sampler=sampler,
        num_workers=0,
    )
    loader = DataLoader(queue, batch_size=batch, num_workers=0)  # the Queue shuffles
    while True:
        for item in loader:
            yield item["image"][tio.DATA].float(), item["label"][tio.DATA].long()


def dentpy_batches(
    cases,
    patch: int | Sequence[int],
    batch: int,
    device: torch.device,
    foreground_fraction: float = 0.5,
    swap_table: list[int] | None = None,
    seed: int = 0,
) -> Batches:
    """dentpy's data path as `dentpy train` runs it (batches already on `device`)."""
    from dentpy.augment import BatchAugment
    from dentpy.engine.device import memory_format_3d
    from dentpy.engine.sampling import PatchSampler
    from dentpy.spec import Augment

    size = (patch,) * 3 if isinstance(patch, int) else tuple(patch)
    sampler = PatchSampler(cases, size, batch, foreground_fraction=foreground_fraction, seed=seed)
    augment = BatchAugment(Augment(), swap_table, device, seed=seed + 1)
    while True:
        image, label = sampler.next_batch()
        image_t = torch.from_numpy(image).to(device, non_blocking=True)
        label_t = torch.from_numpy(label).to(device, non_blocking=True)
        image_t, label_t, _ = augment(image_t, label_t)
        yield image_t.contiguous(memory_format=memory_format_3d(device)), label_t.long()


def dice_per_class(prediction: np.ndarray, truth: np.ndarray, n_classes: int) -> list[float]:
    """Dice of classes 1..n_classes; a class absent from both counts as 1 (as dentpy's
    validation and evaluation define it, docs/metrics.md)."""
    scores = []
    for c in range(1, n_classes + 1):
        p, t = prediction == c, truth == c
        denominator = int(p.sum()) + int(t.sum())
        scores.append(1.0 if denominator == 0 else 2 * int((p & t).sum()) / denominator)
    return scores


def network_space_dice(
    model: torch.nn.Module,
    cases,
    patch: Sequence[int],
    device: torch.device,
    n_classes: int,
    sw_batch_size: int = 4,
) -> float:
    """The one metric every arm is scored with: mean over cases and classes of the Dice of
    the sliding-window prediction (dentpy's: Gaussian blending, overlap 0.5) on the
    prepared (network-space) volumes."""
    from dentpy.inference import sliding_window_probabilities

    model.eval()
    per_case = []
    for case in cases:
        probabilities = sliding_window_probabilities(
            model, case.image, patch, device, sw_batch_size, AMP[0]
        )
        prediction = probabilities.argmax(0).cpu().numpy()
        scores = dice_per_class(prediction, np.asarray(case.label), n_classes)
        per_case.append(float(np.mean(scores)))
    return float(np.mean(per_case))


def run_measured(argv: Sequence[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a child process; returns its exit code, wall seconds, peak RSS (MiB, the child's
    own ru_maxrss) and its last stdout line parsed as JSON when it is JSON."""
    start = time.monotonic()
    process = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    if process.stdout is None:
        raise RuntimeError("no stdout pipe")
    lines = []
    for line in process.stdout:  # forwarded as it comes: long arms show their progress
        lines.append(line)
        if not line.startswith("{"):
            print(f"    {line.rstrip()}", flush=True)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    result: dict[str, Any] = {}
    if lines and lines[-1].startswith("{"):
        result = json.loads(lines[-1])
    return {
        "rc": process.returncode,
        "seconds": round(time.monotonic() - start, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "result": result,
    }


def python_command(script: Path, *args: str) -> list[str]:
    return [sys.executable, str(script), *args]


def machine_line() -> str:
    import platform

    import monai

    try:
        import torchio

        tio_version = torchio.__version__
    except ImportError:
        tio_version = "not installed"
    return (
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__}, "
        f"MONAI {monai.__version__}, TorchIO {tio_version}, threads {torch.get_num_threads()}"
    )
