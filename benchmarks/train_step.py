"""Training throughput: dentpy's data + training step vs a plain MONAI reference loop.

Same synthetic cases (tiny profile), same network (MONAI UNet), same loss (Dice+CE), same
optimizer (AdamW), same patch size, batch size and thread count, same kinds of
augmentation (foreground-oversampled crops, flip, rotation/scale, intensity, gamma, noise).

- reference: the MONAI tutorial pattern: dictionary transforms per sample
  (RandCropByPosNegLabeld, RandFlipd, RandAffined, RandScaleIntensityd,
  RandShiftIntensityd, RandAdjustContrastd, RandGaussianNoised) over in-memory volumes,
  collated by a DataLoader (num_workers=0: both pipelines get the same two cores).
- dentpy: memory-mapped cache, numpy patch sampler, batch augmentation on the device
  (dentpy.augment), the generic Trainer step.

Prints median samples/s of each over repeats and the ratio. Usage:
    python benchmarks/train_step.py [--steps 30] [--repeats 3] [--patch 64] [--batch 2]
        [--device auto|cpu|cuda] [--bf16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_cases(n: int, tmp: Path, profile: str):
    from dentpy.data.cache import prepare_case
    from dentpy.data.case import CaseRecord
    from dentpy.data.io import write_volume
    from dentpy.data.synth import PROFILES, generate_case
    from dentpy.preprocess import PreprocessPlan

    spacing = PROFILES[profile].spacing_mm
    plan = PreprocessPlan(target_spacing_mm=(spacing, spacing, spacing))
    class_ids = ((5,), (2,), (3,))
    prepared = []
    for i in range(n):
        case = generate_case(seed=0, index=i, profile=profile)
        image_path = write_volume(case.image, tmp / f"c{i}_0000.nii.gz")
        label_path = write_volume(case.label, tmp / f"c{i}.nii.gz")
        record = CaseRecord(f"c{i}", f"c{i}", image_path, label_path)
        prepared.append(prepare_case(record, plan, class_ids, tmp / "cache", record.load))
    return prepared


def build(patch: int, device: torch.device):
    from monai.losses import DiceCELoss

    from dentpy.models import build_model
    from dentpy.spec import Model

    torch.manual_seed(0)
    model = build_model(Model(channels=[16, 32, 64, 128], num_res_units=1), 1, 4)
    loss = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return model, loss, optimizer


def step(model, loss_fn, optimizer, image, label) -> torch.Tensor:
    model.train()
    with torch.autocast(image.device.type, dtype=AMP[0], enabled=AMP[0] is not None):
        loss = loss_fn(model(image), label)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
    optimizer.step()
    return loss.detach()


# Set once in main(): the autocast dtype both pipelines use (None = fp32).
AMP: list[torch.dtype | None] = [None]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_monai(cases, patch: int, batch: int, steps: int, device: torch.device) -> float:
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

    keys = ["image", "label"]
    transforms = Compose(
        [
            SpatialPadd(keys, spatial_size=(patch,) * 3),
            RandCropByPosNegLabeld(
                keys, "label", spatial_size=(patch,) * 3, pos=1, neg=1, num_samples=1
            ),
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
    data = [
        {"image": np.asarray(c.image)[None].copy(), "label": np.asarray(c.label)[None].copy()}
        for c in cases
    ]
    transforms.set_random_state(0)
    loader = DataLoader(Dataset(data, transforms), batch_size=batch, shuffle=True, num_workers=0)
    model, loss_fn, optimizer = build(patch, device)
    done, start = 0, 0.0
    while done < steps + 2:
        for item in loader:
            if done == 2:  # exclude warm-up steps
                synchronize(device)
                start = time.perf_counter()
            image = torch.as_tensor(item["image"]).float().to(device)
            label = torch.as_tensor(item["label"]).long().to(device)
            step(model, loss_fn, optimizer, image, label)
            done += 1
            if done >= steps + 2:
                break
    synchronize(device)
    return steps * batch / (time.perf_counter() - start)


def run_dentpy(cases, patch: int, batch: int, steps: int, device: torch.device) -> float:
    from dentpy.augment import BatchAugment
    from dentpy.engine.sampling import PatchSampler
    from dentpy.spec import Augment

    sampler = PatchSampler(cases, (patch,) * 3, batch, foreground_fraction=0.5, seed=0)
    augment = BatchAugment(Augment(), [0, 1, 3, 2], device, seed=0)
    model, loss_fn, optimizer = build(patch, device)
    model = model.to(memory_format=torch.channels_last_3d)  # as dentpy.train does
    start = 0.0
    for i in range(steps + 2):
        if i == 2:
            synchronize(device)
            start = time.perf_counter()
        image, label = sampler.next_batch()
        image_t = torch.from_numpy(image).to(device, non_blocking=True)
        label_t = torch.from_numpy(label).to(device, non_blocking=True)
        image_t, label_t, _ = augment(image_t, label_t)
        image_t = image_t.contiguous(memory_format=torch.channels_last_3d)
        step(model, loss_fn, optimizer, image_t, label_t.long())
    synchronize(device)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument(
        "--profile", default="tiny", help="synthetic profile: tiny (1 mm) or ci (0.6 mm)"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for both pipelines")
    args = parser.parse_args()
    from dentpy.engine.device import choose_device

    device = choose_device(args.device)
    AMP[0] = torch.bfloat16 if args.bf16 else None
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # both pipelines: fixed patch shapes
    print(
        f"device {device}{' ' + torch.cuda.get_device_name() if device.type == 'cuda' else ''}, "
        f"{'bf16 autocast' if args.bf16 else 'fp32'}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, patch {args.patch}³, "
        f"batch {args.batch}, {args.steps} timed steps x {args.repeats} repeats, "
        f"{args.profile} profile"
    )
    with tempfile.TemporaryDirectory() as tmp:
        cases = make_cases(args.cases, Path(tmp), args.profile)
        ours, theirs = [], []
        for _ in range(args.repeats):  # interleaved so machine noise hits both alike
            theirs.append(run_monai(cases, args.patch, args.batch, args.steps, device))
            ours.append(run_dentpy(cases, args.patch, args.batch, args.steps, device))
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    for label, median, runs in (("MONAI reference", m_theirs, theirs), ("dentpy", m_ours, ours)):
        listed = ", ".join(f"{v:.2f}" for v in runs)
        print(f"{label:16s} median {median:.2f} samples/s  (runs: {listed})")
    print(f"ratio dentpy / MONAI: {m_ours / m_theirs:.2f}x")


if __name__ == "__main__":
    main()
