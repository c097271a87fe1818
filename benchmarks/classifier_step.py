"""Time one training step (forward, backward, AdamW) of each 2D classifier dentpy offers,
on the classification templates' input (1 x 128 x 96, batch 32), and print each median
against tiny_cnn's. Why the templates default to tiny_cnn on a CPU.

--layouts compares instead, per classifier and precision (fp32, bf16 autocast), the
channels-first layout dentpy's 2D tasks train in with channels_last (two interleaved
rounds, medians): the measurement a per-device 2D layout choice would rest on.

Usage:
    python benchmarks/classifier_step.py [--repeats 5] [--device auto|cpu|cuda]
    python benchmarks/classifier_step.py --layouts --models tiny_cnn,resnet18,densenet121
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def step_seconds(
    name: str,
    device: torch.device,
    repeats: int,
    layout: torch.memory_format = torch.contiguous_format,
    bf16: bool = False,
) -> float:
    from dentpy.losses_classification import build_classification_loss
    from dentpy.models2d import build_classifier

    torch.manual_seed(0)
    model = build_classifier(name, 2).to(device).to(memory_format=layout)  # type: ignore[call-overload]
    loss_fn = build_classification_loss("ce", 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(32, 1, 128, 96, device=device).contiguous(memory_format=layout)
    labels = torch.randint(0, 2, (32,), device=device)
    times = []
    for i in range(repeats + 1):  # the first step warms up
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(images)
        loss = loss_fn(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare_layouts(names: list[str], device: torch.device, repeats: int) -> None:
    first, last = torch.contiguous_format, torch.channels_last
    for name in names:
        for bf16 in (False, True):
            rounds = [(first, last), (last, first)]  # interleaved: drift hits both
            seconds: dict[torch.memory_format, list[float]] = {first: [], last: []}
            for order in rounds:
                for layout in order:
                    seconds[layout].append(step_seconds(name, device, repeats, layout, bf16))
            a, b = statistics.median(seconds[first]), statistics.median(seconds[last])
            print(
                f"{name:16s} {'bf16' if bf16 else 'fp32'}  channels-first {a:.3f} s/step, "
                f"channels_last {b:.3f}: {a / b:.2f}x"
            )


def main() -> None:
    from dentpy.engine.device import choose_device

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", default="tiny_cnn,resnet18")
    parser.add_argument("--layouts", action="store_true", help="channels-first vs channels_last")
    args = parser.parse_args()
    device = choose_device(args.device)
    print(f"device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}")
    if args.layouts:
        compare_layouts(args.models.split(","), device, args.repeats)
        return
    baseline = None
    for name in args.models.split(","):
        seconds = step_seconds(name, device, args.repeats)
        baseline = baseline or seconds
        print(f"{name:16s} median {seconds:.3f} s/step  ({seconds / baseline:.1f}x tiny_cnn)")


if __name__ == "__main__":
    main()
