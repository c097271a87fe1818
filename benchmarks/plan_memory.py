"""The planner's memory estimate against measured peak memory.

For each memory limit the planner (dentpy.planning, all four sizes "auto") chooses a patch
size, batch size and channels; a fresh process then runs 3 real training steps of that
configuration (random data, the spec's loss and optimizer) and reports its peak: on CPU the
peak resident set size (VmHWM), on CUDA torch.cuda.max_memory_allocated (the CUDA context
is then left out of the estimate too). Prints estimate, measured and estimate / measured.

Two dataset profiles: "synthetic" plans on the tiny synthetic CBCT set (`dentpy synth
cbct`, made in a temporary folder; median case 88 x 72 x 48 voxels in network space);
"cbct-like" plans on stated inputs (20 cases of 160 x 128 x 96 voxels), where larger
limits give larger patches.

Usage:
    python benchmarks/plan_memory.py [--profile synthetic|cbct-like] [--limits 0.6 0.7 1.0]
        [--device cpu|cuda] [--threads 2] [--precision fp32|bf16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from dentpy.planning.chooser import Constraints, Plan, apply_plan, choose
from dentpy.planning.inputs import PlanInputs
from dentpy.planning.measure import measure_peak
from dentpy.planning.memory import MIB
from dentpy.spec import AUTO_SIZES, Spec, load_spec, parse_spec

CBCT_LIKE = PlanInputs(
    target_spacing_mm=(0.3, 0.3, 0.3),
    median_shape=(160, 128, 96),
    n_train_cases=20,
    dataset_voxels=20 * 160 * 128 * 96,
    largest_case_voxels=180 * 140 * 100,
    out_channels=2,
)


def synthetic_plans(
    limits: list[float], device: str, threads: int, precision: str
) -> list[tuple[Spec, Plan]]:
    from typer.testing import CliRunner

    from dentpy.cli import app
    from dentpy.planning.from_spec import plan_spec

    root = Path(tempfile.mkdtemp(prefix="plan-memory-"))
    os.environ["DENTPY_CACHE"] = str(root / "cache")
    runner = CliRunner()
    for args in (
        ["synth", "cbct", "--out", str(root / "D"), "--cases", "6", "--test-cases", "1"],
        ["init", "--template", "pulp-cbct", "--data", "D", "--out", str(root / "spec.yaml")],
    ):
        result = runner.invoke(app, args)
        if result.exit_code != 0:
            raise SystemExit(result.output)
    plans = []
    for limit in limits:
        overrides = [f"{name}=auto" for name in AUTO_SIZES] + [
            f"constraints.memory_limit_gb={limit}",
            f"constraints.device={device}",
            f"constraints.threads={threads}",
            f"constraints.precision={precision}",
        ]
        spec = load_spec(root / "spec.yaml", overrides)
        plans.append((spec, plan_spec(spec, measure_time=False)))
    return plans


def cbct_like_plans(
    limits: list[float], device: str, threads: int, precision: str
) -> list[tuple[Spec, Plan]]:
    plans = []
    for limit in limits:
        spec = parse_spec(
            {
                "train": {"patch_size": "auto", "batch_size": "auto", "iterations": "auto"},
                "model": {"channels": "auto"},
                "constraints": {"device": device, "threads": threads, "precision": precision},
            }
        )
        bf16 = precision == "bf16"
        constraints = Constraints(device, bf16, int(limit * 1e9), f"{limit} GB", None)
        plans.append((spec, choose(spec, CBCT_LIKE, constraints)))
    return plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=["synthetic", "cbct-like"], default="synthetic")
    parser.add_argument("--limits", type=float, nargs="+", default=None)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="bf16: autocast, as `precision: auto` chooses on CUDA and on CPUs with avx512_bf16",
    )
    args = parser.parse_args()
    default = [0.6, 0.7, 1.0] if args.profile == "synthetic" else [1.0, 1.5, 2.5]
    limits = args.limits or default
    make = synthetic_plans if args.profile == "synthetic" else cbct_like_plans
    print(
        f"profile {args.profile}, device {args.device}, {args.precision}, "
        "3 training steps per config"
    )
    header = f"{'limit GB':>8}  {'patch':>16} {'batch':>5}  {'channels':<22}"
    print(f"{header} {'estimate MiB':>12} {'measured MiB':>12} {'ratio':>6}")
    for (spec, plan), limit in zip(
        make(limits, args.device, args.threads, args.precision), limits, strict=True
    ):
        resolved = apply_plan(spec, plan)
        measured = measure_peak(resolved.to_dict(), plan.inputs.out_channels, args.device, 3)
        estimate = plan.memory.training
        if args.device == "cuda":
            estimate -= plan.memory.process_overhead  # not in max_memory_allocated
        peak = measured["peak_bytes"]
        print(
            f"{limit:>8g}  {list(plan.patch_size)!s:>16} {plan.batch_size:>5}  "
            f"{plan.channels!s:<22} {estimate / MIB:>12.0f} {peak / MIB:>12.0f} "
            f"{estimate / peak:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
