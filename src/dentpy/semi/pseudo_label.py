"""Pseudo-labelling (self-training) in rounds, inside one `dentpy train` run.

`train.iterations` is split evenly into `pseudo_label_rounds + 1` parts. The first part is
plain supervised training. At the end of each part the current network predicts every
unlabelled case; what it is confident about (top class probability >=
`confidence_threshold`) becomes a label, and training continues (same optimizer and
schedule) on the labelled plus the pseudo-labelled cases. Each round replaces the previous
round's pseudo labels.

Segmentation keeps confident voxels: unconfident ones get the label `IGNORE` and add
nothing to the loss (`ignore_masked`). Classification keeps confident images and drops the
others. The counts of each round go into train_summary.json.

Exact resume: the round reached is checkpointed. Segmentation pseudo labels (whole
volumes, too large for every checkpoint) are written to the run folder
(pseudo_labels/round-K/<case id>.npy) and read back on resume; classification's (an index
and a class per kept image) are in the checkpoint itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from dentpy.data.cache import PreparedCase
    from dentpy.engine.class_sampler import ClassSampler
    from dentpy.engine.sampling import PatchSampler
    from dentpy.engine.trainer import Trainer

# Label value of voxels the loss must ignore (class indices stay far below it: uint8 maps).
IGNORE = 255
# Logit given to ignored voxels' background channel (the others get its negative): the
# softmax is then 1 for background to float precision, so those voxels add no gradient and
# nothing to Dice's foreground sums, and ~0 to cross-entropy.
_NEUTRAL_LOGIT = 40.0


def round_boundaries(total_iterations: int, rounds: int) -> list[int]:
    """Iterations after which pseudo labels are (re)made: total split into rounds + 1
    equal parts; boundaries that would fall on or after the last iteration are dropped."""
    out = []
    for k in range(1, rounds + 1):
        at = max(1, (k * total_iterations) // (rounds + 1))
        if at < total_iterations and at not in out:
            out.append(at)
    return out


def ignore_masked(base: torch.nn.Module) -> torch.nn.Module:
    """`base` (a segmentation loss on logits, integer targets) with `IGNORE` voxels neutral:
    their logits are replaced by a constant, certain background prediction and their
    target by background, so they contribute no gradient. Batches without ignored voxels
    get `base` unchanged. (Cross-entropy is still averaged over all voxels, so a patch that
    is mostly ignored weighs a little less.)"""
    import torch

    class _IgnoreMasked(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = base

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            ignore = target == IGNORE
            if not bool(ignore.any()):
                return self.base(logits, target)
            neutral = torch.full_like(logits, -_NEUTRAL_LOGIT)
            neutral[:, 0] = _NEUTRAL_LOGIT
            logits = torch.where(ignore, neutral, logits)
            target = torch.where(ignore, torch.zeros_like(target), target)
            return self.base(logits, target)

    return _IgnoreMasked()


def foreground_positions(label: np.ndarray, n_classes: int) -> tuple[np.ndarray, ...]:
    """Voxel positions per class 1..n (sampled down like the preprocessing cache does)."""
    from dentpy.data.cache import MAX_FOREGROUND_POSITIONS

    rng = np.random.default_rng(0)
    out = []
    for c in range(1, n_classes + 1):
        positions = np.argwhere(label == c).astype(np.int32)
        if len(positions) > MAX_FOREGROUND_POSITIONS:
            positions = positions[
                rng.choice(len(positions), MAX_FOREGROUND_POSITIONS, replace=False)
            ]
        out.append(positions)
    return tuple(out)


class _Rounds:
    """What both tasks share: when to run a round, and the per-round counts."""

    def __init__(self, boundaries: Sequence[int]) -> None:
        self.boundaries = list(boundaries)
        self.round = 0
        self.counts: list[dict[str, Any]] = []

    def after_step(self, trainer: Trainer) -> None:
        from dentpy.engine.distributed import unwrap

        if trainer.iteration not in self.boundaries:
            return
        self.round = self.boundaries.index(trainer.iteration) + 1
        model = unwrap(trainer.model)  # several processes: each rank predicts its share
        model.eval()
        counts = self.make_round(model, self.round)
        model.train()
        self.counts = [c for c in self.counts if c["round"] < self.round]
        self.counts.append({"round": self.round, "iteration": trainer.iteration, **counts})

    def make_round(self, model: torch.nn.Module, round_: int) -> dict[str, Any]:
        raise NotImplementedError

    def use_round(self, round_: int, restoring: bool) -> None:
        raise NotImplementedError

    def base_state(self) -> dict[str, Any]:
        return {"round": self.round, "counts": self.counts}

    def summary(self) -> dict[str, Any]:
        return {"boundaries": self.boundaries, "rounds": self.counts}


class SegmentationPseudoLabels(_Rounds):
    """Voxel pseudo labels for unlabelled volumes, fed to the training `PatchSampler`."""

    def __init__(
        self,
        boundaries: Sequence[int],
        folder: Path,
        labelled: Sequence[PreparedCase],
        unlabelled: Sequence[PreparedCase],
        sampler: PatchSampler,
        predict: Callable[[torch.nn.Module, PreparedCase], torch.Tensor],
        threshold: float,
        n_classes: int,
    ) -> None:
        super().__init__(boundaries)
        self.folder = folder
        self.labelled = list(labelled)
        self.unlabelled = list(unlabelled)
        self.sampler = sampler
        self.predict = predict
        self.threshold = threshold
        self.n_classes = n_classes

    def _path(self, round_: int, case_id: str) -> Path:
        return self.folder / f"round-{round_}" / f"{case_id}.npy"

    def _label_case(self, model: torch.nn.Module, index: int, round_: int) -> list[int]:
        """Predict unlabelled case `index`, write its pseudo label map; returns [voxels
        kept, voxels, kept per class 0..n]."""
        case = self.unlabelled[index]
        probabilities = self.predict(model, case)
        confidence, classes = probabilities.max(dim=0)
        label = classes.cpu().numpy().astype(np.uint8)
        label[confidence.cpu().numpy() < self.threshold] = IGNORE
        path = self._path(round_, case.case_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            np.save(handle, label)
        os.replace(tmp, path)
        confident = label != IGNORE
        per_class = np.bincount(label[confident], minlength=self.n_classes + 1)
        return [int(confident.sum()), int(label.size), *per_class[: self.n_classes + 1].tolist()]

    def make_round(self, model: torch.nn.Module, round_: int) -> dict[str, Any]:
        from dentpy.engine import distributed
        from dentpy.engine.validation import predict_shared

        # Several processes: each rank labels its share of the cases (balanced by voxels)
        # into the run folder, then every rank reads all of them.
        counts = predict_shared(
            model,
            len(self.unlabelled),
            lambda network, indices: [self._label_case(network, i, round_) for i in indices],
            [float(np.prod(c.image.shape)) for c in self.unlabelled],
        )
        distributed.barrier()
        self._check_every_file(round_)
        kept, total, *per_class = (
            np.asarray(counts, dtype=np.int64).reshape(-1, self.n_classes + 3).sum(axis=0).tolist()
        )
        self.use_round(round_, restoring=False)
        return {
            "cases": len(self.unlabelled),
            "voxels_kept": kept,
            "voxels_total": total,
            "fraction_kept": round(kept / total, 4) if total else 0.0,
            "voxels_kept_per_class": per_class,
        }

    def _check_every_file(self, round_: int) -> None:
        """Every rank must see every rank's label maps (one run folder all ranks share)."""
        from dentpy.errors import TrainingError

        missing = [c.case_id for c in self.unlabelled if not self._path(round_, c.case_id).exists()]
        if missing:
            raise TrainingError(
                f"pseudo-label round {round_}: {len(missing)} of {len(self.unlabelled)} label "
                f"maps written by other processes are not visible under {self.folder}",
                expected="one run folder all processes share (with several machines: --runs "
                "on a shared filesystem)",
                found=f"{len(missing)} missing, e.g. round-{round_}/{missing[0]}.npy",
                fix="put --runs on a filesystem every machine mounts, or use "
                "paradigm.method=mean_teacher",
            )

    def use_round(self, round_: int, restoring: bool) -> None:
        from dentpy.data.cache import PreparedCase

        pseudo = []
        for case in self.unlabelled:
            label = np.load(self._path(round_, case.case_id), mmap_mode="r")
            fg = foreground_positions(np.asarray(label), self.n_classes)
            pseudo.append(PreparedCase(case.case_id, case.image, label, fg, case.background))
        # The sampler keeps its generator (checkpointed on its own); only its pool grows.
        self.sampler.use_cases(self.labelled + pseudo)

    def state_dict(self) -> dict[str, Any]:
        return self.base_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.round = int(state["round"])
        self.counts = list(state["counts"])
        if self.round:
            self.use_round(self.round, restoring=True)


class ClassificationPseudoLabels(_Rounds):
    """Image pseudo labels: confident unlabelled images join the training pool.

    `next_batch` replaces the trainer's: it draws from the pool (labelled images first,
    then the kept unlabelled ones) with the run's own sampler and augmentation."""

    def __init__(
        self,
        boundaries: Sequence[int],
        images: torch.Tensor,
        labels: torch.Tensor,
        unlabelled: torch.Tensor,
        sampler: ClassSampler,
        augment: Callable[[torch.Tensor], torch.Tensor],
        predict: Callable[[torch.nn.Module, np.ndarray], np.ndarray],
        threshold: float,
        classes: Sequence[str],
        device: torch.device,
    ) -> None:
        super().__init__(boundaries)
        self.labelled_images = images
        self.labelled_labels = labels
        self.unlabelled = unlabelled
        self.sampler = sampler
        self.augment = augment
        self.predict = predict
        self.threshold = threshold
        self.classes = list(classes)
        self.device = device
        self.images = images
        self.labels = labels
        self.kept_index = np.zeros(0, dtype=np.int64)
        self.kept_class = np.zeros(0, dtype=np.int64)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        index = torch.from_numpy(self.sampler.next_indices())
        images = self.images[index].to(self.device, non_blocking=True)
        return self.augment(images), self.labels[index].to(self.device, non_blocking=True)

    def make_round(self, model: torch.nn.Module, round_: int) -> dict[str, Any]:
        from dentpy.engine.validation import predict_shared

        pool = self.unlabelled.numpy()
        # Several processes: each rank predicts its share; every rank gets all rows.
        rows = predict_shared(
            model,
            pool.shape[0],
            lambda network, indices: list(
                self.predict(network, pool[np.asarray(indices, dtype=np.int64)])
            ),
        )
        probabilities = np.stack(rows) if rows else np.zeros((0, len(self.classes)))
        confident = probabilities.max(axis=1) >= self.threshold
        self.kept_index = np.flatnonzero(confident).astype(np.int64)
        self.kept_class = probabilities.argmax(axis=1)[confident].astype(np.int64)
        self.use_round(round_, restoring=False)
        per_class = np.bincount(self.kept_class, minlength=len(self.classes))
        return {
            "images": int(self.unlabelled.shape[0]),
            "kept": int(confident.sum()),
            "kept_per_class": dict(zip(self.classes, per_class.tolist(), strict=True)),
        }

    def use_round(self, round_: int, restoring: bool) -> None:
        import torch

        index = torch.from_numpy(self.kept_index)
        self.images = torch.cat([self.labelled_images, self.unlabelled[index]])
        self.labels = torch.cat([self.labelled_labels, torch.from_numpy(self.kept_class)])
        labels = self.labels.numpy()
        sampler = self.sampler
        sampler.labels = labels
        weights = 1.0 / np.bincount(labels)[labels]
        sampler.weights = weights / weights.sum()
        if not restoring:
            # A new pass over the grown pool; on resume the order comes from the checkpoint.
            sampler.order = sampler.rng.permutation(labels.size)
            sampler.position = 0

    def state_dict(self) -> dict[str, Any]:
        import torch

        return {
            **self.base_state(),
            "kept_index": torch.from_numpy(self.kept_index.copy()),
            "kept_class": torch.from_numpy(self.kept_class.copy()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.round = int(state["round"])
        self.counts = list(state["counts"])
        self.kept_index = state["kept_index"].numpy().astype(np.int64)
        self.kept_class = state["kept_class"].numpy().astype(np.int64)
        if self.round:
            self.use_round(self.round, restoring=True)
