"""How much of the GPU's bf16 peak does dentpy's 3D training step reach, and which compute
settings win on this device?

For each network configuration (dentpy's model registry, patch, batch) it times real
training steps as `dentpy train` runs them (dentpy.planning.steps: batch augmentation on
the device, autocast, fp32 Dice+CE loss, gradient clipping, AdamW; random data, so the
data path is left out: benchmarks/train_step.py measures that) in six variants:

    fp32                      channels-first, no autocast
    fp32 + channels_last_3d   what dentpy trains with on a CPU without native bf16
    bf16                      channels-first, bf16 autocast (what dentpy trains with on CUDA)
    bf16 + channels_last_3d   what dentpy trains with on a CPU with native bf16
    bf16 + graph              bf16, the whole step replayed as one CUDA graph (CUDA only;
                              benchmarks/graph_step.py): is the step launch-bound?
    bf16 + cl + compile       torch.compile'd network (compilation left out of the timing)

and prints the median step time, samples/s, TFLOP/s from the counted FLOPs
(benchmarks/step_flops.py: forward + backward, a multiply-add = 2), the fraction of the
device's dense bf16 peak, and the peak allocated memory next to the planner's estimate
(dentpy.planning.memory, without the CUDA context). Runs on CPU too (small sizes).

    python benchmarks/gpu_peak.py [--steps 15] [--configs unet:16,32,64,128:96:2 ...]
        [--compile-configs 1] [--variants bf16,bf16+graph]

A config is MODEL:WIDTHS:PATCH:BATCH, PATCH being N or IxJxK.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/step_flops.py

from graph_step import graphed_training_steps
from step_flops import peak_tflops, step_flops

DEFAULT_CONFIGS = [
    "unet:16,32,64,128:96:2",  # the peer benchmarks' network (train_step.py)
    "unet:32,64,128,256,320:128x112x80:2",  # what `dentpy plan` picks for `ci` on CUDA
    "basic_unet:32,64,128,256,320:128:2",  # two convs per level at full resolution
]
VARIANTS = (  # (name, autocast, channels_last, compile, CUDA graph)
    ("fp32", False, False, False, False),
    ("fp32+cl", False, True, False, False),
    ("bf16", True, False, False, False),
    ("bf16+cl", True, True, False, False),
    ("bf16+graph", True, False, False, True),
    ("bf16+cl+compile", True, True, True, False),
)
OUT_CHANNELS = 4


def parse_config(text: str) -> tuple[str, list[int], tuple[int, int, int], int]:
    model, widths, patch, batch = text.split(":")
    sizes = [int(v) for v in patch.split("x")]
    full = sizes * 3 if len(sizes) == 1 else sizes
    return model, [int(c) for c in widths.split(",")], (full[0], full[1], full[2]), int(batch)


def spec_for(model: str, widths: list[int], patch: tuple[int, int, int], batch: int):
    from dentpy.spec import parse_spec

    return parse_spec(
        {
            "model": {"name": model, "channels": widths},
            "train": {"patch_size": list(patch), "batch_size": batch},
        }
    )


def estimated_bytes(spec, bf16: bool, device: torch.device) -> int:
    """The planner's training estimate for this configuration, as plan_memory.py uses it."""
    from dentpy.planning.memory import MemoryInputs, estimate_memory
    from dentpy.planning.network import network_sizes

    patch = tuple(spec.train.patch_size)
    sizes = network_sizes(
        spec.model.name, tuple(spec.model.channels), spec.model.num_res_units, OUT_CHANNELS, patch
    )
    inputs = MemoryInputs(device.type, bf16, spec.optimizer.name, OUT_CHANNELS, 0, 0, 1)
    estimate = estimate_memory(sizes, patch, spec.train.batch_size, inputs)
    return estimate.training - (estimate.process_overhead if device.type == "cuda" else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument(
        "--configs",
        nargs="+",
        default=DEFAULT_CONFIGS,
        help="MODEL:WIDTHS:PATCH:BATCH, PATCH being N or IxJxK (default: the planned UNet, "
        "the benchmark UNet, BasicUNet at batch 2 and 4)",
    )
    parser.add_argument("--steps", type=int, default=15, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument(
        "--compile-configs",
        type=int,
        default=1,
        help="torch.compile only the first N configs (each compile takes a minute or more)",
    )
    parser.add_argument(
        "--variants",
        default=",".join(name for name, *_ in VARIANTS),
        help="comma-separated, from " + ", ".join(name for name, *_ in VARIANTS),
    )
    args = parser.parse_args()
    chosen = args.variants.split(",")
    unknown = sorted(set(chosen) - {name for name, *_ in VARIANTS})
    if unknown:
        parser.error(f"unknown variants {unknown}")
    from dentpy.engine.device import choose_device
    from dentpy.planning.steps import training_steps

    device = choose_device("auto")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = peak_tflops(name) if device.type == "cuda" else None
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as dentpy.train does (fixed patch shapes)
    print(f"device {name}, torch {torch.__version__}, {args.steps} timed steps after warm-up")
    print(
        f"{'config':<42} {'variant':<16} {'s/step':>7} {'samples/s':>9} {'TFLOP/s':>8} "
        f"{'% peak':>6} {'peak MiB':>9} {'est. MiB':>9}"
    )
    for index, text in enumerate(args.configs):
        model, widths, patch, batch = parse_config(text)
        spec = spec_for(model, widths, patch, batch)
        flops = step_flops(patch, batch, tuple(widths), OUT_CHANNELS, model)
        for variant, bf16, channels_last, compiled, graphed in VARIANTS:
            if variant not in chosen:
                continue
            if compiled and index >= args.compile_configs:
                continue
            if graphed and device.type != "cuda":
                continue
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            amp = torch.bfloat16 if bf16 else None
            try:
                if graphed:
                    seconds = graphed_training_steps(
                        spec, OUT_CHANNELS, device, amp, args.steps, warmup=args.warmup
                    )
                else:
                    seconds = training_steps(
                        spec,
                        OUT_CHANNELS,
                        device,
                        amp,
                        args.steps,
                        warmup=args.warmup,
                        channels_last=channels_last,
                        compile_model=compiled,
                    )
            except Exception as error:  # a variant that fails is reported, the rest run on
                print(f"{text:<42} {variant:<16} failed: {type(error).__name__}: {error}")
                continue
            total = time.perf_counter() - started
            step = statistics.median(seconds)
            tflops = flops / step / 1e12
            share = f"{100 * tflops / peak:6.1f}" if peak else f"{'-':>6}"
            if device.type == "cuda":
                used = f"{torch.cuda.max_memory_allocated() / 2**20:9.0f}"
            else:
                used = f"{'-':>9}"
            estimate = estimated_bytes(spec, bf16, device) / 2**20
            print(
                f"{text:<42} {variant:<16} {step:7.4f} {batch / step:9.1f} {tflops:8.2f} "
                f"{share} {used} {estimate:9.0f}"
                + (f"  (with compilation: {total:.0f} s)" if compiled else ""),
                flush=True,
            )
    if peak:
        print(f"peak: {peak:.0f} TFLOP/s dense bf16 ({name}); FLOPs counted, not sampled")


if __name__ == "__main__":
    main()
