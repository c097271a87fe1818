"""Inference time per volume at equal Dice: dentpy's predict vs the MONAI tutorial.

The same trained weights (a dentpy run's best checkpoint), the same held-out volumes (the
run's test split, read from the NIfTI files), the same threads, three arms:

- dentpy: `read_image` + `dentpy.inference.predict_with_run`, as `dentpy predict` runs it
  (canonical orientation, resampling, percentile clip + z-score, the run's sliding window
  (`train.sw_window`, default auto: the whole volume in one pass when it fits a quarter
  of the memory limit), back to the file's grid);
- dentpy-patch: the same with `train.sw_window: patch` (roi = the run's patch, overlap
  0.5, Gaussian), i.e. the window alone is what differs from dentpy;
- MONAI: the tutorial pattern: LoadImaged, EnsureChannelFirstd, Orientationd("RAS"),
  Spacingd, ClipIntensityPercentilesd, NormalizeIntensityd, sliding_window_inference
  (roi = the run's patch, overlap 0.5, Gaussian, the run's sw batch size), then
  Activationsd (softmax), Invertd back to the file's grid and AsDiscreted (argmax).

Timed: file path -> class-index array on the file's grid, per volume, after one untimed
warm-up volume. Both pipelines preprocess the same way, so their Dice (on the file's grid,
peers.dice_per_class) should match; both are printed. Each arm of each repeat runs in its
own process (repeats interleaved), which gives its peak RSS.

    python benchmarks/inference_time.py --run /tmp/dentpy-time-to-quality/runs/ttq-STAMP
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/peers.py

import peers

ARMS = ("dentpy", "dentpy-patch", "monai")


def test_volumes(run: Path, split: str) -> list[tuple[str, str]]:
    """(image, label) paths of the run's split."""
    from dentpy.data.dataset import open_dataset
    from dentpy.spec import load_spec

    spec = load_spec(run / "spec.yaml")
    dataset = open_dataset(spec.input.data, spec.input.layout, spec.input.assume_spacing_mm)
    wanted = set(json.loads((run / "splits.json").read_text())[split])
    return [(str(r.image_path), str(r.label_path)) for r in dataset.records if r.case_id in wanted]


def monai_predictor(trained: Any):
    """image path -> class indices on the file's grid, the MONAI tutorial way."""
    from monai.inferers import sliding_window_inference
    from monai.transforms import (
        Activationsd,
        AsDiscreted,
        ClipIntensityPercentilesd,
        Compose,
        EnsureChannelFirstd,
        Invertd,
        LoadImaged,
        NormalizeIntensityd,
        Orientationd,
        Spacingd,
    )

    low, high = trained.plan.clip_percentiles
    transforms = Compose(
        [
            LoadImaged("image", image_only=True),
            EnsureChannelFirstd("image"),
            Orientationd("image", axcodes="RAS"),
            Spacingd("image", pixdim=trained.plan.target_spacing_mm, mode="bilinear"),
            ClipIntensityPercentilesd("image", lower=low, upper=high),
            NormalizeIntensityd("image"),
        ]
    )
    post = Compose(
        [
            Activationsd("pred", softmax=True),
            Invertd("pred", transform=transforms, orig_keys="image", nearest_interp=False),
            AsDiscreted("pred", argmax=True),
        ]
    )

    # The tutorial's network is channels-first; load_trained gave it dentpy's layout.
    model = trained.model.to(memory_format=torch.contiguous_format)

    def predict(path: str) -> np.ndarray:
        data = transforms({"image": path})
        with torch.inference_mode():
            logits = sliding_window_inference(
                data["image"][None].to(trained.device),
                roi_size=tuple(trained.spec.train.patch_size),
                sw_batch_size=trained.spec.train.sw_batch_size,
                predictor=model,
                overlap=0.5,
                mode="gaussian",
            )
        data["pred"] = logits[0]  # type: ignore[index]
        return np.asarray(post(data)["pred"][0].cpu().numpy(), dtype=np.uint8)

    return predict


def dentpy_predictor(trained: Any, window: str):
    from dentpy.data.io import read_image
    from dentpy.inference import predict_with_run

    trained.spec.train.sw_window = window

    def predict(path: str) -> np.ndarray:
        return predict_with_run(trained, read_image(path)).array

    return predict


def worker(args: argparse.Namespace) -> None:
    from dentpy.data.io import read_label
    from dentpy.engine.run import load_trained
    from dentpy.preprocess import map_classes

    warnings.simplefilter("ignore")  # MONAI's deprecation notices, on every volume
    torch.set_num_threads(args.threads)
    trained = load_trained(args.run)
    volumes = test_volumes(args.run, args.split)
    if args.worker == "monai":
        predict = monai_predictor(trained)
    else:
        predict = dentpy_predictor(trained, "auto" if args.worker == "dentpy" else "patch")
    predict(volumes[0][0])  # warm-up: first-call allocations and kernel selection
    n_classes = len(trained.task.class_names)
    ids = [list(i) for i in trained.task.class_label_ids]
    seconds, dice = [], []
    for image_path, label_path in volumes:
        start = time.perf_counter()
        prediction = predict(image_path)
        seconds.append(time.perf_counter() - start)
        truth = map_classes(np.asarray(read_label(label_path).array), ids)
        if prediction.shape != truth.shape:
            sys.exit(f"{args.worker}: prediction {prediction.shape} vs label {truth.shape}")
        dice.append(float(np.mean(peers.dice_per_class(prediction, truth, n_classes))))
    print(json.dumps({"seconds": seconds, "dice": dice}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a dentpy segmentation run")
    parser.add_argument("--split", default="test", help="the run's split to predict")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    torch.set_num_threads(args.threads)
    from dentpy.engine.run import load_trained

    trained = load_trained(args.run)
    n_volumes = len(test_volumes(args.run, args.split))
    print(peers.machine_line())
    from dentpy.data.io import read_image
    from dentpy.inference_window import window_for
    from dentpy.preprocess import prepare_image

    first = prepare_image(read_image(test_volumes(args.run, args.split)[0][0]), trained.plan)[0]
    trained.spec.train.sw_window = "auto"
    auto = window_for(trained.spec, trained.task.out_channels, first.shape, trained.device)
    print(
        f"{n_volumes} {args.split} volumes (network space {list(first.shape)}), patch "
        f"{list(trained.spec.train.patch_size)}; dentpy window {list(auto.roi)} ({auto.rule}); "
        f"dentpy-patch and MONAI: roi = patch, overlap 0.5, Gaussian, sw batch "
        f"{trained.spec.train.sw_batch_size}; checkpoint of iteration {trained.iteration}, "
        f"{args.repeats} interleaved repeats, one process per arm and repeat",
        flush=True,
    )
    seconds: dict[str, list[float]] = {arm: [] for arm in ARMS}
    dice: dict[str, list[float]] = {arm: [] for arm in ARMS}
    rss: dict[str, float] = dict.fromkeys(ARMS, 0.0)
    for _ in range(args.repeats):
        for arm in ARMS:
            argv = [f"--run={args.run}", f"--split={args.split}", f"--threads={args.threads}"]
            run = peers.run_measured(peers.python_command(Path(__file__), *argv, f"--worker={arm}"))
            if run["rc"] != 0:
                sys.exit(f"{arm} worker failed (exit {run['rc']})")
            seconds[arm] += run["result"]["seconds"]
            dice[arm] = run["result"]["dice"]  # the same in every repeat (deterministic)
            rss[arm] = max(rss[arm], run["peak_rss_mib"])
    medians = {arm: statistics.median(v) for arm, v in seconds.items()}
    names = {
        "dentpy": "dentpy predict",
        "dentpy-patch": "dentpy, patch windows",
        "monai": "MONAI tutorial",
    }
    for arm in ARMS:
        print(
            f"{names[arm]:22s} median {medians[arm]:.2f} s/volume (min {min(seconds[arm]):.2f}, "
            f"max {max(seconds[arm]):.2f}); mean Dice {np.mean(dice[arm]):.4f}; peak RSS "
            f"{rss[arm]:.0f} MiB"
        )
    for arm in ("dentpy", "dentpy-patch"):
        gaps = [a - b for a, b in zip(dice[arm], dice["monai"], strict=True)]
        print(
            f"{arm} - MONAI Dice per volume: mean {np.mean(gaps):+.4f}, min {min(gaps):+.4f}, "
            f"max {max(gaps):+.4f}; ratio MONAI / {arm} time: "
            f"{medians['monai'] / medians[arm]:.2f}x"
        )


if __name__ == "__main__":
    main()
