"""Time one training step (forward, backward, AdamW) of each 2D classifier dentpy offers,
on the classification templates' input (1 x 128 x 96, batch 32), and print each median
against tiny_cnn's. Why the templates default to tiny_cnn on a CPU.

Usage:
    python benchmarks/classifier_step.py [--repeats 5] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def step_seconds(name: str, device: torch.device, repeats: int) -> float:
    from dentpy.losses_classification import build_classification_loss
    from dentpy.models2d import build_classifier

    torch.manual_seed(0)
    model = build_classifier(name, 2).to(device)
    loss_fn = build_classification_loss("ce", 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(32, 1, 128, 96, device=device)
    labels = torch.randint(0, 2, (32,), device=device)
    times = []
    for i in range(repeats + 1):  # the first step warms up
        start = time.perf_counter()
        loss = loss_fn(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    from dentpy.engine.device import choose_device

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", default="tiny_cnn,resnet18")
    args = parser.parse_args()
    device = choose_device(args.device)
    print(f"device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}")
    baseline = None
    for name in args.models.split(","):
        seconds = step_seconds(name, device, args.repeats)
        baseline = baseline or seconds
        print(f"{name:16s} median {seconds:.3f} s/step  ({seconds / baseline:.1f}x tiny_cnn)")


if __name__ == "__main__":
    main()
