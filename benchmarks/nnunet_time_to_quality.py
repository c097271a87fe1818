"""Time to quality against nnU-Net v2: the test Dice nnU-Net reaches in the same CPU budget
as a dentpy run, on the same split, scored the same way.

Takes a run made by benchmarks/time_to_quality.py (its dentpy arm: `pulp-cbct`, `ci`
profile, a time budget) and nnU-Net v2 installed in its own environment
(benchmarks/nnunet_env.sh: nnU-Net beside the CPU torch dentpy uses, without torchvision):

1. writes an nnU-Net raw dataset of the run's train + validation cases (images linked,
   labels reduced to the run's task: pulp 1, everything else 0) and its test cases;
2. `nnUNetv2_plan_and_preprocess -c 3d_fullres` (nnU-Net's own fingerprint, plan and
   preprocessing; timed, not charged, as dentpy's cache is not charged);
3. fold 0 = the run's train/validation split (splits_final.json);
4. benchmarks/nnunet_arm.py: nnU-Net's trainer for --minutes (default: the run's budget),
   in a process of its own (peak RSS);
5. `nnUNetv2_predict` of the test images with the final checkpoint, no mirroring
   (dentpy's run predicts without mirroring too);
6. Dice of pulp per test volume on the file's grid (peers.dice_per_class) for nnU-Net's
   predictions and for `dentpy predict` with the run, and their means.

    bash benchmarks/nnunet_env.sh /tmp/nnenv
    python benchmarks/time_to_quality.py --minutes 5 --arms dentpy --seed 1
    python benchmarks/nnunet_time_to_quality.py --run /tmp/dentpy-time-to-quality/runs/ttq-STAMP \
        --nnunet-python /tmp/nnenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/peers.py

import peers

DATASET = "Dataset501_DentpyTTQ"


def write_raw_dataset(run: Path, raw: Path) -> dict[str, list[tuple[str, str]]]:
    """nnU-Net raw layout of the run's splits; returns {split: [(case, label path)]}."""
    import nibabel as nib

    from dentpy.data.dataset import open_dataset
    from dentpy.engine.run import load_trained

    trained = load_trained(run)
    spec = trained.spec
    dataset = open_dataset(spec.input.data, spec.input.layout, spec.input.assume_spacing_mm)
    splits = json.loads((run / "splits.json").read_text())
    (label_ids,) = trained.task.class_label_ids  # the benchmark's task has one class: pulp
    folder = raw / DATASET
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    records = {r.case_id: r for r in dataset.records}
    out: dict[str, list[tuple[str, str]]] = {}
    for split, ids in splits.items():
        out[split] = []
        for case in ids:
            record = records[case]
            images = "imagesTs" if split == "test" else "imagesTr"
            link = folder / images / f"{case}_0000.nii.gz"
            if not link.exists():
                link.symlink_to(Path(record.image_path).resolve())
            out[split].append((case, str(record.label_path)))
            if split != "test":
                source = nib.load(str(record.label_path))
                mask = np.isin(np.asarray(source.dataobj), label_ids).astype(np.uint8)
                nib.save(
                    nib.Nifti1Image(mask, source.affine, source.header),
                    str(folder / "labelsTr" / f"{case}.nii.gz"),
                )
    n_training = len(out["train"]) + len(out["val"])
    (folder / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CBCT"},  # not "CT": nnU-Net z-scores each image
                "labels": {"background": 0, "pulp": 1},
                "numTraining": n_training,
                "file_ending": ".nii.gz",
            },
            indent=2,
        )
    )
    return out


def run(command: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def dentpy_predictions(run_folder: Path, test: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    from dentpy.data.dataset import open_dataset
    from dentpy.data.io import read_image
    from dentpy.engine.run import load_trained
    from dentpy.inference import predict_with_run

    trained = load_trained(run_folder)
    spec = trained.spec
    dataset = open_dataset(spec.input.data, spec.input.layout, spec.input.assume_spacing_mm)
    paths = {r.case_id: r.image_path for r in dataset.records}
    return {case: predict_with_run(trained, read_image(paths[case])).array for case, _ in test}


def pulp_dice(prediction: np.ndarray, label_path: str, label_ids: tuple[int, ...]) -> float:
    from dentpy.data.io import read_label

    truth = np.isin(np.asarray(read_label(label_path).array), label_ids).astype(np.uint8)
    if prediction.shape != truth.shape:
        sys.exit(f"prediction {prediction.shape} vs label {truth.shape}")
    return peers.dice_per_class(np.asarray(prediction), truth, 1)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a time_to_quality dentpy run")
    parser.add_argument("--nnunet-python", type=Path, required=True)
    parser.add_argument("--minutes", type=float, help="default: the run's time budget")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations-per-epoch", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/dentpy-nnunet"))
    args = parser.parse_args()
    import torch

    from dentpy.engine.run import load_trained

    torch.set_num_threads(args.threads)
    trained = load_trained(args.run)
    minutes = args.minutes or float(trained.spec.constraints.time_budget_minutes or 5)
    summary = json.loads((args.run / "train_summary.json").read_text())
    work = args.work.resolve()
    bin_dir = args.nnunet_python.parent
    env = {
        **os.environ,
        "nnUNet_raw": str(work / "raw"),
        "nnUNet_preprocessed": str(work / "preprocessed"),
        "nnUNet_results": str(work / "results"),
        "OMP_NUM_THREADS": str(args.threads),
    }
    print(peers.machine_line())
    print(
        f"dentpy run {args.run.name}: {summary['iterations']} iterations in "
        f"{summary['seconds']} s; nnU-Net budget {minutes:g} min",
        flush=True,
    )
    cases = write_raw_dataset(args.run, work / "raw")
    seconds = run(
        [
            str(bin_dir / "nnUNetv2_plan_and_preprocess"),
            "-d",
            "501",
            "-c",
            "3d_fullres",
            "-np",
            "2",
        ],
        env,
    )
    print(f"nnU-Net plan + preprocess: {seconds:.0f} s (not charged)", flush=True)
    split = [{"train": [c for c, _ in cases["train"]], "val": [c for c, _ in cases["val"]]}]
    (work / "preprocessed" / DATASET / "splits_final.json").write_text(json.dumps(split))
    measured = peers.run_measured(
        [
            str(args.nnunet_python),
            str(Path(__file__).resolve().parent / "nnunet_arm.py"),
            f"--dataset={DATASET}",
            f"--minutes={minutes}",
            f"--threads={args.threads}",
            f"--iterations-per-epoch={args.iterations_per_epoch}",
        ],
        env,
    )
    if measured["rc"] != 0:
        sys.exit(f"nnU-Net training failed (exit {measured['rc']})")
    result: dict[str, Any] = measured["result"]
    print(f"nnU-Net trained: {json.dumps(result)}", flush=True)
    predictions = work / "predictions"
    seconds = run(
        [
            str(bin_dir / "nnUNetv2_predict"),
            *("-i", str(work / "raw" / DATASET / "imagesTs"), "-o", str(predictions)),
            *("-d", "501", "-c", "3d_fullres", "-f", "0", "-chk", "checkpoint_final.pth"),
            *("-device", "cpu", "-npp", "1", "-nps", "1", "--disable_tta"),
        ],
        env,
    )
    print(f"nnU-Net predicted {len(cases['test'])} test volumes in {seconds:.0f} s", flush=True)
    import nibabel as nib

    (label_ids,) = trained.task.class_label_ids
    ours = dentpy_predictions(args.run, cases["test"])
    rows = []
    for case, label_path in cases["test"]:
        theirs = np.asarray(nib.load(str(predictions / f"{case}.nii.gz")).dataobj)
        # nnU-Net writes on the file's grid in the file's orientation, as the label is read
        # raw; dentpy's prediction is on the grid of read_label's canonical orientation.
        raw_label = nib.load(label_path)
        truth_raw = np.isin(np.asarray(raw_label.dataobj), label_ids).astype(np.uint8)
        nn_dice = peers.dice_per_class(theirs.astype(np.uint8), truth_raw, 1)[0]
        dp_dice = pulp_dice(ours[case], label_path, label_ids)
        rows.append((dp_dice, nn_dice))
    dentpy_mean = statistics.fmean(r[0] for r in rows)
    nnunet_mean = statistics.fmean(r[1] for r in rows)
    print(f"\n{'arm':8} {'test Dice':>10} {'iterations':>11} {'peak RSS':>10}")
    print(f"{'dentpy':8} {dentpy_mean:>10.4f} {summary['iterations']:>11} {'':>10}")
    print(
        f"{'nnU-Net':8} {nnunet_mean:>10.4f} {result['iterations']:>11} "
        f"{measured['peak_rss_mib']:>7.0f} MiB"
    )
    print("per test volume (dentpy, nnU-Net): " + ", ".join(f"{a:.4f}/{b:.4f}" for a, b in rows))
    print(f"test Dice dentpy - nnU-Net: {dentpy_mean - nnunet_mean:+.4f}")
    print(
        f"nnU-Net plan: patch {result['patch_size']}, batch {result['batch_size']}, features "
        f"{result['features_per_stage']}, spacing {result['spacing']}; {result['epochs']} epochs "
        f"of {args.iterations_per_epoch} iterations (planned {result['planned_epochs']}), "
        f"epoch seconds {result['epoch_seconds']}"
    )


if __name__ == "__main__":
    main()
