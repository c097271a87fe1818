"""`dentpy demo`: the whole path on synthetic data, in minutes, on a CPU.

synthesise -> spec -> train (time-boxed) -> evaluate on the test split (with the threshold
baseline) -> predict one unseen scan -> volumes -> an HTML report -> a summary with paths to
everything.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

DEMO_OVERRIDES = [
    "objective.classes=[pulp, left_ian, right_ian]",
    "train.patch_size=[48, 48, 48]",
    "train.batch_size=2",
    "train.validate_every=100",
    "model.channels=[16, 32, 64, 128]",
    "optimizer.lr=0.003",
    "postprocess.keep_largest=[left_ian, right_ian]",
    "schedule.warmup_iterations=20",
    "evaluation.val_fraction=0.15",
    "evaluation.test_fraction=0.15",
]


def run_demo(out: Path, minutes: float, cases: int, seed: int, console: Any) -> dict[str, Any]:
    from dentpy.data.synth import write_dataset
    from dentpy.evaluate import EMPTY_MASK_POLICY, HD95_DEFINITION, evaluate_run, render_summary
    from dentpy.inference import predict_files
    from dentpy.init import render
    from dentpy.measure import volumes_of_file
    from dentpy.report.report_run import write_report
    from dentpy.spec import load_spec
    from dentpy.train import train

    start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]1/5 synthesise CBCT data")
    data_root = out / "data"
    if not (data_root / "Dataset001_SynthCBCT" / "dataset.json").exists():
        write_dataset(data_root, cases, profile="tiny", seed=seed, layout="nnunet", test_cases=1)
    dataset_dir = data_root / "Dataset001_SynthCBCT"
    console.print(f"dataset: {dataset_dir} ({cases} labelled cases + 1 unseen scan)")

    console.rule("[bold]2/5 formulate the problem (spec)")
    spec_path = out / "spec.yaml"
    spec_path.write_text(render("pulp-cbct", "demo", "data/Dataset001_SynthCBCT"))
    iterations = 1500  # ~4 min on 2 free cores; the time budget caps slower machines
    spec = load_spec(
        spec_path,
        [
            *DEMO_OVERRIDES,
            f"train.iterations={iterations}",
            f"train.seed={seed}",
            f"constraints.time_budget_minutes={minutes}",
            "schedule.name=constant",
        ],
    )
    spec_path.write_text(spec.to_yaml())
    console.print(f"spec: {spec_path} (classes: pulp, left_ian, right_ian; budget {minutes} min)")

    console.rule("[bold]3/5 train")
    run_dir = out / "runs" / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    train(spec, run_dir=run_dir, cache_dir=out / "cache")

    console.rule("[bold]4/5 evaluate on the held-out test split")
    summary = evaluate_run(run_dir, split="test")
    console.print(render_summary(summary))
    console.print(HD95_DEFINITION)
    console.print(EMPTY_MASK_POLICY)

    console.rule("[bold]5/5 predict an unseen scan and measure volumes")
    unseen = sorted((dataset_dir / "imagesTs").glob("*.nii.gz"))[0]
    # One prediction folder per run: a second demo into the same --out never collides.
    predictions = out / "predictions" / run_dir.name
    prediction = predict_files(run_dir, [unseen], predictions, overlay=True)[0]
    volumes = volumes_of_file(prediction, instances=True)
    for index, name in enumerate(["pulp", "left_ian", "right_ian"], start=1):
        parts = [row for row in volumes if row.label == index]
        total = sum(row.volume_mm3 for row in parts)
        sizes = ", ".join(f"{row.volume_mm3:.0f}" for row in parts[:8])
        more = " …" if len(parts) > 8 else ""
        console.print(
            f"  {name:10s} {total:7.1f} mm³ in {len(parts)} connected component(s): "
            f"{sizes}{more} mm³"
        )

    console.rule("[bold]report")
    report = write_report(run_dir, split="test")
    console.print(f"  one self-contained HTML page (open it in any browser): {report}")

    model = {r["class"]: r["dice_mean"] for r in summary["model"]}
    baseline = {r["class"]: r["dice_mean"] for r in summary["baselines"]["threshold"]["summary"]}
    result = {
        "dice": model,
        "threshold_dice": baseline,
        "run": str(run_dir),
        "evaluation": str(run_dir / "evaluation" / "test"),
        "prediction": str(prediction),
        "report": str(report),
        "minutes": round((time.monotonic() - start) / 60, 1),
    }
    (out / "demo_summary.json").write_text(json.dumps(result, indent=2))
    console.rule("[bold]summary")
    for name in model:
        console.print(
            f"  {name:10s} Dice {model[name]:.3f}   threshold baseline {baseline[name]:.3f}"
        )
    console.print(
        f"  run folder:  {run_dir}  (spec, splits, training_log.csv, tensorboard/, checkpoints/)"
    )
    console.print(f"  evaluation:  {result['evaluation']}")
    console.print(f"  prediction:  {prediction}")
    console.print(f"  picture:     {str(prediction).replace('_seg.nii.gz', '_overlay.png')}")
    console.print(f"  report:      {report}")
    console.print(f"  finished in {result['minutes']} min")
    return result
