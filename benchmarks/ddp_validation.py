"""Validation time under DDP: rank 0 validating alone (the others wait) vs the ranks
sharing the cases (dentpy.engine.validation), in the same 2-process run, same network,
same cases.

Both arms run inside one torchrun with gloo on the CPU, interleaved over repeats, each rank
with `--threads` threads (the stand-in for one GPU per rank). Printed: median seconds per
validation of each arm, their ratio, and whether the scores are identical.

    python benchmarks/ddp_validation.py --cases 6 --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Network-space validation volumes of the `ci` synthetic profile's order of size (voxels),
# varied so that a balanced division matters.
SHAPES = [(128, 112, 80), (96, 96, 64), (112, 96, 80), (80, 80, 64), (128, 96, 72), (96, 80, 64)]


def worker(out: Path, cases: int, repeats: int, threads: int) -> None:
    import numpy as np
    import torch

    from dentpy.data.cache import PreparedCase
    from dentpy.engine import distributed
    from dentpy.models import build_model
    from dentpy.spec import Spec
    from dentpy.tasks.segmentation import SegmentationTask

    torch.set_num_threads(threads)
    distributed.start("cpu")
    spec = Spec.model_validate(
        {
            "name": "bench",
            "input": {"data": "unused"},
            "objective": {"classes": ["pulp"]},
            "model": {"channels": [16, 32, 64, 128]},
            "train": {"patch_size": [64, 64, 64], "sw_window": "auto"},
        }
    )
    task = SegmentationTask(("pulp",), ((1,),))
    torch.manual_seed(0)  # the same weights on every rank
    model = build_model(spec.model, in_channels=1, out_channels=task.out_channels).eval()
    rng = np.random.default_rng(0)
    volumes = [
        PreparedCase(
            f"c{i}",
            rng.normal(size=shape).astype(np.float32),
            (rng.random(shape) < 0.05).astype(np.uint8),
            (),
        )
        for i, shape in enumerate(SHAPES[i % len(SHAPES)] for i in range(cases))
    ]
    shared = task.validation(volumes, spec, torch.device("cpu"), None)

    def alone(network: torch.nn.Module) -> dict[str, float]:
        return shared.score(shared.predict(network, range(shared.n_items)))

    arms = {"rank 0 alone": distributed.validated_on_main(alone), "shared by the ranks": shared}
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    scores: dict[str, dict[str, float]] = {}
    for _ in range(repeats):
        for name, validate in arms.items():
            distributed.barrier()
            began = time.perf_counter()
            with torch.inference_mode():
                scores[name] = validate(model)
            seconds[name].append(time.perf_counter() - began)
    if distributed.is_main():
        (out / "result.json").write_text(json.dumps({"seconds": seconds, "scores": scores}))
    distributed.leave()
    distributed.end_process()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6, help="validation cases")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="threads per rank")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.cases, args.repeats, args.threads)
        return
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={args.processes}",
            str(Path(__file__).resolve()),
            *("--cases", str(args.cases), "--repeats", str(args.repeats)),
            *("--threads", str(args.threads), "--worker", str(out)),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        subprocess.run(command, check=True, env=env)
        result: dict[str, Any] = json.loads((out / "result.json").read_text())
    print(
        f"{args.processes} processes x {args.threads} thread(s), {args.cases} validation cases, "
        f"{args.repeats} repeats (interleaved); torch {__import__('torch').__version__}"
    )
    medians = {name: statistics.median(s) for name, s in result["seconds"].items()}
    for name, median in medians.items():
        runs = ", ".join(f"{s:.2f}" for s in result["seconds"][name])
        print(f"  {name:20s} median {median:6.2f} s per validation  ({runs})")
    ratio = medians["rank 0 alone"] / medians["shared by the ranks"]
    same = result["scores"]["rank 0 alone"] == result["scores"]["shared by the ranks"]
    print(f"  shared / alone: {ratio:.2f}x faster; scores identical: {same}")


if __name__ == "__main__":
    main()
