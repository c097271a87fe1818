"""`dentpy train`: from a spec to a run folder with a selected, checkpointed model.

The run folder holds the resolved spec, dataset fingerprint, split file, plan, training
log (CSV + TensorBoard) and checkpoints. The best checkpoint is chosen on the validation
split only; the test split is never looked at here.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dentpy.data.split import check_split, split_by_patient
from dentpy.engine.run import RunFolder
from dentpy.errors import CheckpointError, SpecError

if TYPE_CHECKING:
    import torch

    from dentpy.data.cache import PreparedCase
    from dentpy.data.dataset import Dataset
    from dentpy.engine.trainer import Trainer
    from dentpy.spec import Spec
    from dentpy.tasks.segmentation import SegmentationTask


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _data_digest(dataset: Dataset) -> str:
    """Identifies the data a run was trained on (case ids and label names)."""
    ids = sorted(r.case_id for r in dataset.records)
    return hashlib.sha256(json.dumps([ids, dataset.labels], sort_keys=True).encode()).hexdigest()[
        :16
    ]


def target_spacing(spec: Spec, dataset: Dataset, case_ids: list[str]) -> tuple[float, ...]:
    """The spec's spacing, or the median canonical spacing of the training cases."""
    from dentpy.data.io import read_affine
    from dentpy.data.volume import Volume
    from dentpy.preprocess import orientation_of

    if spec.preprocess.target_spacing_mm != "median":
        return tuple(float(s) for s in spec.preprocess.target_spacing_mm)
    if dataset.assume_spacing_mm is not None:
        return tuple(float(s) for s in dataset.assume_spacing_mm)
    wanted = set(case_ids)
    spacings = []
    for record in dataset.records:
        if record.case_id in wanted:
            affine = read_affine(record.image_path)
            geometry = Volume(np.zeros((1, 1, 1)), affine)
            spacings.append(orientation_of(geometry).canonical_spacing_mm)
    return tuple(float(round(s, 4)) for s in np.median(np.array(spacings), axis=0))


def make_splits(spec: Spec, dataset: Dataset) -> dict[str, list[str]]:
    patients = {r.case_id: r.patient_id for r in dataset.records}
    if dataset.predefined_splits:
        splits = {k: list(v) for k, v in dataset.predefined_splits.items()}
        check_split(splits, patients)
        if not splits.get("val"):
            raise SpecError(
                "the dataset's splits.json has no 'val' split",
                expected="train, val and test lists (model selection needs a validation split)",
                found=f"splits: {', '.join(splits)}",
                fix="add a 'val' list to splits.json",
            )
        return {name: splits.get(name, []) for name in ("train", "val", "test")}
    return split_by_patient(
        patients,
        spec.evaluation.val_fraction,
        spec.evaluation.test_fraction,
        spec.evaluation.split_seed,
    )


def prepare(
    dataset: Dataset,
    task: SegmentationTask,
    plan: Any,
    case_ids: list[str],
    cache_dir: Path,
    show_progress: bool = False,
) -> list[PreparedCase]:
    """Network-space cases from the cache, preprocessing (and caching) the missing ones."""
    from rich.progress import Progress

    from dentpy.data.cache import prepare_case

    by_id = {r.case_id: r for r in dataset.records}
    context = [dataset.labels, dataset.assume_spacing_mm]
    prepared = []
    with Progress(disable=not show_progress, transient=True) as progress:
        task_id = progress.add_task("preprocess (cached after the first run)", total=len(case_ids))
        for cid in case_ids:
            record = by_id[cid]
            prepared.append(
                prepare_case(
                    record,
                    plan,
                    task.class_label_ids,
                    cache_dir,
                    partial(dataset.load, record),
                    context,
                )
            )
            progress.advance(task_id)
    return prepared


def validation_scores(
    model: torch.nn.Module,
    cases: list[PreparedCase],
    task: SegmentationTask,
    spec: Spec,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> dict[str, float]:
    """Mean Dice per class over validation cases (network space), and their mean: `score`.

    A class absent from both prediction and truth counts as Dice 1 (DESIGN.md §4).
    """
    from dentpy.inference import sliding_window_probabilities

    per_class: list[list[float]] = [[] for _ in task.class_names]
    for case in cases:
        probabilities = sliding_window_probabilities(
            model, case.image, spec.train.patch_size, device, spec.train.sw_batch_size, amp_dtype
        )
        prediction = probabilities.argmax(0).cpu().numpy()
        truth = np.asarray(case.label)
        for c in range(1, len(task.class_names) + 1):
            p, t = prediction == c, truth == c
            denominator = int(p.sum()) + int(t.sum())
            per_class[c - 1].append(
                1.0 if denominator == 0 else 2 * int((p & t).sum()) / denominator
            )
    scores = {
        f"dice_{n}": float(np.mean(v)) for n, v in zip(task.class_names, per_class, strict=True)
    }
    scores["score"] = float(np.mean(list(scores.values())))
    return scores


@dataclass
class TrainingSetup:
    spec: Spec
    run: RunFolder
    trainer: Trainer
    sampler: Any
    augment: Any
    identity: dict[str, str]
    best_score: float = -1.0


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _numpy_global_state() -> list[Any]:
    name, key, position, has_gauss, cached = np.random.get_state(legacy=True)
    return [name, np.asarray(key).tolist(), int(position), int(has_gauss), float(cached)]


def _trainer_state(setup: TrainingSetup) -> dict[str, Any]:
    import torch

    trainer = setup.trainer
    return {
        "iteration": trainer.iteration,
        "optimizer": trainer.optimizer.state_dict(),
        "schedule": trainer.schedule.state_dict(),
        "sampler": setup.sampler.state_dict(),
        "augment": setup.augment.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # As plain lists: weights_only loading accepts no numpy arrays.
        "numpy_rng": _numpy_global_state(),
        "python_rng": random.getstate(),
        "best_score": setup.best_score,
    }


def _restore(setup: TrainingSetup) -> None:
    import torch

    from dentpy.engine.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(setup.run.checkpoints, "last", identity=setup.identity)
    state = checkpoint.state
    trainer = setup.trainer
    trainer.model.load_state_dict(checkpoint.weights)
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.schedule.load_state_dict(state["schedule"])
    setup.sampler.load_state_dict(state["sampler"])
    setup.augment.load_state_dict(state["augment"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    name, key, position, has_gauss, cached = state["numpy_rng"]
    np.random.set_state((name, np.array(key, dtype=np.uint32), position, has_gauss, cached))
    random.setstate(state["python_rng"])
    trainer.iteration = int(state["iteration"])
    setup.best_score = float(state["best_score"])


class CheckpointHook:
    """Saves `last` after every validation, and `best` when validation improves."""

    def __init__(self, setup: TrainingSetup) -> None:
        self.setup = setup

    def on_iteration_end(self, trainer: Trainer, loss: float) -> None:
        return None

    def on_validation_end(self, trainer: Trainer, scores: dict[str, float]) -> None:
        import torch

        from dentpy.engine.checkpoint import save_checkpoint

        setup = self.setup
        weights = trainer.model.state_dict()
        finite = all(
            bool(torch.isfinite(w).all()) for w in weights.values() if w.is_floating_point()
        )
        score = scores["score"]
        improved = finite and np.isfinite(score) and score > setup.best_score
        if improved:
            setup.best_score = score
        save_checkpoint(
            setup.run.checkpoints,
            trainer.iteration,
            weights,
            _trainer_state(setup),
            setup.identity,
            tags=("last", "best") if improved else ("last",),
            extra={"validation": scores},
        )


class LogHook:
    """Training log as CSV and TensorBoard; losses averaged between validations."""

    def __init__(self, run: RunFolder, start: float) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run = run
        self.writer = SummaryWriter(str(run.tensorboard))
        self.losses: list[float] = []
        self.start = start
        self.last_scores: dict[str, float] = {}

    def on_iteration_end(self, trainer: Trainer, loss: float) -> None:
        self.losses.append(loss)
        self.writer.add_scalar("train/loss", loss, trainer.iteration)
        self.writer.add_scalar("train/lr", trainer.schedule.lr, trainer.iteration)

    def on_validation_end(self, trainer: Trainer, scores: dict[str, float]) -> None:
        row = {
            "iteration": trainer.iteration,
            "train_loss": float(np.mean(self.losses)) if self.losses else float("nan"),
            "lr": trainer.schedule.lr,
            "seconds": round(time.monotonic() - self.start, 1),
            **{f"val_{k}": round(v, 5) for k, v in scores.items()},
        }
        self.losses = []
        self.last_scores = scores
        for key, value in scores.items():
            self.writer.add_scalar(f"val/{key}", value, trainer.iteration)
        self.writer.flush()
        path = self.run.metrics_csv
        header = not path.exists()
        with open(path, "a") as handle:
            if header:
                handle.write(",".join(row) + "\n")
            handle.write(",".join(str(v) for v in row.values()) + "\n")

    def close(self) -> None:
        self.writer.close()


class BudgetHook:
    """Stops training when the time budget is spent (the loop then validates and saves)."""

    def __init__(self, minutes: float | None, start: float) -> None:
        self.deadline = None if minutes is None else start + 60 * minutes

    def on_iteration_end(self, trainer: Trainer, loss: float) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            trainer.should_stop = True

    def on_validation_end(self, trainer: Trainer, scores: dict[str, float]) -> None:
        return None


def resolve_run_dir(spec: Spec, run_dir: Path | None, resume: bool) -> RunFolder:
    run = RunFolder(run_dir or Path("runs") / spec.name)
    started = (run.checkpoints / "last.json").exists() or run.spec.exists()
    if resume and not run.root.exists():
        raise CheckpointError(
            f"--resume: run folder {run.root} does not exist",
            expected="the folder of an earlier `dentpy train` run",
            found="no such folder",
            fix="check the run name (--name / spec `name`), or train without --resume",
        )
    if not resume and started:
        raise SpecError(
            f"run folder {run.root} already holds a run",
            expected="a new run name, or --resume to continue this run",
            found="spec.yaml and/or checkpoints from an earlier run",
            fix=f"pass --resume to continue it, or --name {spec.name}-2 for a new run",
        )
    return run


def train(
    spec: Spec,
    run_dir: Path | None = None,
    resume: bool = False,
    show_progress: bool = True,
    cache_dir: Path | None = None,
) -> Path:
    """Train the spec's model; returns the run folder. See module docstring."""
    import torch

    from dentpy.augment import BatchAugment
    from dentpy.data.cache import default_cache_dir
    from dentpy.data.dataset import open_dataset
    from dentpy.engine.device import autocast_dtype, choose_device
    from dentpy.engine.progress import ProgressHook
    from dentpy.engine.sampling import PatchSampler
    from dentpy.engine.trainer import Trainer
    from dentpy.optim import LRSchedule, build_optimizer
    from dentpy.preprocess import PreprocessPlan
    from dentpy.tasks.segmentation import build_segmentation_task

    start = time.monotonic()
    run = resolve_run_dir(spec, run_dir, resume)
    if resume:
        from dentpy.spec import load_spec

        recorded = load_spec(run.spec)
        if recorded.digest(exclude=("train", "constraints")) != spec.digest(
            exclude=("train", "constraints")
        ):
            raise CheckpointError(
                f"--resume: the spec differs from the one {run.root.name} was trained with",
                expected="the run's own spec (its spec.yaml), optionally with a longer "
                "train.iterations",
                found="a spec with other data, classes, model, loss or optimizer settings",
                fix=f"resume with `dentpy train {run.spec} --resume`, or start a new run",
            )
    dataset = open_dataset(spec.input.data, spec.input.layout, spec.input.assume_spacing_mm)
    task = build_segmentation_task(spec, dataset.labels)
    if resume and run.splits.exists():
        splits = run.read_json(run.splits)
    else:
        splits = make_splits(spec, dataset)
    identity = {
        "spec": spec.digest(exclude=("train", "constraints")),
        "data": _data_digest(dataset),
    }
    plan = PreprocessPlan(
        target_spacing_mm=target_spacing(spec, dataset, splits["train"]),  # type: ignore[arg-type]
        clip_percentiles=spec.preprocess.clip_percentiles,
    )
    if spec.constraints.threads:
        torch.set_num_threads(spec.constraints.threads)
    if spec.constraints.deterministic:
        torch.use_deterministic_algorithms(True)
    device = choose_device(spec.constraints.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not spec.constraints.deterministic
    amp_dtype = autocast_dtype(device, spec.constraints.precision)
    _seed_everything(spec.train.seed)

    cache = cache_dir or default_cache_dir()
    prepared = prepare(dataset, task, plan, splits["train"] + splits["val"], cache, show_progress)
    train_cases, val_cases = prepared[: len(splits["train"])], prepared[len(splits["train"]) :]
    if not resume:
        # Written only once every training and validation case has loaded and passed its
        # checks, so a bad dataset leaves no half-made run folder behind.
        fingerprint = dataset.fingerprint(max_cases=50)
        run.root.mkdir(parents=True, exist_ok=True)
        run.spec.write_text(spec.to_yaml())
        _write_json(run.splits, splits)
        _write_json(run.fingerprint, fingerprint)
        _write_json(
            run.plan,
            {"task": task.to_dict(), "preprocess": plan.to_dict(), "identity": identity},
        )

    # channels_last_3d: ~10% faster 3D convolutions on CPU (benchmarks/train_step.py).
    model = task.build_model(spec).to(device)
    model = model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    optimizer = build_optimizer(model.parameters(), spec.optimizer)
    schedule = LRSchedule(optimizer, spec.schedule, spec.train.iterations)
    sampler = PatchSampler(
        train_cases,
        spec.train.patch_size,
        spec.train.batch_size,
        spec.train.foreground_fraction,
        seed=spec.train.seed,
    )
    augment = BatchAugment(spec.augment, task.swap_table(), device, seed=spec.train.seed + 1)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        image, label = sampler.next_batch()
        image_t = torch.from_numpy(image).to(device, non_blocking=True)
        label_t = torch.from_numpy(label).to(device, non_blocking=True)
        image_t, label_t, _ = augment(image_t, label_t)
        return image_t.contiguous(memory_format=torch.channels_last_3d), label_t

    trainer = Trainer(
        model=model,
        loss_fn=task.build_loss(spec),
        optimizer=optimizer,
        schedule=schedule,
        next_batch=next_batch,
        validate=lambda m: validation_scores(m, val_cases, task, spec, device, amp_dtype),
        amp_dtype=amp_dtype,
        grad_clip_norm=spec.optimizer.grad_clip_norm,
    )
    setup = TrainingSetup(spec, run, trainer, sampler, augment, identity)
    if resume:
        _restore(setup)
    log = LogHook(run, start)
    validate_every = min(spec.train.validate_every, spec.train.iterations)
    progress = ProgressHook(spec.train.iterations, trainer.iteration, enabled=show_progress)
    trainer.hooks = [
        log,
        CheckpointHook(setup),
        BudgetHook(spec.constraints.time_budget_minutes, start),
        progress,
    ]
    try:
        with progress:
            trainer.fit(spec.train.iterations, validate_every)
    finally:
        log.close()
    (run.root / "train_summary.json").write_text(
        json.dumps(
            {
                "iterations": trainer.iteration,
                "best_validation_score": setup.best_score,
                "device": str(device),
                "precision": str(amp_dtype or "fp32"),
                "seconds": round(time.monotonic() - start, 1),
                "n_train_cases": len(train_cases),
                "n_val_cases": len(val_cases),
            },
            indent=2,
        )
    )
    return run.root
