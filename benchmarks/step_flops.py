"""FLOPs of one training step (forward + backward) of a dentpy network (default: the
benchmark UNet), counted by torch.utils.flop_counter on the meta device (no computation),
and the fraction of a GPU's dense bf16 peak that a measured throughput reaches.

    python benchmarks/step_flops.py --patch 96 --batch 2 --samples-per-s 95.1 --gpu "H100 80GB HBM3"

A convolution's multiply-add counts as 2 FLOPs (torch's convention). Peaks are the vendors'
dense (no sparsity) bf16 tensor-core figures; an unknown GPU prints the FLOPs only.
"""

from __future__ import annotations

import argparse

# Dense bf16 tensor-core peak, TFLOP/s, by a substring of torch.cuda.get_device_name().
BF16_PEAK_TFLOPS = {
    "H200": 989.4,
    "H100 80GB HBM3": 989.4,  # SXM
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
    "RTX 4090": 165.2,
}


def peak_tflops(gpu_name: str) -> float | None:
    for key, value in BF16_PEAK_TFLOPS.items():
        if key in gpu_name:
            return value
    return None


def step_flops(
    patch: tuple[int, int, int],
    batch: int,
    channels: tuple[int, ...],
    out_channels: int,
    model: str = "unet",
) -> int:
    """FLOPs of forward + backward of one of dentpy's networks on one batch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dentpy.models import build_model
    from dentpy.spec import Model

    with torch.device("meta"):
        network = build_model(Model(name=model, channels=list(channels)), 1, out_channels)
        image = torch.zeros(batch, 1, *patch)
    counter = FlopCounterMode(display=False)
    with counter:
        network(image).float().sum().backward()
    return int(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patch", default="96", help="N (cubic) or I,J,K voxels")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--channels", default="16,32,64,128")
    parser.add_argument("--model", default="unet", help="unet | basic_unet | segresnet")
    parser.add_argument("--out-channels", type=int, default=4)
    parser.add_argument("--samples-per-s", type=float, default=None, help="measured throughput")
    parser.add_argument("--gpu", default="", help="GPU name (default: this machine's, if any)")
    args = parser.parse_args()
    channels = tuple(int(c) for c in args.channels.split(","))
    sizes = [int(v) for v in args.patch.split(",")]
    patch = (sizes * 3 if len(sizes) == 1 else sizes)[:3]
    flops = step_flops(
        (patch[0], patch[1], patch[2]), args.batch, channels, args.out_channels, args.model
    )
    per_sample = flops / args.batch
    print(
        f"{args.model} {list(channels)}, patch {patch}, batch {args.batch}: "
        f"{flops / 1e9:.1f} GFLOP per step (forward + backward), "
        f"{per_sample / 1e9:.1f} GFLOP per sample"
    )
    if args.samples_per_s is None:
        return
    achieved = per_sample * args.samples_per_s / 1e12
    name = args.gpu
    if not name:
        import torch

        name = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
    peak = peak_tflops(name)
    line = f"{args.samples_per_s:.1f} samples/s -> {achieved:.1f} TFLOP/s"
    if peak:
        line += f" = {100 * achieved / peak:.1f}% of the {name} dense bf16 peak ({peak:.0f})"
    print(line)


if __name__ == "__main__":
    main()
