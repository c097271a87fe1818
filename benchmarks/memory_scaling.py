"""Does training RAM stay flat as the dataset grows? Peak memory of `dentpy train` on a
small and a 10x larger dataset of `full`-profile synthetic CBCT (0.3 mm, 288x240x160).

The large dataset repeats the small one's scans under new case names (file copies: every
case gets its own preprocessed cache entry and its own memory-mapped arrays, so what is
measured is how memory grows with the number of cases; generating 100 distinct full-size
scans would take this 2-core machine half an hour and change nothing in the memory path).

Each training runs in its own process; a sampler thread reads /proc/PID/status every
0.2 s: peak VmRSS (all resident pages), peak RssAnon (the process's own memory: arrays,
tensors, Python) and peak RssFile (pages of memory-mapped files, which the kernel can
drop at any time). Same spec, iterations, patch and batch for both sizes.

    python benchmarks/memory_scaling.py --small 10 --large 100 --work /tmp/dentpy-memory
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

FIELDS = ("VmRSS", "RssAnon", "RssFile")


def dentpy(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    code = "import sys; from dentpy.cli import main; sys.argv = ['dentpy', *sys.argv[1:]]; main()"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd)


def status_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in FIELDS:
                out[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def run_measured(args: list[str], cwd: Path) -> dict[str, float]:
    """Run dentpy with `args`; peak of each /proc status field (MiB) and seconds."""
    start = time.monotonic()
    process = dentpy(*args, cwd=cwd)
    peaks = dict.fromkeys(FIELDS, 0)

    def watch() -> None:
        while process.poll() is None:
            for key, value in status_kib(process.pid).items():
                peaks[key] = max(peaks[key], value)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    code = process.wait()
    watcher.join()
    if code != 0:
        raise SystemExit(f"dentpy {' '.join(args)} failed with exit code {code}")
    return {**{k: v / 1024 for k, v in peaks.items()}, "seconds": time.monotonic() - start}


def make_datasets(work: Path, small: int, large: int, seed: int, profile: str) -> tuple[Path, Path]:
    source = work / "generated"
    if not (source / "Dataset001_SynthCBCT").is_dir():
        generate = dentpy(
            "synth", "cbct", "--out", str(source), "--cases", str(small), "--test-cases", "0",
            "--profile", profile, "--seed", str(seed), cwd=work,
        )  # fmt: skip
        if generate.wait() != 0:
            raise SystemExit("synthetic data generation failed")
    original = source / "Dataset001_SynthCBCT"
    folders = []
    for n in (small, large):
        folder = work / f"cases{n}" / "Dataset001_SynthCBCT"
        if not folder.is_dir():
            (folder / "imagesTr").mkdir(parents=True)
            (folder / "labelsTr").mkdir()
            for i in range(n):
                j = i % small
                shutil.copy(
                    original / "imagesTr" / f"synth_{j:03d}_0000.nii.gz",
                    folder / "imagesTr" / f"synth_{i:03d}_0000.nii.gz",
                )
                shutil.copy(
                    original / "labelsTr" / f"synth_{j:03d}.nii.gz",
                    folder / "labelsTr" / f"synth_{i:03d}.nii.gz",
                )
            meta = json.loads((original / "dataset.json").read_text())
            meta["numTraining"] = n
            (folder / "dataset.json").write_text(json.dumps(meta, indent=2))
        folders.append(folder)
    return folders[0], folders[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--large", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", default="full", help="synthetic profile: full | ci | tiny")
    parser.add_argument("--work", type=Path, default=Path("/tmp/dentpy-memory"))
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    small, large = make_datasets(work, args.small, args.large, args.seed, args.profile)
    results = {}
    for folder in (small, large):
        n = len(list((folder / "imagesTr").glob("*.nii.gz")))
        root = folder.parent
        spec = root / "spec.yaml"
        if not spec.is_file():
            init = dentpy(
                "init", "--template", "pulp-cbct", "--data", "Dataset001_SynthCBCT",
                "--out", str(spec), cwd=root,
            )  # fmt: skip
            if init.wait() != 0:
                raise SystemExit("dentpy init failed")
        overrides = [
            f"train.iterations={args.iterations}",
            f"train.validate_every={args.iterations}",
            f"train.patch_size=[{args.patch}, {args.patch}, {args.patch}]",
            "train.batch_size=2",
            # One validation and one test case whatever the size: the measurement is about
            # the training data, not about how many scans validation predicts.
            f"evaluation.val_fraction={1.5 / n}",
            f"evaluation.test_fraction={1.5 / n}",
            "constraints.threads=2",
        ]
        # The cache is built once (its own, not measured) so both runs measure training.
        cache = root / "cache"
        name = f"memory-{n}"
        shutil.rmtree(root / "runs" / name, ignore_errors=True)
        warm = ["train", str(spec), *overrides[2:], "train.iterations=1", "train.validate_every=1"]
        env_args = ["--runs", str(root / "runs"), "--no-progress"]
        os.environ["DENTPY_CACHE"] = str(cache)
        run_measured([*warm, "--name", f"{name}-warm", *env_args], cwd=root)
        peaks = run_measured(["train", str(spec), *overrides, "--name", name, *env_args], root)
        results[n] = peaks
        print(
            f"{n:4d} cases: peak RSS {peaks['VmRSS']:7.0f} MiB (anonymous "
            f"{peaks['RssAnon']:6.0f}, memory-mapped files {peaks['RssFile']:6.0f}), "
            f"{peaks['seconds']:.0f} s",
            flush=True,
        )
    a, b = results[args.small], results[args.large]
    for key, label in (("VmRSS", "peak RSS"), ("RssAnon", "peak anonymous RSS")):
        growth = 100 * (b[key] / a[key] - 1)
        print(f"{label}: {a[key]:.0f} -> {b[key]:.0f} MiB, growth {growth:+.1f}%")
    (work / "memory_scaling.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
