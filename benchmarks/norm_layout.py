"""Instance normalisation in channels_last_3d: would a layout-preserving variant make the
CPU training step faster?

PyTorch's instance norm makes a channels-last input channels-first, and the next
convolution copies it back, forward and backward. This times one training step of the
benchmark UNet (MONAI UNet 16-128, 64^3, batch 2, channels_last_3d, cross-entropy,
AdamW) with its InstanceNorm3d layers as they are and replaced by two equivalent
layout-preserving forms (same outputs to float rounding, no parameters, so the same
network):

    instance_norm   torch's InstanceNorm3d (what MONAI builds; the reference)
    group_norm      F.group_norm with one group per channel
    batch_norm      F.batch_norm of each sample in training mode, concatenated

Variants alternate within each repeat; medians and ratios to the reference are printed.

    python benchmarks/norm_layout.py [--repeats 3] [--steps 10] [--bf16]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

Norm = Callable[[torch.Tensor, float], torch.Tensor]


def _group_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    return F.group_norm(x, x.shape[1], None, None, eps)


def _batch_norm_per_sample(x: torch.Tensor, eps: float) -> torch.Tensor:
    samples = [
        F.batch_norm(x[i : i + 1], None, None, training=True, eps=eps) for i in range(len(x))
    ]
    return torch.cat(samples)


VARIANTS: dict[str, Norm | None] = {
    "instance_norm": None,
    "group_norm": _group_norm,
    "batch_norm": _batch_norm_per_sample,
}


class _Replaced(torch.nn.Module):
    def __init__(self, norm: Norm, eps: float) -> None:
        super().__init__()
        self.norm, self.eps = norm, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x, self.eps)


def _replace(module: torch.nn.Module, norm: Norm) -> None:
    for name, child in module.named_children():
        if isinstance(child, torch.nn.InstanceNorm3d):
            setattr(module, name, _Replaced(norm, child.eps))
        else:
            _replace(child, norm)


def step_seconds(norm: Norm | None, steps: int, bf16: bool) -> tuple[list[float], torch.Tensor]:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    model = UNet(3, 1, 3, (16, 32, 64, 128), (2, 2, 2), num_res_units=2, norm="instance")
    if norm is not None:
        _replace(model, norm)
    layout = torch.channels_last_3d
    model = model.to(memory_format=layout)  # type: ignore[call-overload]
    image = torch.randn(2, 1, 64, 64, 64).contiguous(memory_format=layout)
    labels = torch.randint(0, 3, (2, 64, 64, 64))
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    with torch.no_grad():
        first = model(image)  # for the equivalence check, before any update
    seconds = []
    for index in range(steps + 3):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(image)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if index >= 3:  # warm-up: oneDNN primitive creation
            seconds.append(time.perf_counter() - started)
    return seconds, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    outputs: dict[str, torch.Tensor] = {}
    for _ in range(args.repeats):
        for name, norm in VARIANTS.items():
            measured, outputs[name] = step_seconds(norm, args.steps, args.bf16)
            seconds[name].append(statistics.median(measured))
    reference = statistics.median(seconds["instance_norm"])
    print(
        f"torch {torch.__version__}, {args.threads} threads, "
        f"{'bf16' if args.bf16 else 'fp32'}, {args.repeats} repeats x {args.steps} steps"
    )
    for name, values in seconds.items():
        difference = (outputs[name] - outputs["instance_norm"]).abs().max().item()
        median = statistics.median(values)
        print(
            f"{name:<14} median {median:.4f} s/step (repeats: "
            f"{', '.join(f'{v:.4f}' for v in values)}); speed vs instance_norm "
            f"{reference / median:.2f}x; max output difference {difference:.1e}"
        )


if __name__ == "__main__":
    main()
