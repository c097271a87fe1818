"""Plugging semi-supervised training into the supervised trainers.

Each trainer calls three functions, so its own code barely changes:
`split_labels` (after the splits: hides labels for `paradigm.labeled_fraction`),
`unlabeled_*` (before the run folder is written, so bad unlabelled data leaves none
behind) and `attach_*` (once the supervised `Trainer` exists: sets its `extra_loss`,
`after_step`, loss or batch source, and returns the parts checkpoints must hold).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dentpy.engine.device import memory_format_3d
from dentpy.errors import SpecError
from dentpy.semi.labeled_fraction import UNLABELED_SPLIT, hide_labels

if TYPE_CHECKING:
    import torch

    from dentpy.data.cache import PreparedCase
    from dentpy.data.dataset import Dataset
    from dentpy.data.samples2d import ImageDataset
    from dentpy.engine.trainer import Trainer
    from dentpy.preprocess import PreprocessPlan
    from dentpy.spec import Spec
    from dentpy.tasks.classification import ClassificationTask
    from dentpy.tasks.segmentation import SegmentationTask

# Geometric augmentation parameters (BatchAugment.draw): shared by the student's and the
# teacher's view of an unlabelled patch, so their voxels correspond.
GEOMETRIC = ("flip", "spatial", "angles", "scale")


@dataclass
class SemiSupervised:
    """What a trainer needs back: checkpointed parts and the summary for the run."""

    method: str
    n_unlabeled: int
    extra: dict[str, Any] = field(default_factory=dict)
    details: Any = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "n_unlabeled": self.n_unlabeled}
        if self.details is not None:
            out.update(self.details.summary())
        return out


def split_labels(
    spec: Spec, splits: dict[str, list[str]], patient_of: Mapping[str, str]
) -> dict[str, list[str]]:
    """Apply `paradigm.labeled_fraction` to fresh splits (a resumed run's are kept)."""
    fraction = spec.paradigm.labeled_fraction
    if fraction is None or UNLABELED_SPLIT in splits:
        return splits
    return hide_labels(splits, patient_of, fraction, spec.evaluation.split_seed)


def _semi(spec: Spec) -> bool:
    return spec.paradigm.kind == "semi-supervised"


def _none_left(spec: Spec) -> SpecError:
    return SpecError(
        "semi-supervised training found no unlabelled cases",
        expected="input.unlabeled with scans/images, or a paradigm.labeled_fraction that "
        "leaves some training patients unlabelled",
        found=f"labeled_fraction {spec.paradigm.labeled_fraction} keeps every training patient",
        fix="lower paradigm.labeled_fraction or add input.unlabeled",
    )


def unlabeled_volumes(
    spec: Spec,
    dataset: Dataset,
    task: SegmentationTask,
    plan: PreprocessPlan,
    splits: Mapping[str, list[str]],
    cache_dir: Path,
) -> list[PreparedCase]:
    """Preprocessed unlabelled 3D cases ([] unless semi-supervised)."""
    from dentpy.semi.unlabeled import (
        SOURCE,
        prepare_unlabeled_volumes,
        unlabeled_volume_records,
    )

    if not _semi(spec):
        return []
    by_id = {r.case_id: r for r in dataset.records}
    hidden = [by_id[c] for c in splits.get(UNLABELED_SPLIT, [])]
    cases = prepare_unlabeled_volumes(
        hidden, plan, task.class_label_ids, cache_dir, dataset.assume_spacing_mm, "input.data"
    )
    if spec.input.unlabeled is not None:
        records = unlabeled_volume_records(spec.input.unlabeled)
        assumed = spec.input.assume_spacing_mm
        cases += prepare_unlabeled_volumes(
            records, plan, task.class_label_ids, cache_dir, assumed, SOURCE
        )
    if not cases:
        raise _none_left(spec)
    return cases


def unlabeled_images(
    spec: Spec, dataset: ImageDataset, splits: Mapping[str, list[str]]
) -> np.ndarray:
    """Network-space unlabelled 2D images (N, 1, H, W) (empty unless semi-supervised)."""
    from dentpy.semi.unlabeled import (
        SOURCE,
        prepare_unlabeled_images,
        unlabeled_image_records,
    )

    size = spec.preprocess.image_size
    clip = spec.preprocess.clip_percentiles
    if not _semi(spec):
        return np.zeros((0, 1, *size), dtype=np.float32)
    by_id = {r.case_id: r for r in (*dataset.records, *dataset.test_records)}
    hidden = [by_id[c] for c in splits.get(UNLABELED_SPLIT, [])]
    parts = [prepare_unlabeled_images(hidden, size, clip, "input.data")]
    if spec.input.unlabeled is not None:
        records = unlabeled_image_records(spec.input.unlabeled)
        parts.append(prepare_unlabeled_images(records, size, clip, SOURCE))
    images = np.concatenate(parts).astype(np.float32)
    if not images.shape[0]:
        raise _none_left(spec)
    return images


def _rampup(spec: Spec) -> int:
    length = spec.paradigm.rampup_iterations
    return spec.train.iterations // 4 if length is None else length


def _batch(spec: Spec) -> int:
    return spec.paradigm.unlabeled_batch_size or spec.train.batch_size


def paired_views(
    patches: Any, noise: Any, device: torch.device
) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    """(student view, teacher view) of the next unlabelled patch batch: one geometric
    transform for both (so voxels correspond), independent intensity/gamma/noise draws."""
    import torch

    def views() -> tuple[torch.Tensor, torch.Tensor]:
        image, _ = patches.next_batch()
        x = torch.from_numpy(image).to(device, non_blocking=True)
        blank = torch.zeros_like(x, dtype=torch.uint8)
        first = noise.draw(x.shape[0])
        second = noise.draw(x.shape[0])
        second.update({key: first[key] for key in GEOMETRIC})
        student, _ = noise.apply(x, blank, first)
        teacher, _ = noise.apply(x, blank, second)
        fmt = memory_format_3d(device)
        return student.contiguous(memory_format=fmt), teacher.contiguous(memory_format=fmt)

    return views


def _mean_teacher(
    spec: Spec,
    trainer: Trainer,
    views: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    probabilities: Callable[[torch.Tensor], torch.Tensor],
    amp_dtype: torch.dtype | None,
    parts: dict[str, Any],
    n_unlabeled: int,
) -> SemiSupervised:
    """A Mean Teacher plugged into `trainer`; `parts` (the unlabelled sampler and
    augmentation) are checkpointed with it."""
    from dentpy.engine import distributed
    from dentpy.semi.mean_teacher import MeanTeacher

    paradigm = spec.paradigm
    teacher = MeanTeacher(
        trainer.model,
        views,
        probabilities,
        paradigm.ema_decay,
        paradigm.consistency_weight,
        _rampup(spec),
        amp_dtype,
        parts=parts,
        validate_with=paradigm.validate_with,
    )
    teacher.attach(trainer)
    # Several processes: every rank's teacher starts as rank 0's, as DDP makes the students.
    distributed.broadcast_weights(teacher.teacher.model)
    return SemiSupervised("mean_teacher", n_unlabeled, {"mean_teacher": teacher}, teacher)


def attach_segmentation(
    spec: Spec,
    trainer: Trainer,
    run_root: Path,
    task: SegmentationTask,
    unlabelled: list[PreparedCase],
    labelled: list[PreparedCase],
    sampler: Any,
    augment: Any,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> SemiSupervised | None:
    """Set up Mean Teacher or pseudo-labelling on a segmentation `trainer` (None when
    supervised)."""
    import torch

    from dentpy.augment import BatchAugment
    from dentpy.engine import distributed
    from dentpy.engine.sampling import PatchSampler

    if not _semi(spec):
        return None
    paradigm = spec.paradigm
    if paradigm.method == "mean_teacher":
        seed = distributed.rank_seed(spec.train.seed)  # several processes: each rank its own
        patches = PatchSampler(unlabelled, spec.train.patch_size, _batch(spec), 0.0, seed=seed + 2)
        noise = BatchAugment(spec.augment, task.swap_table(), device, seed=seed + 3)
        return _mean_teacher(
            spec,
            trainer,
            paired_views(patches, noise, device),
            lambda logits: torch.softmax(logits, dim=1),
            amp_dtype,
            {"sampler": patches, "augment": noise},
            len(unlabelled),
        )

    from dentpy.inference import network_probabilities
    from dentpy.semi.pseudo_label import IGNORE, SegmentationPseudoLabels, ignore_masked

    def predict(model: torch.nn.Module, case: PreparedCase) -> torch.Tensor:
        return network_probabilities(model, case.image, spec, task.out_channels, device, amp_dtype)

    rounds = SegmentationPseudoLabels(
        round_boundaries_for(spec),
        run_root / "pseudo_labels",
        labelled,
        unlabelled,
        sampler,
        predict,
        paradigm.confidence_threshold,
        len(task.class_names),
    )
    trainer.loss_fn = ignore_masked(trainer.loss_fn)
    # A left/right flip maps each label through the swap table; ignored voxels stay ignored.
    table = augment.swap
    identity = torch.arange(IGNORE + 1, dtype=table.dtype, device=table.device)
    identity[: table.numel()] = table
    augment.swap = identity
    trainer.after_step = rounds.after_step
    return SemiSupervised("pseudo_label", len(unlabelled), {"pseudo_label": rounds}, rounds)


def round_boundaries_for(spec: Spec) -> list[int]:
    from dentpy.semi.pseudo_label import round_boundaries

    return round_boundaries(spec.train.iterations, spec.paradigm.pseudo_label_rounds)


def attach_classification(
    spec: Spec,
    trainer: Trainer,
    task: ClassificationTask,
    unlabelled: np.ndarray,
    images: torch.Tensor,
    labels: torch.Tensor,
    sampler: Any,
    augment: Any,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> SemiSupervised | None:
    """Set up Mean Teacher or pseudo-labelling on a classification `trainer` (None when
    supervised)."""
    import torch

    from dentpy.augment2d import BatchAugment2D
    from dentpy.engine import distributed
    from dentpy.engine.class_sampler import ClassSampler

    if not _semi(spec):
        return None
    paradigm = spec.paradigm
    pool = torch.from_numpy(unlabelled)
    if paradigm.method == "mean_teacher":
        seed = distributed.rank_seed(spec.train.seed)  # several processes: each rank its own
        order = ClassSampler(np.zeros(pool.shape[0], dtype=np.int64), _batch(spec), False, seed + 2)
        noise = BatchAugment2D(spec.augment, device, seed=seed + 3)

        def views() -> tuple[torch.Tensor, torch.Tensor]:
            index = torch.from_numpy(order.next_indices())
            x = pool[index].to(device, non_blocking=True)
            # Image-level outputs do not move with the image: fully independent views.
            return noise(x), noise(x)

        return _mean_teacher(
            spec,
            trainer,
            views,
            task.probabilities,
            amp_dtype,
            {"sampler": order, "augment": noise},
            int(pool.shape[0]),
        )

    from dentpy.semi.pseudo_label import ClassificationPseudoLabels
    from dentpy.train_classification import predict_probabilities

    def predict(model: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
        return predict_probabilities(model, task, batch, device, amp_dtype)

    rounds = ClassificationPseudoLabels(
        round_boundaries_for(spec),
        images,
        labels,
        pool,
        sampler,
        augment,
        predict,
        paradigm.confidence_threshold,
        task.classes,
        device,
    )
    trainer.next_batch = rounds.next_batch
    trainer.after_step = rounds.after_step
    return SemiSupervised("pseudo_label", int(pool.shape[0]), {"pseudo_label": rounds}, rounds)
