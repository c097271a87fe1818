"""Sliding-window size and overlap vs time and Dice, on a trained run's held-out cases.

Why `train.sw_window: auto` (dentpy.inference_window) predicts the whole volume in one
pass when it fits: every configuration below predicts the same prepared (network-space)
test volumes with the same weights, in one process, interleaved over repeats; printed are
the median seconds per volume, the speed-up over the patch tiling at 50% overlap
(nnU-Net's and dentpy's previous default) and the mean Dice (classes 1..C, as
peers.dice_per_class) with its per-case values.

    python benchmarks/time_to_quality.py --minutes 5 --arms dentpy   # makes a run
    python benchmarks/inference_window.py --run /tmp/dentpy-time-to-quality/runs/ttq-STAMP
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/peers.py

import peers


def configurations(
    patch: tuple[int, ...], auto: Callable[[tuple], tuple]
) -> list[tuple[str, Callable[[tuple], tuple]]]:
    """(name, image shape -> (roi, overlap, channels_last)); `auto`: dentpy's window."""
    p = patch[0]
    return [
        (f"{p}^3 overlap 0.5", lambda s: (patch, 0.5, False)),
        (f"{p}^3 overlap 0.5, channels_last", lambda s: (patch, 0.5, True)),
        (f"{p}^3 overlap 0.25", lambda s: (patch, 0.25, False)),
        (f"{int(1.5 * p)}^3 overlap 0.25", lambda s: ((int(1.5 * p),) * 3, 0.25, False)),
        ("dentpy sw_window: auto", lambda s: (*auto(s), False)),
        ("dentpy sw_window: auto, channels_last", lambda s: (*auto(s), True)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a dentpy segmentation run")
    parser.add_argument("--split", default="test")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from monai.inferers import sliding_window_inference

    from dentpy.data.cache import default_cache_dir
    from dentpy.data.dataset import open_dataset
    from dentpy.engine.run import load_trained
    from dentpy.inference_window import window_for
    from dentpy.train import prepare

    trained = load_trained(args.run)
    ids = json.loads((args.run / "splits.json").read_text())[args.split]
    spec = trained.spec
    dataset = open_dataset(spec.input.data, spec.input.layout, spec.input.assume_spacing_mm)
    cases = prepare(dataset, trained.task, trained.plan, ids, default_cache_dir())
    model = trained.model.eval()
    n_classes = len(trained.task.class_names)
    patch = tuple(spec.train.patch_size)

    def auto(shape: tuple) -> tuple:
        window = window_for(spec, trained.task.out_channels, shape, trained.device)
        print(f"  dentpy window for {list(shape)}: {list(window.roi)} ({window.rule})")
        return window.roi, window.overlap

    def predict(image: np.ndarray, roi: tuple, overlap: object, channels_last: bool) -> np.ndarray:
        x = torch.from_numpy(np.array(image, dtype=np.float32))[None, None]
        fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
        net = model.to(memory_format=fmt)  # type: ignore[call-overload]

        def run(w: torch.Tensor) -> torch.Tensor:
            return net(w.contiguous(memory_format=fmt))

        with torch.inference_mode():
            logits = sliding_window_inference(
                x, roi, spec.train.sw_batch_size, run, overlap=overlap, mode="gaussian"
            )
        return logits[0].argmax(0).numpy()

    spec.train.sw_window = "auto"
    configs = configurations(patch, auto)
    predict(cases[0].image, patch, 0.5, False)  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name, _ in configs}
    dice: dict[str, list[float]] = {name: [] for name, _ in configs}
    for repeat in range(args.repeats):
        for case in cases:
            for name, choose in configs:
                roi, overlap, channels_last = choose(case.image.shape)
                start = time.perf_counter()
                labels = predict(case.image, roi, overlap, channels_last)
                seconds[name].append(time.perf_counter() - start)
                if repeat == 0:
                    truth = np.asarray(case.label)
                    dice[name].append(
                        float(np.mean(peers.dice_per_class(labels, truth, n_classes)))
                    )
    print(peers.machine_line())
    print(
        f"{len(cases)} {args.split} cases, network-space shape {list(cases[0].image.shape)}, "
        f"patch {list(patch)}, sw batch {spec.train.sw_batch_size}, {args.repeats} repeats"
    )
    base = statistics.median(seconds[configs[0][0]])
    for name, _ in configs:
        median = statistics.median(seconds[name])
        per_case = " ".join(f"{d:.4f}" for d in dice[name])
        print(
            f"{name:38s} median {median:.3f} s  speed-up {base / median:.2f}x  "
            f"Dice {np.mean(dice[name]):.4f} ({per_case})"
        )


if __name__ == "__main__":
    main()
