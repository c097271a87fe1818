"""`dentpy train`: from a spec to a run folder with a selected, checkpointed model.

The run folder holds the resolved spec, dataset fingerprint, split file, plan, training
log (CSV + TensorBoard) and checkpoints. The best checkpoint is chosen on the validation
split only; the test split is never looked at here.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dentpy.data.split import check_split, split_by_patient
from dentpy.engine.device import memory_format_3d
from dentpy.engine.hooks import (
    BudgetHook,
    CheckpointHook,
    LogHook,
    TrainingSetup,
    restore,
    seed_everything,
)
from dentpy.engine.pacing import PaceHook
from dentpy.engine.run import RunFolder
from dentpy.errors import CheckpointError, SpecError

if TYPE_CHECKING:
    import torch

    from dentpy.data.cache import PreparedCase
    from dentpy.data.dataset import Dataset
    from dentpy.planning.spacing import SpacingChoice
    from dentpy.spec import Spec
    from dentpy.tasks.segmentation import SegmentationTask


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2))


def _data_digest(dataset: Dataset) -> str:
    """Identifies the data a run was trained on (case ids and label names)."""
    ids = sorted(r.case_id for r in dataset.records)
    return hashlib.sha256(json.dumps([ids, dataset.labels], sort_keys=True).encode()).hexdigest()[
        :16
    ]


def target_spacing(spec: Spec, dataset: Dataset, case_ids: list[str]) -> tuple[float, ...]:
    """The spec's spacing, or the one chosen from the training cases (`target_spacing_choice`)."""
    return target_spacing_choice(spec, dataset, case_ids).mm


def target_spacing_choice(spec: Spec, dataset: Dataset, case_ids: list[str]) -> SpacingChoice:
    """The spec's spacing, or the median canonical spacing of the training cases (nnU-Net's
    anisotropy rule applies to thick-slice data: dentpy.planning.spacing)."""
    from dentpy.data.io import read_header
    from dentpy.data.volume import Volume
    from dentpy.planning.spacing import SpacingChoice, choose_target_spacing
    from dentpy.preprocess import orientation_of

    if spec.preprocess.target_spacing_mm != "median":
        given = tuple(float(s) for s in spec.preprocess.target_spacing_mm)
        return SpacingChoice(given, "from the spec (preprocess.target_spacing_mm)")  # type: ignore[arg-type]
    if dataset.assume_spacing_mm is not None:
        assumed = tuple(float(s) for s in dataset.assume_spacing_mm)
        return SpacingChoice(assumed, "input.assume_spacing_mm")  # type: ignore[arg-type]
    wanted = set(case_ids)
    spacings, shapes = [], []
    for record in dataset.records:
        if record.case_id in wanted:
            affine, shape = read_header(record.image_path)
            orientation = orientation_of(Volume(np.zeros((1, 1, 1)), affine))
            canonical = [0, 0, 0]
            for axis in range(3):  # file axis -> canonical axis, as the spacing is permuted
                canonical[int(orientation.ornt[axis, 0])] = shape[axis]
            spacings.append(orientation.canonical_spacing_mm)
            shapes.append(canonical)
    return choose_target_spacing(np.array(spacings), np.array(shapes))


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


def configure_runtime(spec: Spec) -> tuple[torch.device, torch.dtype | None]:
    """Threads, device, determinism, autocast dtype and seeds, as the spec asks."""
    import torch

    from dentpy.engine import distributed
    from dentpy.engine.device import autocast_dtype, choose_device

    if spec.constraints.threads:
        torch.set_num_threads(spec.constraints.threads)
    # Distributed on CUDA: this rank's own GPU (cuda:LOCAL_RANK).
    device = distributed.device_for_rank(choose_device(spec.constraints.device))
    if spec.constraints.deterministic:
        if device.type == "cuda":
            # cuBLAS needs a fixed workspace for reproducible matrix products; it is read when
            # cuBLAS first initialises, which is after this point.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not spec.constraints.deterministic
    amp_dtype = autocast_dtype(device, spec.constraints.precision)
    seed_everything(spec.train.seed)
    return device, amp_dtype


def check_resume_spec(spec: Spec, run: RunFolder) -> None:
    """--resume must continue the same problem: only train/constraints may differ."""
    from dentpy.spec import load_spec

    recorded = load_spec(run.spec)
    if spec.optimizer.lr == "auto":
        # The LR the range test chose when the run started (its spec.yaml records it).
        spec.optimizer.lr = recorded.optimizer.lr
    from dentpy.planning import adopt_recorded_auto

    adopt_recorded_auto(spec, recorded)  # "auto" sizes: the numbers the run started with
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


def fit_with_hooks(
    spec: Spec,
    run: RunFolder,
    trainer: Any,
    sampler: Any,
    augment: Any,
    identity: dict[str, str],
    start: float,
    resume: bool,
    show_progress: bool,
    extra: dict[str, Any] | None = None,
    pace: bool = False,
) -> TrainingSetup:
    """Run `trainer` to `train.iterations` with logging, checkpoints (best on validation),
    the time budget and a progress bar; with `resume`, from the last checkpoint first.
    `extra`: further stateful parts the checkpoints must hold (see TrainingSetup).
    `pace`: the iterations were planned from the time budget; re-plan them from the
    measured pace while training (dentpy.engine.pacing)."""
    from dentpy.engine import distributed
    from dentpy.engine.progress import ProgressHook

    setup = TrainingSetup(spec, run, trainer, sampler, augment, identity, extra=extra or {})
    if resume:
        restore(setup)
    # Several processes (torchrun): DDP, loss averaged over ranks, validation shared by the
    # ranks; rank 0 alone logs, shows progress and writes checkpoints. One process: unchanged.
    distributed.prepare_trainer(trainer)
    main = distributed.is_main()
    log = LogHook(run, start) if main else None
    progress = ProgressHook(
        spec.train.iterations,
        trainer.iteration,
        show_progress and main,
        metric=spec.metrics.select_by,
    )
    budget = BudgetHook(
        spec.constraints.time_budget_minutes,
        start,
        agree=distributed.any_rank if distributed.active() else None,
    )
    pacer = pace_hook(setup, progress, budget.deadline) if pace and budget.deadline else None
    trainer.hooks = [
        *([log] if log else []),
        CheckpointHook(setup),
        *([pacer] if pacer else []),
        budget,
        progress,
    ]
    try:
        with progress:
            trainer.fit(
                spec.train.iterations, min(spec.train.validate_every, spec.train.iterations)
            )
    finally:
        if log:
            log.close()
    if pacer:
        setup.pacing = pacer.summary()
    distributed.barrier()  # rank 0's last checkpoint is complete before any rank reads it
    return setup


def pace_hook(setup: TrainingSetup, progress: Any, deadline: float) -> PaceHook:
    """A PaceHook aiming at the budget's `deadline` (the BudgetHook's) that moves the end of
    `setup`'s training: trainer, LR schedule, progress bar, and the run's spec.yaml, so that
    --resume continues to the moved end."""
    from dentpy.engine import distributed

    spec = setup.spec
    minutes = float(spec.constraints.time_budget_minutes or 0)

    def move_end(trainer: Any, total: int) -> None:
        trainer.total_iterations = total
        trainer.schedule.set_total(total)
        progress.set_total(total)
        spec.train.iterations = total
        if distributed.is_main():
            write_text_atomic(setup.run.spec, spec.to_yaml())

    return PaceHook(
        deadline=deadline,
        budget_seconds=60 * minutes,
        planned=int(spec.train.iterations),
        apply=move_end,
        share=distributed.broadcast_from_main,
    )


def resolve_run_dir(spec: Spec, run_dir: Path | None, resume: bool) -> RunFolder:
    from dentpy.engine import distributed

    # Launched by torchrun: join the process group first (refuses unsupported settings).
    distributed.join(spec)
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
    distributed.barrier()  # every rank has checked the folder before rank 0 writes to it
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
    from dentpy.engine import distributed
    from dentpy.engine.prefetch import PrefetchingSampler
    from dentpy.engine.sampling import PatchSampler
    from dentpy.engine.trainer import Trainer
    from dentpy.imbalance import class_voxel_counts, resolve_imbalance
    from dentpy.inference_window import window_for
    from dentpy.lr_find import resolve_auto_lr
    from dentpy.optim import LRSchedule, build_optimizer
    from dentpy.planning import resolve_auto
    from dentpy.preprocess import PreprocessPlan
    from dentpy.pretrained import load_pretrained
    from dentpy.semi import check_paradigm
    from dentpy.semi.attach import attach_segmentation, split_labels, unlabeled_volumes
    from dentpy.tasks.segmentation import build_segmentation_task

    check_paradigm(spec)  # semi-supervised settings, before any work
    if spec.objective.task == "classification":
        from dentpy.train_classification import train_classification

        return train_classification(spec, run_dir, resume, show_progress)
    if spec.objective.task == "detection":
        from dentpy.train_detection import train_detection

        return train_detection(spec, run_dir, resume, show_progress)
    start = time.monotonic()
    # Iterations planned from the time budget are re-planned from the measured pace while
    # training; not on resume (the run keeps the end it had), nor for semi-supervised
    # paradigms, whose ramp-ups and rounds are laid out over the planned iterations.
    pace = (
        not resume
        and spec.train.iterations == "auto"
        and bool(spec.constraints.time_budget_minutes)
        and spec.paradigm.kind == "supervised"
    )
    run = resolve_run_dir(spec, run_dir, resume)
    if resume:
        check_resume_spec(spec, run)
    dataset = open_dataset(spec.input.data, spec.input.layout, spec.input.assume_spacing_mm)
    task = build_segmentation_task(spec, dataset.labels)
    if resume and run.splits.exists():
        splits = run.read_json(run.splits)
    else:
        splits = make_splits(spec, dataset)
    splits = split_labels(spec, splits, {r.case_id: r.patient_id for r in dataset.records})
    identity = {
        "spec": spec.digest(exclude=("train", "constraints")),
        "data": _data_digest(dataset),
    }
    spacing = target_spacing_choice(spec, dataset, splits["train"])
    plan = PreprocessPlan(
        target_spacing_mm=spacing.mm,
        clip_percentiles=spec.preprocess.clip_percentiles,
    )
    device, amp_dtype = configure_runtime(spec)

    cache = cache_dir or default_cache_dir()
    with distributed.main_first():  # several processes: rank 0 fills the cache, then the rest
        prepared = prepare(
            dataset, task, plan, splits["train"] + splits["val"], cache, show_progress
        )
    train_cases, val_cases = prepared[: len(splits["train"])], prepared[len(splits["train"]) :]
    unlabelled = unlabeled_volumes(spec, dataset, task, plan, splits, cache)  # semi only
    imbalance = resolve_imbalance(
        spec,
        task.class_names,
        class_voxel_counts(
            [c.label for c in train_cases],
            task.out_channels,
            recorded=[c.class_counts for c in train_cases],
        ),
    )
    # "auto" patch/batch size, channels, iterations -> numbers (dentpy.planning, `dentpy plan`).
    spec, auto_plan = resolve_auto(
        spec,
        train_cases,
        val_cases,
        plan.target_spacing_mm,
        task.out_channels,
        device,
        amp_dtype,
        spacing_rule=spacing.rule,
    )
    identity["spec"] = spec.digest(exclude=("train", "constraints"))
    # A train.sw_window the network cannot take fails now, not at the first validation.
    window_for(spec, task.out_channels, val_cases[0].image.shape[-3:], device)
    if not resume and distributed.is_main():
        # Written only once every training and validation case has loaded and passed its
        # checks, so a bad dataset leaves no half-made run folder behind.
        fingerprint = dataset.fingerprint(max_cases=50)
        run.root.mkdir(parents=True, exist_ok=True)
        run.spec.write_text(spec.to_yaml())
        write_json(run.splits, splits)
        write_json(run.fingerprint, fingerprint)
        write_json(
            run.plan,
            {
                "task": task.to_dict(),
                "preprocess": plan.to_dict(),
                "target_spacing_rule": spacing.rule,
                "identity": identity,
                "imbalance": imbalance.to_dict(),
                **({"auto_plan": auto_plan} if auto_plan else {}),
            },
        )

    model = task.build_model(spec).to(device)
    pretrained = load_pretrained(model, spec)  # model.pretrained (dentpy.pretrained)
    layout = memory_format_3d(device)  # channels_last_3d on CPU, channels-first on CUDA
    model = model.to(memory_format=layout)  # type: ignore[call-overload]
    sampler: PatchSampler | PrefetchingSampler = PatchSampler(
        train_cases,
        spec.train.patch_size,
        spec.train.batch_size,
        imbalance.foreground_fraction,
        seed=distributed.rank_seed(spec.train.seed),  # each rank its own patches
        class_probabilities=imbalance.class_probabilities,
    )
    if spec.train.prefetch:
        # Batches n+1.. are cropped in a thread while the device trains on batch n; the
        # wrapper checkpoints the sampler as of the first batch not yet used (exact resume).
        sampler = PrefetchingSampler(sampler, depth=spec.train.prefetch)
    augment = BatchAugment(
        spec.augment, task.swap_table(), device, seed=distributed.rank_seed(spec.train.seed) + 1
    )

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        image, label = sampler.next_batch()
        image_t = torch.from_numpy(image).to(device, non_blocking=True)
        label_t = torch.from_numpy(label).to(device, non_blocking=True)
        image_t, label_t, _ = augment(image_t, label_t)
        return image_t.contiguous(memory_format=layout), label_t

    # optimizer.lr: auto -> the LR range test on these very batches picks the LR first.
    resolve_auto_lr(
        spec,
        run,
        identity,
        model,
        task.build_loss(spec, imbalance.class_weights),
        next_batch,
        amp_dtype,
        [sampler, augment],
    )
    optimizer = build_optimizer(model.parameters(), spec.optimizer)
    schedule = LRSchedule(optimizer, spec.schedule, spec.train.iterations)
    trainer = Trainer(
        model=model,
        loss_fn=task.build_loss(spec, imbalance.class_weights),
        optimizer=optimizer,
        schedule=schedule,
        next_batch=next_batch,
        validate=task.validation(val_cases, spec, device, amp_dtype),
        amp_dtype=amp_dtype,
        grad_clip_norm=spec.optimizer.grad_clip_norm,
        accumulate=spec.train.accumulate_batches,
    )
    semi = attach_segmentation(  # paradigm.kind semi-supervised (dentpy.semi), else None
        spec, trainer, run.root, task, unlabelled, train_cases, sampler, augment, device, amp_dtype
    )
    try:
        setup = fit_with_hooks(
            spec,
            run,
            trainer,
            sampler,
            augment,
            identity,
            start,
            resume,
            show_progress,
            extra=semi.extra if semi else None,
            pace=pace,
        )
    finally:
        if isinstance(sampler, PrefetchingSampler):
            sampler.close()
    if not distributed.is_main():
        return run.root  # rank 0 writes the summary
    (run.root / "train_summary.json").write_text(
        json.dumps(
            {
                "iterations": trainer.iteration,
                "lr": spec.optimizer.lr,  # as used (chosen by the LR range test if "auto")
                "best_validation_score": setup.best_score,
                "device": str(device),
                # Processes (GPUs) that trained; a step saw batch_size x accumulate x this.
                "world_size": distributed.world_size(),
                "precision": str(amp_dtype or "fp32"),
                "seconds": round(time.monotonic() - start, 1),
                # Measured peaks, to set against plan.json's memory estimate.
                "peak_memory_mib": peak_memory_mib(device),
                "n_train_cases": len(train_cases),
                "n_val_cases": len(val_cases),
                "pretrained": pretrained,
                "imbalance": imbalance.to_dict(),
                **({"pacing": setup.pacing} if setup.pacing else {}),
                **({"semi_supervised": semi.summary()} if semi else {}),
            },
            indent=2,
        )
    )
    return run.root


def peak_memory_mib(device: torch.device) -> dict[str, float | None]:
    """This process's peak resident memory and, on CUDA, the peak memory torch allocated."""
    import torch

    from dentpy.planning.measure import peak_rss_bytes

    cuda = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {
        "process_rss": round(peak_rss_bytes() / 2**20, 1),
        "cuda_allocated": None if cuda is None else round(cuda / 2**20, 1),
    }


def pacing_line(summary: dict[str, Any]) -> str | None:
    """What `dentpy train` prints when the time budget's iterations were re-planned."""
    pacing = summary.get("pacing")
    if not pacing or not pacing["replans"]:
        return None
    last = pacing["replans"][-1]
    return (
        f"time budget: the plan's {pacing['planned_iterations']} iterations became "
        f"{last['new_total']}, re-planned from the measured "
        f"{last['seconds_per_iteration']:.3g} s per iteration (validation included)"
    )


def peak_memory_line(summary: dict[str, Any], plan: dict[str, Any]) -> str | None:
    """What `dentpy train` prints about memory: the measured peak and, when `dentpy plan`
    chose the sizes, its estimate of the same quantity, so a user sees whether it held."""
    peak = summary.get("peak_memory_mib")
    if not peak:
        return None  # a run folder written before peaks were recorded
    estimate = (plan.get("auto_plan") or {}).get("memory_estimate")
    if peak.get("cuda_allocated") is not None:
        line = f"peak GPU memory {peak['cuda_allocated']:.0f} MiB allocated by torch"
        if estimate:  # torch's allocations do not include the CUDA context
            planned = estimate["peak_mib"] - estimate["process_overhead"]
            line += f" (the plan estimated {planned:.0f} MiB without the CUDA context)"
        return line
    line = f"peak memory {peak['process_rss']:.0f} MiB (process RSS)"
    if estimate:
        line += f" (the plan estimated {estimate['peak_mib']:.0f} MiB)"
    return line
