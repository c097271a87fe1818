"""Time to quality: validation and test Dice each pipeline reaches in the same CPU budget.

Pulp segmentation (`pulp-cbct` template) on synthetic CBCT (`ci` profile, 0.6 mm), one
split (dentpy's own, by patient), three arms, each in its own process, one after another:

- dentpy:  `dentpy train` through its CLI with constraints.time_budget_minutes and
           `train.iterations: auto` (the planner times a step and a validation and fits
           the schedule to 95% of the budget), as docs/planning.md tells a user with a
           time budget to do;
           its own recipe: Dice+CE, AdamW with warm-up + cosine decay, batch augmentation;
- monai:   the MONAI tutorial training loop (benchmarks/peers.py);
- torchio: the TorchIO tutorial training loop (a reconstruction, benchmarks/peers.py).

Same network, patch, batch, threads, learning rate and validation cadence (every
--validate-every iterations, and once more when the budget ends, as dentpy does). The
budget is wall-clock from the start of each arm's training function and includes its
validations, as dentpy's does; preprocessing (dentpy's cache: canonical orientation,
0.6 mm, percentile clip + z-score) is done once before the arms, for all of them, and is
not charged. Each arm keeps its best validation checkpoint.

The reported figure is one metric computed by one function (peers.network_space_dice)
on the same preprocessed held-out volumes for every arm: Dice of the sliding-window
prediction (overlap 0.5, Gaussian), mean over cases; the validation split picks the
checkpoint, the test split is scored. Also printed: iterations done, Dice vs time, peak
RSS of each arm's process (ru_maxrss).

    python benchmarks/time_to_quality.py --minutes 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/peers.py

import peers

ARMS = ("dentpy", "monai", "torchio")
# Ablation arm (not run by default): the peers' training loop fed by dentpy's data path
# (patch sampler + batch augmentation), which separates data from loss/optimizer/schedule.
ABLATIONS = ("dentpy-data",)
TEMPLATE = "pulp-cbct"
# The `dentpy` command of this interpreter (as benchmarks/label_scarcity.py runs it).
DENTPY = [
    sys.executable,
    "-c",
    "import sys; from dentpy.cli import main; sys.argv[0] = 'dentpy'; main()",
]


def overrides(args: argparse.Namespace) -> list[str]:
    """Spec overrides every arm trains with (the peers read the same spec)."""
    return [
        f"train.patch_size=[{args.patch}, {args.patch}, {args.patch}]",
        f"train.batch_size={args.batch}",
        f"train.validate_every={args.validate_every}",
        f"train.iterations={args.iterations}",
        f"train.seed={args.seed}",
        f"constraints.threads={args.threads}",
        f"constraints.time_budget_minutes={args.minutes}",
        "constraints.precision=fp32",
        "constraints.device=cpu",  # the peers' loops run on the CPU
        "tracking.backends=[]",
    ]


def write_spec(args: argparse.Namespace) -> Path:
    """The dataset (synthesised once) and the rendered spec of this run."""
    from dentpy.data.synth import write_dataset
    from dentpy.init import render

    root = args.work / f"cbct-{args.profile}-{args.cases}"
    data = root / "Dataset001_SynthCBCT"
    if not (data / "dataset.json").exists():
        write_dataset(root, args.cases, profile=args.profile, seed=0)
    spec = args.work / f"ttq-{args.stamp}.yaml"
    spec.write_text(render(TEMPLATE, f"ttq-{args.stamp}", str(data)))
    return spec


def cases_of(spec_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """dentpy's split of the dataset and its prepared cases (from the shared cache)."""
    from dentpy.data.cache import default_cache_dir
    from dentpy.data.dataset import open_dataset
    from dentpy.preprocess import PreprocessPlan
    from dentpy.spec import load_spec
    from dentpy.tasks.segmentation import build_segmentation_task
    from dentpy.train import make_splits, prepare, target_spacing

    spec = load_spec(spec_path, overrides(args))
    dataset = open_dataset(spec.input.data, spec.input.layout, spec.input.assume_spacing_mm)
    task = build_segmentation_task(spec, dataset.labels)
    splits = make_splits(spec, dataset)
    plan = PreprocessPlan(
        target_spacing_mm=target_spacing(spec, dataset, splits["train"]),  # type: ignore[arg-type]
        clip_percentiles=spec.preprocess.clip_percentiles,
    )
    cache = default_cache_dir()
    return {
        "spec": spec,
        "task": task,
        "spacing": float(plan.target_spacing_mm[0]),
        **{name: prepare(dataset, task, plan, ids, cache) for name, ids in splits.items()},
    }


def worker(args: argparse.Namespace) -> None:
    """One peer arm: train until the budget is spent, keep the best validation weights."""
    start = time.monotonic()  # the budget starts here, as dentpy's starts in train()
    deadline = start + 60 * args.minutes
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    data = cases_of(args.spec, args)
    spec, task = data["spec"], data["task"]
    n_classes = len(task.class_names)
    model, loss_fn, optimizer = peers.build(
        device, task.out_channels, lr=float(spec.optimizer.lr), seed=args.seed
    )
    arrays = peers.arrays_of(data["train"])
    if args.worker == "monai":
        batches = peers.monai_batches(arrays, args.patch, args.batch, seed=args.seed)
    elif args.worker == "dentpy-data":
        batches = peers.dentpy_batches(
            data["train"],
            args.patch,
            args.batch,
            device,
            spec.train.foreground_fraction,
            task.swap_table(),
            seed=args.seed,
        )
    else:
        batches = peers.torchio_batches(
            arrays,
            args.patch,
            args.batch,
            data["spacing"],
            n_classes,
            spec.train.foreground_fraction,
            seed=args.seed,
        )
    out = args.work / "runs" / f"{args.worker}-{args.stamp}"
    out.mkdir(parents=True, exist_ok=True)
    history, best, iteration = [], -1.0, 0
    while True:
        image, label = next(batches)
        peers.train_step(model, loss_fn, optimizer, image.to(device), label.to(device))
        iteration += 1
        stop = time.monotonic() >= deadline or iteration >= args.iterations
        if iteration % args.validate_every == 0 or stop:
            score = peers.network_space_dice(
                model, data["val"], spec.train.patch_size, device, n_classes
            )
            history.append([iteration, round(time.monotonic() - start, 1), round(score, 4)])
            print(f"iteration {iteration}: val Dice {score:.4f}", flush=True)
            if score > best:
                best = score
                torch.save(model.state_dict(), out / "best.pt")
        if stop:
            break
    result = {"iterations": iteration, "val_best": best, "history": history, "out": str(out)}
    print(json.dumps(result))


def dentpy_arm(spec: Path, args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    from dentpy.engine.run import RunFolder

    runs = args.work / "runs"
    command = [*DENTPY, "train", str(spec), "--runs", str(runs), "--no-progress"]
    dentpy_own = [f"train.iterations={args.dentpy_iterations}", *args.dentpy_set]
    measured = peers.run_measured([*command, *overrides(args), *dentpy_own])
    run = runs / f"ttq-{args.stamp}"
    if measured["rc"] != 0:
        return measured
    splits = json.loads((run / "splits.json").read_text())
    for name in ("train", "val", "test"):  # the peers were given the very same split
        if sorted(splits[name]) != sorted(c.case_id for c in data[name]):
            sys.exit(f"dentpy's {name} split differs from the one the peers get")
    trained = json.loads((run / "train_summary.json").read_text())
    history = []
    lines = RunFolder(run).metrics_csv.read_text().splitlines()
    header = lines[0].split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=True))
        history.append([int(row["iteration"]), float(row["seconds"]), float(row["val_score"])])
    measured["result"] = {
        "iterations": trained["iterations"],
        "val_best": trained["best_validation_score"],
        "history": history,
        "out": str(run),
    }
    return measured


def load_model(arm: str, out: str, out_channels: int) -> torch.nn.Module:
    if arm == "dentpy":
        from dentpy.engine.run import load_trained

        return load_trained(Path(out)).model
    model, _, _ = peers.build(torch.device("cpu"), out_channels)
    model.load_state_dict(torch.load(Path(out) / "best.pt", weights_only=True))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per arm")
    parser.add_argument("--cases", type=int, default=24, help="synthetic cases (all splits)")
    parser.add_argument("--profile", default="ci", help="synthetic profile: tiny | ci | full")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--validate-every", type=int, default=100)
    parser.add_argument(
        "--iterations", type=int, default=2000, help="cap per arm (and dentpy's schedule length)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument(
        "--dentpy-iterations",
        default="auto",
        help="dentpy's train.iterations: auto (fit the schedule to the budget) or a number",
    )
    parser.add_argument(
        "--dentpy-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra spec override for the dentpy arm only (ablations), repeatable",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/dentpy-time-to-quality"))
    parser.add_argument("--worker", choices=[*ARMS[1:], *ABLATIONS], help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stamp", default=str(int(time.time())), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work = args.work.resolve()
    os.environ.setdefault("DENTPY_CACHE", str(args.work / "cache"))
    if args.worker:
        worker(args)
        return
    arms = [a for a in args.arms.split(",") if a]
    unknown = set(arms) - set(ARMS) - set(ABLATIONS)
    if unknown:
        parser.error(f"unknown arms {sorted(unknown)}; choose from {', '.join(ARMS + ABLATIONS)}")
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    spec = write_spec(args)
    data = cases_of(spec, args)  # preprocessing, once, before any arm (not charged)
    sizes = {k: len(data[k]) for k in ("train", "val", "test")}
    print(peers.machine_line())
    print(
        f"budget {args.minutes:g} min per arm ({len(arms)} arms, ~{len(arms) * args.minutes:g} "
        f"min of training), {TEMPLATE} on {args.cases} {args.profile} cases {sizes}, patch "
        f"{args.patch}³, batch {args.batch}, validate every {args.validate_every}, seed "
        f"{args.seed}",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    for arm in arms:
        print(f"{arm}:", flush=True)
        if arm == "dentpy":
            measured = dentpy_arm(spec, args, data)
        else:
            argv = [f"--{k}={getattr(args, k)}" for k in ("minutes", "patch", "batch")]
            argv += [f"--{k}={getattr(args, k)}" for k in ("iterations", "threads", "seed")]
            argv += [f"--validate-every={args.validate_every}", f"--cases={args.cases}"]
            argv += [f"--profile={args.profile}", f"--work={args.work}", f"--stamp={args.stamp}"]
            measured = peers.run_measured(
                peers.python_command(Path(__file__), *argv, f"--worker={arm}", f"--spec={spec}")
            )
        if measured["rc"] != 0:
            sys.exit(f"{arm} failed (exit {measured['rc']})")
        model = load_model(arm, measured["result"]["out"], data["task"].out_channels)
        measured["test_dice"] = peers.network_space_dice(
            model,
            data["test"],
            data["spec"].train.patch_size,
            torch.device("cpu"),
            len(data["task"].class_names),
        )
        results[arm] = measured
        print(f"  {arm}: test Dice {measured['test_dice']:.4f}", flush=True)

    print(f"\n{'arm':8} {'val Dice':>9} {'test Dice':>10} {'iterations':>11} {'peak RSS':>10}")
    for arm, m in results.items():
        r = m["result"]
        print(
            f"{arm:8} {r['val_best']:>9.4f} {m['test_dice']:>10.4f} {r['iterations']:>11} "
            f"{m['peak_rss_mib']:>7.0f} MiB"
        )
    print("Dice vs time (iteration, seconds, validation Dice):")
    for arm, m in results.items():
        points = "; ".join(f"{i} {s:.0f}s {d:.3f}" for i, s, d in m["result"]["history"])
        print(f"  {arm}: {points}")
    if "dentpy" in results:
        for arm in results:
            if arm != "dentpy":
                gap = results["dentpy"]["test_dice"] - results[arm]["test_dice"]
                print(f"test Dice dentpy - {arm}: {gap:+.4f}")
    out = args.work / f"time_to_quality_{args.stamp}.json"
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **results}))
    print(f"written {out}")


if __name__ == "__main__":
    main()
