"""`dentpy train` for 2D detection (teeth and caries boxes).

The same run folder, trainer loop, hooks, checkpoints and exact resume as the other
tasks. Images are letterboxed to `preprocess.image_size` (boxes mapped exactly) and held in
memory; batches are augmented on the device with box-aware flips that renumber teeth.
The best checkpoint is chosen on validation AP50 (or AP); after training, the confidence
threshold that maximises validation F1 is stored for `evaluate` and `predict`. The test
split is never looked at here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dentpy.data.samples2d import ImageDataset, ImageRecord

if TYPE_CHECKING:
    import torch

    from dentpy.data.prepare_boxes import PreparedBoxes
    from dentpy.spec import Spec
    from dentpy.tasks.detection import DetectionTask

THRESHOLD_FILE = "detection_threshold.json"


def open_detection_data(spec: Spec) -> ImageDataset:
    """The spec's dataset, which must be a 2D detection dataset."""
    from dentpy.train_classification import open_image_dataset

    return open_image_dataset(
        spec,
        "detection",
        "images with boxes: COCO (annotations JSON), YOLO (data.yaml + labels/) or Tufts",
    )


def annotated_pool(dataset: ImageDataset) -> list[ImageRecord]:
    """Every image annotated for detection; one without boxes is a valid negative."""
    return [r for r in (*dataset.records, *dataset.test_records) if r.boxes is not None]


def network_detections(
    model: torch.nn.Module,
    images: np.ndarray,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    spec: Spec,
    batch_size: int = 16,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(boxes xyxy in network pixels, scores, class indices) per network-space image."""
    import torch

    from dentpy.detection import detect_packed

    model.eval()
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            batch = torch.from_numpy(images[start : start + batch_size]).to(device)
            with torch.autocast(
                device.type, dtype=amp_dtype or torch.float32, enabled=bool(amp_dtype)
            ):
                output = model(batch)
            found += detect_packed(
                output.float(),
                nms_iou=spec.postprocess.nms_iou,
                max_detections=spec.postprocess.max_detections,
            )
    return found


def as_image_boxes(
    case_ids: Sequence[str],
    boxes: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    scores: Sequence[np.ndarray] | None = None,
) -> list[Any]:
    from dentpy.metrics.detection import ImageBoxes

    return [
        ImageBoxes(
            image_id=case_id,
            boxes=np.asarray(b, dtype=np.float64).reshape(-1, 4),
            labels=np.asarray(lab, dtype=np.int64),
            scores=None if scores is None else np.asarray(scores[i], dtype=np.float64),
        )
        for i, (case_id, b, lab) in enumerate(zip(case_ids, boxes, labels, strict=True))
    ]


def validation_scores(
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    data: PreparedBoxes,
    task: DetectionTask,
    select_by: str,
) -> dict[str, float]:
    """AP50 and AP (IoU 0.50:0.95) on validation; `score` is the one that selects."""
    from dentpy.metrics.detection import evaluate_detections

    truth = as_image_boxes(data.case_ids, data.boxes, data.labels)
    predicted = as_image_boxes(
        data.case_ids, [f[0] for f in found], [f[2] for f in found], [f[1] for f in found]
    )
    result = evaluate_detections(truth, predicted, list(task.classes))
    ap50 = float(result["ap50"] or 0.0)
    ap = float(result["ap"] or 0.0)
    return {"score": ap50 if select_by == "ap50" else ap, "ap50": ap50, "ap": ap}


def train_detection(spec: Spec, run_dir: Path | None, resume: bool, show_progress: bool) -> Path:
    import torch

    from dentpy.data.prepare_boxes import prepare_box_records
    from dentpy.detection import BoxAugment2D, pack_targets
    from dentpy.engine import distributed
    from dentpy.engine.class_sampler import ClassSampler
    from dentpy.engine.trainer import Trainer
    from dentpy.engine.validation import ShardedValidation
    from dentpy.lr_find import resolve_auto_lr
    from dentpy.optim import LRSchedule, build_optimizer
    from dentpy.tasks.detection import build_detection_task
    from dentpy.train import (
        check_resume_spec,
        configure_runtime,
        fit_with_hooks,
        resolve_run_dir,
        write_json,
    )
    from dentpy.train_classification import make_splits_from

    start = time.monotonic()
    run = resolve_run_dir(spec, run_dir, resume)
    if resume:
        check_resume_spec(spec, run)
    dataset = open_detection_data(spec)
    pool = annotated_pool(dataset)
    splits = (
        run.read_json(run.splits)
        if resume and run.splits.exists()
        else make_splits_from(spec, dataset, pool)
    )
    by_id = {r.case_id: r for r in pool}
    train_records = [by_id[c] for c in splits["train"]]
    task = build_detection_task(spec, train_records)
    size = spec.preprocess.image_size
    clip = spec.preprocess.clip_percentiles
    train_data = prepare_box_records(train_records, task, size, clip)
    val_data = prepare_box_records([by_id[c] for c in splits["val"]], task, size, clip)
    # Test images are checked now too, so a broken one cannot surface only at evaluate.
    prepare_box_records([by_id[c] for c in splits["test"]], task, size, clip)
    identity = {"spec": spec.digest(exclude=("train", "constraints")), "data": data_digest(pool)}
    if not resume and distributed.is_main():
        run.root.mkdir(parents=True, exist_ok=True)
        run.spec.write_text(spec.to_yaml())
        write_json(run.splits, splits)
        write_json(run.fingerprint, dataset.fingerprint(max_cases=200))
        preprocess = {"image_size": list(size), "clip_percentiles": list(clip), "letterbox": True}
        write_json(
            run.plan,
            {
                "task": task.to_dict(),
                "preprocess": preprocess,
                "identity": identity,
                "dropped_training_boxes": train_data.dropped_boxes,
            },
        )

    device, amp_dtype = configure_runtime(spec)
    model = task.build_model(spec).to(device)
    seed = distributed.rank_seed(spec.train.seed)  # several processes: each rank its own
    sampler = ClassSampler(
        np.zeros(len(train_records), dtype=np.int64), spec.train.batch_size, False, seed
    )
    augment = BoxAugment2D(spec.augment, task.swap_table(), device, seed=seed + 1)
    images_t = torch.from_numpy(train_data.images)
    boxes_t = [torch.from_numpy(b) for b in train_data.boxes]
    labels_t = [torch.from_numpy(lab) for lab in train_data.labels]

    def next_batch() -> tuple[torch.Tensor, Any]:
        index = sampler.next_indices().tolist()
        images = images_t[index].to(device, non_blocking=True)
        boxes = [boxes_t[i].to(device) for i in index]
        labels = [labels_t[i].to(device) for i in index]
        images, boxes, labels = augment(images, boxes, labels)
        return images, pack_targets(boxes, labels, task.n_classes, images.shape[-2:])

    def predict(network: torch.nn.Module, indices: Sequence[int]) -> list[Any]:
        images = val_data.images[np.asarray(indices, dtype=np.int64)]
        return network_detections(network, images, device, amp_dtype, spec)

    def score(found: list[Any]) -> dict[str, float]:
        return validation_scores(found, val_data, task, spec.metrics.select_by)

    # Several processes share the validation images (dentpy.engine.validation).
    validate = ShardedValidation(len(val_data.case_ids), predict, score)

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
    setup = fit_with_hooks(
        spec, run, trainer, sampler, augment, identity, start, resume, show_progress
    )
    if not distributed.is_main():
        return run.root  # rank 0 chooses the threshold and writes the summary
    threshold = choose_threshold_on_validation(run, spec, task, val_data, device, amp_dtype)
    summary: dict[str, Any] = {
        "iterations": trainer.iteration,
        "lr": spec.optimizer.lr,  # as used (chosen by the LR range test if "auto")
        "best_validation_score": setup.best_score,
        "selected_by": spec.metrics.select_by,
        "score_threshold": threshold,
        "device": str(device),
        # Processes (GPUs) that trained; a step saw batch_size x accumulate x this.
        "world_size": distributed.world_size(),
        "precision": str(amp_dtype or "fp32"),
        "seconds": round(time.monotonic() - start, 1),
        "n_train_images": len(train_records),
        "n_val_images": len(val_data.case_ids),
        "n_train_boxes": int(sum(len(b) for b in train_data.boxes)),
        "dropped_training_boxes": train_data.dropped_boxes,
    }
    (run.root / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return run.root


def choose_threshold_on_validation(
    run: Any,
    spec: Spec,
    task: DetectionTask,
    val_data: PreparedBoxes,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> float:
    """The best checkpoint's confidence threshold with the highest validation F1 (IoU 0.5),
    or the spec's fixed `postprocess.score_threshold`; written to the run folder."""
    from dentpy.engine.checkpoint import load_checkpoint
    from dentpy.metrics.detection import choose_score_threshold
    from dentpy.train import write_json

    if spec.postprocess.score_threshold != "auto":
        threshold = float(spec.postprocess.score_threshold)
        how = "postprocess.score_threshold in the spec"
    else:
        model = task.build_model(spec)
        model.load_state_dict(load_checkpoint(run.checkpoints, tag="best").weights)
        model.to(device)
        found = network_detections(model, val_data.images, device, amp_dtype, spec)
        truth = as_image_boxes(val_data.case_ids, val_data.boxes, val_data.labels)
        predicted = as_image_boxes(
            val_data.case_ids, [f[0] for f in found], [f[2] for f in found], [f[1] for f in found]
        )
        if any(len(f[1]) for f in found):
            threshold = float(choose_score_threshold(truth, predicted, task.n_classes))
            how = "maximises micro F1 at IoU 0.5 on the validation split (best checkpoint)"
        else:
            threshold = 0.5
            how = "default 0.5: the best checkpoint detected nothing on validation"
    write_json(run.root / THRESHOLD_FILE, {"score_threshold": threshold, "chosen_by": how})
    return threshold


def data_digest(pool: Sequence[ImageRecord]) -> str:
    """Identifies the data a run was trained on (case ids and their boxes)."""
    import hashlib

    rows = sorted(
        (r.case_id, [(b.x_min, b.y_min, b.x_max, b.y_max, b.label, b.fdi) for b in r.boxes or ()])
        for r in pool
    )
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]
