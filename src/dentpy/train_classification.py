"""`dentpy train` for 2D classification (caries present? which grade?).

The same run folder, trainer loop, hooks, checkpoints and exact resume as segmentation;
what differs is the data (whole images, resized to `preprocess.image_size`, held in
memory), the sampler (plain or class-balanced), the augmentation (2D) and the task
(decoding and the validation metric that picks the best checkpoint: ROC-AUC for binary,
balanced accuracy for multiclass, quadratic weighted kappa for ordinal grades).

Splits are patient-level. A dataset's own split (split folders, a CSV `split` column,
splits.json) is honoured; when it has train and test but no val, validation patients are
taken from its train split (never from test).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dentpy.data.samples2d import ImageDataset, ImageRecord
from dentpy.data.split import check_split, split_by_patient
from dentpy.errors import SpecError

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Spec
    from dentpy.tasks.classification import ClassificationTask


def open_classification_data(spec: Spec) -> ImageDataset:
    """The spec's dataset, which must be a labelled 2D classification dataset."""
    return open_image_dataset(
        spec,
        "classification",
        "images with a class each: an ImageFolder (one folder per class) or a CSV of "
        "image,label[,patient]",
    )


def open_image_dataset(spec: Spec, task: str, expected: str) -> ImageDataset:
    """The spec's dataset, which must be a 2D dataset of `task` (else a clear error)."""
    from dentpy.data.dataset import open_any

    dataset = open_any(spec.input.data, spec.input.layout)
    if not isinstance(dataset, ImageDataset) or dataset.task != task:
        kind = (
            f"a 2D {dataset.task} dataset"
            if isinstance(dataset, ImageDataset)
            else "a 3D volume dataset"
        )
        raise SpecError(
            f"objective.task is {task}, but {dataset.root.name} is {kind} "
            f"({dataset.layout} layout)",
            expected=expected,
            found=f"{dataset.layout} layout",
            fix=f"point input.data at a {task} dataset, or change objective.task",
        )
    return dataset


def labelled_pool(dataset: ImageDataset) -> list[ImageRecord]:
    return [r for r in (*dataset.records, *dataset.test_records) if r.class_label is not None]


def make_splits_2d(spec: Spec, dataset: ImageDataset) -> dict[str, list[str]]:
    return make_splits_from(spec, dataset, labelled_pool(dataset))


def make_splits_from(
    spec: Spec, dataset: ImageDataset, pool: Sequence[ImageRecord]
) -> dict[str, list[str]]:
    """Patient-level train/val/test of `pool`, honouring the dataset's own split."""
    patients = {r.case_id: r.patient_id for r in pool}
    seed = spec.evaluation.split_seed
    if not dataset.predefined_splits:
        return split_by_patient(
            patients, spec.evaluation.val_fraction, spec.evaluation.test_fraction, seed
        )
    given = {k: list(v) for k, v in dataset.predefined_splits.items()}
    check_split(given, patients)
    unknown = sorted(set(given) - {"train", "val", "test"})
    if unknown or not given.get("train"):
        raise SpecError(
            f"{dataset.root.name}: the dataset's own split cannot be used for training",
            expected="a non-empty 'train' split, and optionally 'val' and 'test'",
            found=f"splits {', '.join(f'{k} ({len(v)})' for k, v in given.items())}",
            fix="name the splits train/val/test, or remove the split and let dentpy split",
        )
    splits = {name: given.get(name, []) for name in ("train", "val", "test")}
    if not splits["val"]:
        # Validation comes out of training patients, so the test split stays untouched.
        inner = split_by_patient(
            {c: patients[c] for c in splits["train"]}, spec.evaluation.val_fraction, 0.0, seed
        )
        splits["train"], splits["val"] = inner["train"], inner["val"]
    return splits


def predict_probabilities(
    model: torch.nn.Module,
    task: ClassificationTask,
    images: np.ndarray,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    batch_size: int = 64,
) -> np.ndarray:
    """Class probabilities (N, C) for network-space images (N, 1, H, W)."""
    import torch

    model.eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            batch = torch.from_numpy(images[start : start + batch_size]).to(device)
            with torch.autocast(
                device.type, dtype=amp_dtype or torch.float32, enabled=bool(amp_dtype)
            ):
                logits = model(batch)
            chunks.append(task.probabilities(logits.float()).cpu().numpy())
    n_classes = task.n_classes
    return np.concatenate(chunks) if chunks else np.zeros((0, n_classes), dtype=np.float32)


def selection_score(
    task: ClassificationTask, select_by: str, y_true: np.ndarray, probs: np.ndarray
) -> dict[str, float]:
    """The validation metric that picks the best checkpoint (`score`), plus accuracy.

    An undefined metric (e.g. ROC-AUC when validation holds one class) scores 0, so such a
    checkpoint never counts as an improvement.
    """
    from dentpy.metrics.classification import binary_metrics, multiclass_metrics, ordinal_metrics

    accuracy = float(np.mean(probs.argmax(axis=1) == y_true)) if y_true.size else 0.0
    positive = task.positive_index if task.positive_index is not None else 1
    if select_by == "roc_auc":
        if task.output != "binary":
            value = multiclass_metrics(y_true, probs).get("macro_roc_auc")
        else:
            value = binary_metrics((y_true == positive).astype(int), probs[:, positive], 0.5).get(
                "roc_auc"
            )
    elif select_by == "kappa":
        value = ordinal_metrics(y_true, probs).get("quadratic_weighted_kappa")
    else:
        value = multiclass_metrics(y_true, probs).get("balanced_accuracy")
    score = float(value) if value is not None else 0.0
    return {"score": score, select_by: score, "accuracy": accuracy}


def train_classification(
    spec: Spec, run_dir: Path | None, resume: bool, show_progress: bool
) -> Path:
    import torch

    from dentpy.augment2d import BatchAugment2D
    from dentpy.data.prepare2d import prepare_records
    from dentpy.engine import distributed
    from dentpy.engine.class_sampler import ClassSampler
    from dentpy.engine.trainer import Trainer
    from dentpy.engine.validation import ShardedValidation
    from dentpy.lr_find import resolve_auto_lr
    from dentpy.optim import LRSchedule, build_optimizer
    from dentpy.pretrained import load_pretrained
    from dentpy.semi.attach import attach_classification, split_labels, unlabeled_images
    from dentpy.tasks.classification import build_classification_task
    from dentpy.train import (
        check_resume_spec,
        configure_runtime,
        fit_with_hooks,
        resolve_run_dir,
        write_json,
    )

    start = time.monotonic()
    run = resolve_run_dir(spec, run_dir, resume)
    if resume:
        check_resume_spec(spec, run)
    dataset = open_classification_data(spec)
    splits = (
        run.read_json(run.splits)
        if resume and run.splits.exists()
        else make_splits_2d(spec, dataset)
    )
    by_id = {r.case_id: r for r in labelled_pool(dataset)}
    # paradigm.labeled_fraction: hide the labels of some training patients (dentpy.semi).
    splits = split_labels(spec, splits, {c: r.patient_id for c, r in by_id.items()})
    train_records = [by_id[c] for c in splits["train"]]
    val_records = [by_id[c] for c in splits["val"]]
    task = build_classification_task(
        spec, dataset.classes, [r.class_label or "" for r in train_records]
    )
    size = spec.preprocess.image_size
    train_data = prepare_records(train_records, size, spec.preprocess.clip_percentiles)
    val_data = prepare_records(val_records, size, spec.preprocess.clip_percentiles)
    # Test images are checked now too (cheap in 2D), so a broken one cannot surface only
    # at `dentpy evaluate`, after the training time is spent.
    prepare_records([by_id[c] for c in splits["test"]], size, spec.preprocess.clip_percentiles)
    unlabelled = unlabeled_images(spec, dataset, splits)  # semi-supervised only
    identity = {"spec": spec.digest(exclude=("train", "constraints")), "data": data_digest(dataset)}
    if not resume and distributed.is_main():
        # Written only once every training and validation image has loaded and passed its
        # checks, so a bad dataset leaves no half-made run folder behind.
        run.root.mkdir(parents=True, exist_ok=True)
        run.spec.write_text(spec.to_yaml())
        write_json(run.splits, splits)
        write_json(run.fingerprint, dataset.fingerprint(max_cases=200))
        preprocess = {
            "image_size": list(size),
            "clip_percentiles": list(spec.preprocess.clip_percentiles),
        }
        write_json(
            run.plan, {"task": task.to_dict(), "preprocess": preprocess, "identity": identity}
        )

    device, amp_dtype = configure_runtime(spec)
    model = task.build_model(spec).to(device)
    pretrained = load_pretrained(model, spec)  # model.pretrained (dentpy.pretrained)
    train_labels = train_data.labels(task.classes)
    val_labels = val_data.labels(task.classes)
    seed = distributed.rank_seed(spec.train.seed)  # several processes: each rank its own
    sampler = ClassSampler(
        train_labels, spec.train.batch_size, task.imbalance == "balanced_sampler", seed
    )
    augment = BatchAugment2D(spec.augment, device, seed=seed + 1)
    images_t = torch.from_numpy(train_data.images)
    labels_t = torch.from_numpy(train_labels)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(sampler.next_indices())
        images = images_t[index].to(device, non_blocking=True)
        return augment(images), labels_t[index].to(device, non_blocking=True)

    def predict(network: torch.nn.Module, indices: Sequence[int]) -> list[np.ndarray]:
        images = val_data.images[np.asarray(indices, dtype=np.int64)]
        return list(predict_probabilities(network, task, images, device, amp_dtype))

    def score(rows: list[np.ndarray]) -> dict[str, float]:
        probs = np.stack(rows) if rows else np.zeros((0, task.n_classes), dtype=np.float32)
        return selection_score(task, spec.metrics.select_by, val_labels, probs)

    # Several processes share the validation images (dentpy.engine.validation).
    validate = ShardedValidation(len(val_labels), predict, score)

    # optimizer.lr: auto -> the LR range test on these very batches picks the LR first.
    resolve_auto_lr(
        spec,
        run,
        identity,
        model,
        task.build_loss(spec).to(device),
        next_batch,
        amp_dtype,
        [sampler, augment],
    )
    optimizer = build_optimizer(model.parameters(), spec.optimizer)
    schedule = LRSchedule(optimizer, spec.schedule, spec.train.iterations)
    trainer = Trainer(
        model=model,
        loss_fn=task.build_loss(spec).to(device),
        optimizer=optimizer,
        schedule=schedule,
        next_batch=next_batch,
        validate=validate,
        amp_dtype=amp_dtype,
        grad_clip_norm=spec.optimizer.grad_clip_norm,
        accumulate=spec.train.accumulate_batches,
    )
    semi = attach_classification(  # paradigm.kind semi-supervised (dentpy.semi), else None
        spec, trainer, task, unlabelled, images_t, labels_t, sampler, augment, device, amp_dtype
    )
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
    )
    if not distributed.is_main():
        return run.root  # rank 0 writes the summary
    summary: dict[str, Any] = {
        "iterations": trainer.iteration,
        "lr": spec.optimizer.lr,  # as used (chosen by the LR range test if "auto")
        "best_validation_score": setup.best_score,
        "selected_by": spec.metrics.select_by,
        "device": str(device),
        # Processes (GPUs) that trained; a step saw batch_size x accumulate x this.
        "world_size": distributed.world_size(),
        "precision": str(amp_dtype or "fp32"),
        "seconds": round(time.monotonic() - start, 1),
        "n_train_images": len(train_records),
        "n_val_images": len(val_records),
        "pretrained": pretrained,
        "class_counts_train": dict(zip(task.classes, task.class_counts, strict=True)),
        "class_imbalance": task.imbalance,
    }
    if semi:
        summary["semi_supervised"] = semi.summary()
    (run.root / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return run.root


def data_digest(dataset: ImageDataset) -> str:
    """Identifies the data a run was trained on (case ids, labels and classes)."""
    import hashlib

    rows: Sequence[Any] = sorted((r.case_id, r.class_label or "") for r in labelled_pool(dataset))
    payload = json.dumps([rows, list(dataset.classes)], sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]
