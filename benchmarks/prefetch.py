"""Does the prefetching sampler pay off? `dentpy train` iterations per second with
`train.prefetch` 0 (every batch cropped when the step asks) and 2 (cropped in a thread
while the device trains), same spec, data and device, interleaved repeats, medians.

Timing comes from the run's own training_log.csv (seconds at the last logged iteration
minus seconds at the first), so data preparation is left out; the validations in between
(one small case each, the same in both arms) are in, which makes the ratio conservative.

    python benchmarks/prefetch.py --profile ci --iterations 60 --repeats 3
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path


def dentpy(*args: str, cwd: Path) -> None:
    code = "import sys; from dentpy.cli import main; sys.argv = ['dentpy', *sys.argv[1:]]; main()"
    subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, check=True)


def steps_per_second(run: Path) -> float:
    with open(run / "training_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    first, last = rows[0], rows[-1]
    steps = int(last["iteration"]) - int(first["iteration"])
    return steps / (float(last["seconds"]) - float(first["seconds"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="ci")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work", type=Path, default=Path("/tmp/dentpy-prefetch"))
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["DENTPY_CACHE"] = str(work / "cache")
    data = work / "data" / "Dataset001_SynthCBCT"
    if not data.is_dir():
        dentpy(
            "synth", "cbct", "--out", str(work / "data"), "--cases", str(args.cases),
            "--test-cases", "0", "--profile", args.profile, cwd=work,
        )  # fmt: skip
    spec = work / "spec.yaml"
    if not spec.is_file():
        dentpy("init", "--template", "pulp-cbct", "--data", "data/Dataset001_SynthCBCT",
               "--out", str(spec), cwd=work)  # fmt: skip
    every = max(1, args.iterations // 6)
    common = [
        f"train.iterations={args.iterations}",
        f"train.validate_every={every}",
        f"train.patch_size=[{args.patch}, {args.patch}, {args.patch}]",
        f"train.batch_size={args.batch}",
        f"constraints.device={args.device}",
        "evaluation.val_fraction=0.15",
        "evaluation.test_fraction=0.15",
    ]
    # The logged seconds include the validations between the first and last rows (one
    # small validation case, the same for both arms): that dilutes the ratio toward 1.
    results: dict[int, list[float]] = {0: [], 2: []}
    for repeat in range(args.repeats):
        for depth in (0, 2):
            name = f"prefetch{depth}-r{repeat}"
            shutil.rmtree(work / "runs" / name, ignore_errors=True)
            dentpy("train", str(spec), *common, f"train.prefetch={depth}", "--name", name,
                   "--runs", str(work / "runs"), "--no-progress", cwd=work)  # fmt: skip
            rate = steps_per_second(work / "runs" / name)
            results[depth].append(rate)
            print(f"repeat {repeat}: prefetch {depth}: {rate:.3f} iterations/s", flush=True)
    off, on = statistics.median(results[0]), statistics.median(results[2])
    print(f"median iterations/s: prefetch 0 {off:.3f}, prefetch 2 {on:.3f}; ratio {on / off:.2f}x")


if __name__ == "__main__":
    main()
