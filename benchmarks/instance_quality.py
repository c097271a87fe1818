"""Instance segmentation quality within a stated budget: synthesise FDI-labelled CBCT
(`ci` profile), train an instance template, evaluate on held-out patients, print the
figures the docs quote (instance F1, misnumbering, PQ, per-tooth volume error).

    python benchmarks/instance_quality.py --template teeth-fdi-cbct --minutes 30

Everything goes under --work (default /tmp/dentpy-instance-quality); a dataset already
there is reused. Model selection uses the validation split only; figures are on test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", default="teeth-fdi-cbct")
    parser.add_argument("--cases", type=int, default=40, help="synthetic patients")
    parser.add_argument("--profile", default="ci")
    parser.add_argument("--iterations", type=int, default=None, help="default: the template's")
    parser.add_argument("--minutes", type=float, default=None, help="training time budget")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work", type=Path, default=Path("/tmp/dentpy-instance-quality"))
    parser.add_argument("overrides", nargs="*", help="extra spec overrides key=value")
    args = parser.parse_args()

    from dentpy.data.synth import write_dataset
    from dentpy.evaluate import evaluate_run
    from dentpy.init import render
    from dentpy.spec import load_spec
    from dentpy.train import train

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DENTPY_CACHE", str(work / "cache"))
    data = work / f"data-{args.profile}-{args.cases}"
    if not (data / "Dataset001_SynthCBCT" / "dataset.json").exists():
        start = time.monotonic()
        write_dataset(data, args.cases, profile=args.profile, seed=0, labels="toothfairy3")
        print(f"synthesised {args.cases} cases in {time.monotonic() - start:.0f} s")
    name = f"{args.template}-{args.profile}-{int(time.time())}"
    spec_path = work / f"{name}.yaml"
    spec_path.write_text(render(args.template, name, str(data / "Dataset001_SynthCBCT")))
    overrides = [f"constraints.device={args.device}", *args.overrides]
    if args.iterations:
        overrides.append(f"train.iterations={args.iterations}")
    if args.minutes:
        overrides.append(f"constraints.time_budget_minutes={args.minutes}")
    spec = load_spec(spec_path, overrides)
    start = time.monotonic()
    run = train(spec, run_dir=work / "runs" / name, show_progress=False)
    train_minutes = (time.monotonic() - start) / 60
    summary = evaluate_run(run, split="test")
    trained = json.loads((run / "train_summary.json").read_text())
    result = {
        "template": args.template,
        "profile": args.profile,
        "cases": args.cases,
        "n_test_cases": summary["n_cases"],
        "device": trained["device"],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "iterations": trained["iterations"],
        "train_minutes": round(train_minutes, 1),
        "instances": {
            family: {
                key: summary["instances"][family][key]
                for key in (
                    "f1",
                    "precision",
                    "recall",
                    "misnumbering_rate",
                    "misnumbered",
                    "pq",
                    "tp",
                    "n_reference",
                    "fp_extra",
                    "fn_missed",
                    "matched_dice_mean",
                    "volume_error_pct_mean",
                    "volume_error_pct_median",
                )
            }
            for family in ("teeth", "pulp")
            if family in summary["instances"]
        },
        "findings": summary["instances"]["findings"],
        "canals": [
            {"class": r["class"], "dice_mean": r["dice_mean"]}
            for r in summary["model"]
            if r["class"] not in summary["instances"]["classes"]
        ],
    }
    print(json.dumps(result, indent=2))
    (run / "instance_quality.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
