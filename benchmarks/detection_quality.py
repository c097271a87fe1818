"""Detection quality within a stated budget: synthesise X-rays, train a detection template,
evaluate on held-out patients, print the figures the docs quote (AP50, AP per class, the
blob-box baseline, precision/recall at the validation-chosen confidence).

    python benchmarks/detection_quality.py --template caries-boxes --kind bitewing --images 400
    python benchmarks/detection_quality.py --template teeth-boxes --kind panoramic --images 200

Everything goes under --work (default /tmp/dentpy-detection-quality); a dataset already
there is reused. Model selection and the threshold use validation only; figures are on test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

SETS = {"caries-boxes": "detection_coco", "teeth-boxes": "teeth_coco"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", default="caries-boxes", choices=sorted(SETS))
    parser.add_argument("--kind", default="bitewing")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--iterations", type=int, default=None, help="default: the template's")
    parser.add_argument("--minutes", type=float, default=None, help="training time budget")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work", type=Path, default=Path("/tmp/dentpy-detection-quality"))
    parser.add_argument("overrides", nargs="*", help="extra spec overrides key=value")
    args = parser.parse_args()

    from dentpy.data.synth.xray import write_xray_dataset
    from dentpy.evaluate_detection import evaluate_detection
    from dentpy.init import render
    from dentpy.spec import load_spec
    from dentpy.train import train

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"xray-{args.kind}-{args.images}"
    if not (data / "XraySynth" / SETS[args.template]).exists():
        start = time.monotonic()
        write_xray_dataset(data, images=args.images, seed=0, kind=args.kind)
        print(f"synthesised {args.images} images in {time.monotonic() - start:.0f} s")
    name = f"{args.template}-{args.kind}-{int(time.time())}"
    spec_path = work / f"{name}.yaml"
    spec_path.write_text(render(args.template, name, str(data / "XraySynth" / SETS[args.template])))
    overrides = [f"constraints.device={args.device}", *args.overrides]
    if args.iterations:
        overrides.append(f"train.iterations={args.iterations}")
    if args.minutes:
        overrides.append(f"constraints.time_budget_minutes={args.minutes}")
    spec = load_spec(spec_path, overrides)
    start = time.monotonic()
    run = train(spec, run_dir=work / "runs" / name, show_progress=False)
    train_minutes = (time.monotonic() - start) / 60
    summary = evaluate_detection(run, split="test")
    trained = json.loads((run / "train_summary.json").read_text())
    model, blob = summary["model"], summary["baselines"].get("blob_boxes", {}).get("summary", {})
    result = {
        "template": args.template,
        "kind": args.kind,
        "images": args.images,
        "n_test_images": summary["n_images"],
        "n_test_boxes": summary["n_boxes"],
        "device": trained["device"],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "iterations": trained["iterations"],
        "train_minutes": round(train_minutes, 1),
        "ap": model["ap"],
        "ap50": model["ap50"],
        "ap75": model["ap75"],
        "per_class_ap50": {k: v["ap50"] for k, v in model["per_class"].items()},
        "at_threshold": {
            "threshold": summary["score_threshold"],
            **{k: summary["at_threshold"]["micro"][k] for k in ("precision", "recall", "f1")},
        },
        "blob_ap50": blob.get("ap50"),
        "blob_per_class_ap50": {k: v["ap50"] for k, v in blob.get("per_class", {}).items()},
    }
    print(json.dumps(result, indent=2))
    (run / "detection_quality.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
