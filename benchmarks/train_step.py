"""Training throughput: dentpy's data + training step vs the MONAI and TorchIO patterns.

Same synthetic cases (tiny profile), same network (MONAI UNet), same loss (Dice+CE), same
optimizer (AdamW), same patch size, batch size and thread count, same kinds of
augmentation (foreground-oversampled crops, flip, rotation/scale, intensity, gamma, noise).
The three pipelines (benchmarks/peers.py):

- MONAI reference: the MONAI tutorial pattern: dictionary transforms per sample over
  in-memory volumes, collated by a DataLoader (num_workers=0: every arm gets the same cores).
- TorchIO: the TorchIO tutorial pattern (SubjectsDataset, per-volume preprocessing and
  augmentation, Queue + LabelSampler), a reconstruction, see benchmarks/peers.py.
- dentpy: memory-mapped cache, numpy patch sampler, batch augmentation on the device
  (dentpy.augment), the generic Trainer step, the device's memory layout
  (channels_last_3d on CPU, channels-first on CUDA: dentpy.engine.device).

Each arm of each repeat runs in its own process (repeats interleaved, so machine noise hits
every arm alike), which also gives each arm's peak RSS. Prints median samples/s of each
over repeats and the ratios. Usage:
    python benchmarks/train_step.py [--steps 30] [--repeats 3] [--patch 64] [--batch 2]
        [--device auto|cpu|cuda] [--bf16] [--arms monai,torchio,dentpy]
        [--channels 16,32,64,128] [--compile]
The patch is N (cubic) or I,J,K; --compile runs the dentpy arm's network through
torch.compile (3 more warm-up steps, its compilation left out of the timing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/peers.py

import peers

ARMS = ("monai", "torchio", "dentpy")
NAMES = {"monai": "MONAI reference", "torchio": "TorchIO", "dentpy": "dentpy"}
CLASS_IDS = ((5,), (2,), (3,))  # pulp, left IAN, right IAN


def make_cases(n: int, tmp: Path, profile: str, write: bool = True):
    """Prepared (cached) synthetic cases; `write=False` reads the ones an earlier call made."""
    from dentpy.data.cache import prepare_case
    from dentpy.data.case import CaseRecord
    from dentpy.data.io import write_volume
    from dentpy.data.synth import PROFILES, generate_case
    from dentpy.preprocess import PreprocessPlan

    spacing = PROFILES[profile].spacing_mm
    plan = PreprocessPlan(target_spacing_mm=(spacing, spacing, spacing))
    prepared = []
    for i in range(n):
        image_path, label_path = tmp / f"c{i}_0000.nii.gz", tmp / f"c{i}.nii.gz"
        if write:
            case = generate_case(seed=0, index=i, profile=profile)
            write_volume(case.image, image_path)
            write_volume(case.label, label_path)
        record = CaseRecord(f"c{i}", f"c{i}", image_path, label_path)
        prepared.append(prepare_case(record, plan, CLASS_IDS, tmp / "cache", record.load))
    return prepared


def measure(arm: str, cases, args, device: torch.device) -> float:
    """samples/s of one arm: `args.steps` timed steps after 2 warm-up steps."""
    model, loss_fn, optimizer = peers.build(device, len(CLASS_IDS) + 1, channels=args.channels)
    if arm == "dentpy":
        from dentpy.engine.device import memory_format_3d

        model = model.to(memory_format=memory_format_3d(device))  # as dentpy.train does
        if args.compile:
            model = torch.compile(model)
        batches = peers.dentpy_batches(cases, args.patch, args.batch, device, 0.5, [0, 1, 3, 2])
    elif arm == "monai":
        batches = peers.monai_batches(peers.arrays_of(cases), args.patch, args.batch)
    else:
        from dentpy.data.synth import PROFILES

        spacing = PROFILES[args.profile].spacing_mm
        arrays = peers.arrays_of(cases)
        batches = peers.torchio_batches(
            arrays, args.patch, args.batch, spacing, len(CLASS_IDS), foreground_fraction=0.5
        )
    start = 0.0
    warmup = 2 + 3 * args.compile  # compiling traces the first steps (train mode, then more)
    for i in range(args.steps + warmup):
        if i == warmup:  # exclude warm-up steps
            peers.synchronize(device)
            start = time.perf_counter()
        image, label = next(batches)
        peers.train_step(model, loss_fn, optimizer, image.to(device), label.to(device))
    peers.synchronize(device)
    return args.steps * args.batch / (time.perf_counter() - start)


def worker(args) -> None:
    from dentpy.engine.device import choose_device

    device = choose_device(args.device)
    peers.AMP[0] = torch.bfloat16 if args.bf16 else None
    args.patch = parse_sizes(args.patch, 3)
    args.channels = parse_sizes(args.channels)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every arm: fixed patch shapes
    cases = make_cases(args.cases, args.data, args.profile, write=False)
    print(json.dumps({"samples_per_s": measure(args.worker, cases, args, device)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--patch", default="64", help="N (cubic) or I,J,K voxels")
    parser.add_argument("--channels", default="16,32,64,128", help="the UNet's widths")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the dentpy arm's network"
    )
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument(
        "--profile", default="tiny", help="synthetic profile: tiny (1 mm) or ci (0.6 mm)"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for every arm")
    parser.add_argument(
        "--arms",
        default=None,
        help="comma-separated, from monai,torchio,dentpy (default: all; torchio only when "
        "it is installed)",
    )
    parser.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    arms = args.arms.split(",") if args.arms else default_arms()
    unknown = set(arms) - set(ARMS)
    if unknown:
        parser.error(f"unknown arms {sorted(unknown)}; choose from {', '.join(ARMS)}")
    from dentpy.engine.device import choose_device

    device = choose_device(args.device)
    print(
        f"device {device}{' ' + torch.cuda.get_device_name() if device.type == 'cuda' else ''}, "
        f"{'bf16 autocast' if args.bf16 else 'fp32'}, patch {args.patch}, "
        f"UNet {args.channels}{', dentpy compiled' if args.compile else ''}, "
        f"batch {args.batch}, {args.steps} timed steps x {args.repeats} repeats, "
        f"{args.profile} profile, one process per arm and repeat"
    )
    print(peers.machine_line())
    keys = ("steps", "patch", "batch", "cases", "channels")
    passed = [f"--{k}={getattr(args, k)}" for k in keys]
    passed += [f"--profile={args.profile}", f"--device={args.device}"]
    passed += ["--bf16"] if args.bf16 else []
    passed += ["--compile"] if args.compile else []
    rates: dict[str, list[float]] = {arm: [] for arm in arms}
    rss: dict[str, list[float]] = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory() as tmp:
        make_cases(args.cases, Path(tmp), args.profile)
        for _ in range(args.repeats):  # interleaved so machine noise hits every arm alike
            for arm in arms:
                run = peers.run_measured(
                    peers.python_command(
                        Path(__file__), *passed, f"--worker={arm}", f"--data={tmp}"
                    )
                )
                if run["rc"] != 0:
                    sys.exit(f"{arm} worker failed (exit {run['rc']})")
                rates[arm].append(run["result"]["samples_per_s"])
                rss[arm].append(run["peak_rss_mib"])
    medians = {arm: statistics.median(v) for arm, v in rates.items()}
    for arm in arms:
        listed = ", ".join(f"{v:.2f}" for v in rates[arm])
        print(
            f"{NAMES[arm]:16s} median {medians[arm]:.2f} samples/s  (runs: {listed}; "
            f"peak RSS {max(rss[arm]):.0f} MiB)"
        )
    if "dentpy" in medians and len(medians) > 1:
        ratios = [
            f"dentpy / {NAMES[arm].split()[0]}: {medians['dentpy'] / medians[arm]:.2f}x"
            for arm in arms
            if arm != "dentpy"
        ]
        print("ratio " + ", ".join(ratios))


def parse_sizes(text: str, repeat: int = 1) -> tuple[int, ...]:
    """'64' -> (64,) * repeat; '128,112,80' -> (128, 112, 80)."""
    sizes = tuple(int(v) for v in text.split(","))
    return sizes * repeat if len(sizes) == 1 else sizes


def default_arms() -> list[str]:
    try:
        import torchio  # noqa: F401
    except ImportError:
        print("TorchIO is not installed: its arm is skipped (pip install torchio)")
        return ["monai", "dentpy"]
    return list(ARMS)


if __name__ == "__main__":
    main()
