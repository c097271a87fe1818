"""Label scarcity: what do unlabelled cases buy when only 20% of training cases are labelled?

For one task (caries classification on synthetic bitewing crops, or pulp segmentation on
synthetic CBCT), every arm trains under the same CPU time budget on the same split:

- full:      supervised, every training case labelled (the reference);
- sup:       supervised on the labelled fraction only (paradigm.labeled_fraction);
- semi:      semi-supervised (Mean Teacher) on the same labelled cases + the rest unlabelled;
- pseudo:    semi-supervised (confidence-filtered pseudo-labels), same cases (--arms);
- pretrain:  self-supervised pretraining on every training case (labels unused), then
             supervised fine-tuning on the labelled fraction (pretraining time is extra and
             printed).

Model selection uses the validation split only. Printed: the best validation score
(ROC-AUC or mean Dice, the bar's figure) and the test-split figure from `dentpy evaluate`.

    python benchmarks/label_scarcity.py --task classification --minutes 4
    python benchmarks/label_scarcity.py --task segmentation --minutes 8

Everything goes under --work (default /tmp/dentpy-label-scarcity); datasets are reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ARMS = ("full", "sup", "semi", "pseudo", "pretrain")
# The `dentpy` command of the interpreter running this script (its console script when
# installed, else the CLI module, e.g. on a GPU image with dentpy on PYTHONPATH).
DENTPY = [
    sys.executable,
    "-c",
    "import sys; from dentpy.cli import main; sys.argv[0] = 'dentpy'; main()",
]


def dataset(task: str, work: Path, size: int) -> tuple[Path, str]:
    """(dataset folder, template) for the task; synthesised once."""
    from dentpy.data.synth import write_dataset

    if task == "classification":
        root = work / f"xray-{size}"
        data = root / "XraySynth" / "caries_binary"
        if not data.exists():
            subprocess.run(
                [
                    *DENTPY,
                    "synth",
                    "xray",
                    "--out",
                    str(root),
                    "--images",
                    str(size),
                    "--seed",
                    "0",
                ],
                check=True,
            )
        return data, "caries-binary"
    root = work / f"cbct-ci-{size}"
    data = root / "Dataset001_SynthCBCT"
    if not (data / "dataset.json").exists():
        write_dataset(root, size, profile="ci", seed=0)
    return data, "pulp-cbct"


def run_cli(args: list[str]) -> None:
    start = time.monotonic()
    subprocess.run([*DENTPY, *args], check=True)
    print(f"  {' '.join(args[:2])}: {time.monotonic() - start:.0f} s", flush=True)


def scores(task: str, run: Path) -> dict[str, Any]:
    from dentpy.evaluate import evaluate_run
    from dentpy.evaluate_classification import evaluate_classification

    trained = json.loads((run / "train_summary.json").read_text())
    if task == "classification":
        test = evaluate_classification(run, split="test")["model"]["metrics"]["roc_auc"]
    else:
        dice = [row["dice_mean"] for row in evaluate_run(run, split="test")["model"]]
        test = sum(dice) / len(dice)
    return {
        "val_best": round(float(trained["best_validation_score"]), 4),
        "test": round(float(test), 4),
        "iterations": trained["iterations"],
        "train_seconds": trained["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("classification", "segmentation"), required=True)
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget per arm")
    parser.add_argument("--pretrain-minutes", type=float, default=3.0)
    parser.add_argument("--pretrain-iterations", type=int, default=600)
    parser.add_argument("--fraction", type=float, default=0.2, help="labelled training share")
    parser.add_argument("--size", type=int, default=None, help="images (2D) or cases (3D)")
    parser.add_argument("--iterations", type=int, default=None, help="cap per arm")
    parser.add_argument("--arms", default="full,sup,semi,pretrain")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--semi",
        nargs="*",
        default=["paradigm.consistency_weight=10", "paradigm.unlabeled_batch_size=16"],
        help="extra overrides of the Mean Teacher arm (printed in the report)",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/dentpy-label-scarcity"))
    parser.add_argument("overrides", nargs="*", help="extra spec overrides for every arm")
    args = parser.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    unknown = set(arms) - set(ARMS)
    if unknown:
        parser.error(f"unknown arms {sorted(unknown)}; choose from {', '.join(ARMS)}")

    from dentpy.init import render

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DENTPY_CACHE", str(work / "cache"))
    size = args.size or (120 if args.task == "classification" else 40)
    data, template = dataset(args.task, work, size)
    stamp = int(time.time())
    common = [
        f"constraints.time_budget_minutes={args.minutes}",
        f"constraints.threads={args.threads}",
        *args.overrides,
    ]
    if args.iterations:
        common.append(f"train.iterations={args.iterations}")
    scarce = f"paradigm.labeled_fraction={args.fraction}"
    settings = {
        "full": [],
        "sup": [scarce],
        "semi": [
            scarce,
            "paradigm.kind=semi-supervised",
            "paradigm.method=mean_teacher",
            *args.semi,
        ],
        "pseudo": [scarce, "paradigm.kind=semi-supervised", "paradigm.method=pseudo_label"],
        "pretrain": [scarce],
    }
    results: dict[str, Any] = {}
    for arm in arms:
        name = f"{args.task}-{arm}-{stamp}"
        spec = work / f"{name}.yaml"
        spec.write_text(render(template, name, str(data)))
        run = work / "runs" / name
        overrides = [*common, *settings[arm]]
        print(f"{arm}:", flush=True)
        extra: dict[str, Any] = {}
        if arm == "pretrain":
            folder = work / "runs" / f"{name}-encoder"
            start = time.monotonic()
            run_cli(
                [
                    "pretrain",
                    str(spec),
                    "--out",
                    str(folder),
                    *common,
                    f"pretrain.time_budget_minutes={args.pretrain_minutes}",
                    f"pretrain.iterations={args.pretrain_iterations}",
                ]
            )
            extra["pretrain_seconds"] = round(time.monotonic() - start, 1)
            overrides.append(f"model.pretrained={folder / 'encoder.safetensors'}")
        run_cli(["train", str(spec), "--runs", str(work / "runs"), "--no-progress", *overrides])
        results[arm] = {**scores(args.task, run), **extra}
        print(f"  {results[arm]}", flush=True)

    metric = "ROC-AUC" if args.task == "classification" else "mean Dice"
    report = {
        "task": args.task,
        "template": template,
        "size": size,
        "labeled_fraction": args.fraction,
        "minutes_per_arm": args.minutes,
        "semi_overrides": args.semi,
        "metric": metric,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {args.threads} threads",
        "arms": results,
    }
    print(f"\n{'arm':10} {'val ' + metric:>16} {'test ' + metric:>16} {'iterations':>11}")
    for arm, row in results.items():
        print(f"{arm:10} {row['val_best']:>16.4f} {row['test']:>16.4f} {row['iterations']:>11}")
    if "sup" in results and "semi" in results:
        gain = results["semi"]["val_best"] - results["sup"]["val_best"]
        print(f"semi - sup (validation): {gain:+.4f}")
    if "sup" in results and "pretrain" in results:
        gain = results["pretrain"]["val_best"] - results["sup"]["val_best"]
        print(f"pretrain - sup (validation): {gain:+.4f}")
    out = work / f"label_scarcity_{args.task}_{stamp}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
