"""Benchmark: dentpy's hd95_mm against MONAI's compute_hausdorff_distance.

Cases, all in a cubic volume at spacing (0.3, 0.3, 0.4) mm:

- tube (default): a nerve-canal-like tube (curved centreline, 2 mm radius); the
  prediction is a shifted, wobbling, slightly thinner tube. Sparse surfaces: KD-tree path.
- ellipsoid: a large smooth structure (a jaw-sized ellipsoid) against a shifted, smaller one.
- noise: speckle (30% of voxels at random) against speckle, like an untrained model's
  output: dense surfaces, distance-transform path.

Both implementations get the same masks (MONAI as ready-made float tensors, so tensor
conversion is not charged to it) and run single-threaded unless --threads says otherwise.

    python benchmarks/metrics.py --size 256 --repeats 5 [--case tube|ellipsoid|noise]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import edt
import numpy as np
import torch

from dentpy.metrics import hd95_mm


def tube(
    size: int, spacing: tuple[float, float, float], radius_mm: float, offset: float, wobble: float
) -> np.ndarray:
    """Voxels within radius_mm of a curved centreline (a canal running along axis 0)."""
    t = np.linspace(0.0, 1.0, 8 * size)
    centre = np.stack(
        [
            0.08 * size + 0.84 * size * t,
            0.5 * size + 0.22 * size * np.sin(1.5 * np.pi * t) + wobble * np.sin(9 * np.pi * t),
            0.5 * size + 0.12 * size * np.cos(np.pi * t),
        ],
        axis=1,
    )
    centre[:, 1:] += offset  # shifted across the canal, in both transverse axes
    seeds = np.ones((size, size, size), dtype=bool)
    index = np.clip(np.round(centre).astype(int), 0, size - 1)
    seeds[index[:, 0], index[:, 1], index[:, 2]] = False
    distance = edt.edt(seeds, anisotropy=spacing, parallel=os.cpu_count() or 1)
    return np.asarray(distance <= radius_mm)


def ellipsoid(size: int, centre_shift: float, scale: float) -> np.ndarray:
    axes = [np.arange(size, dtype=np.float32) - size / 2 for _ in range(3)]
    i, j, k = np.meshgrid(*axes, indexing="ij", sparse=True)
    radii = (0.4 * size * scale, 0.3 * size * scale, 0.2 * size * scale)
    return np.asarray(
        ((i - centre_shift) / radii[0]) ** 2 + (j / radii[1]) ** 2 + (k / radii[2]) ** 2 <= 1
    )


def make_case(case: str, size: int, spacing: tuple[float, float, float]) -> tuple:
    if case == "tube":
        true = tube(size, spacing, radius_mm=2.0, offset=0.0, wobble=0.0)
        return tube(size, spacing, radius_mm=1.8, offset=1.5, wobble=2.0), true
    if case == "ellipsoid":
        return ellipsoid(size, centre_shift=3.0, scale=0.95), ellipsoid(size, 0.0, 1.0)
    rng = np.random.default_rng(0)
    return rng.random((size,) * 3) < 0.3, rng.random((size,) * 3) < 0.3


def median_seconds(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    value = fn()  # warm-up: imports and first-touch allocations are not timed
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for MONAI")
    parser.add_argument("--case", choices=("tube", "ellipsoid", "noise"), default="tube")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spacing = (0.3, 0.3, 0.4)

    pred, true = make_case(args.case, args.size, spacing)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; dentpy single-threaded")
    print(f"case {args.case}, volume {true.shape}, spacing {spacing} mm")
    print(f"voxels: true {int(true.sum())}, pred {int(pred.sum())}")

    from monai.metrics import compute_hausdorff_distance

    pred_t = torch.from_numpy(pred)[None, None].float()
    true_t = torch.from_numpy(true)[None, None].float()

    def monai_hd95() -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MONAI's deprecation notice on every call
            value = compute_hausdorff_distance(
                pred_t, true_t, include_background=True, percentile=95, spacing=list(spacing)
            )
        return float(value.item())

    def dentpy_hd95() -> float:
        return hd95_mm(pred, true, spacing)

    t_dentpy, v_dentpy = median_seconds(dentpy_hd95, args.repeats)
    t_monai, v_monai = median_seconds(monai_hd95, args.repeats)
    print(f"dentpy hd95_mm:                    {t_dentpy:8.4f} s (median of {args.repeats})")
    print(f"monai compute_hausdorff_distance:  {t_monai:8.4f} s (median of {args.repeats})")
    print(f"speed-up: {t_monai / t_dentpy:.1f}x")
    print(f"HD95 dentpy {v_dentpy:.9f} mm, monai {v_monai:.9f} mm")
    print(f"difference {abs(v_dentpy - v_monai):.3e} mm (MONAI returns float32)")


if __name__ == "__main__":
    main()
