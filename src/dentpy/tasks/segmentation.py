"""Semantic and FDI-instance segmentation: one output channel per class plus background,
argmax decoding.

Instance segmentation (strategy: one class per FDI number, then per-class component
cleaning, `dentpy.instances`) is the same network and loss with more classes: each tooth
(and/or each tooth's pulp) is a class whose dataset label id is its FDI number (pulp:
100 + FDI), as in ToothFairy2/3. What differs is the left/right flip, which must renumber
teeth (36 <-> 46), and the evaluation, which matches instances.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dentpy.augment import side_swap_table
from dentpy.errors import SpecError
from dentpy.registry import did_you_mean

if TYPE_CHECKING:
    import numpy as np
    import torch

    from dentpy.data.cache import PreparedCase
    from dentpy.engine.validation import ShardedValidation
    from dentpy.spec import Spec


@dataclass(frozen=True)
class SegmentationTask:
    """Class i (1-based) of the network = the union of `class_label_ids[i-1]` in the data."""

    class_names: tuple[str, ...]
    class_label_ids: tuple[tuple[int, ...], ...]
    # None: semantic. "teeth" | "pulp" | "teeth+pulp": instance output (objective.instances).
    instances: str | None = None

    @property
    def out_channels(self) -> int:
        return len(self.class_names) + 1

    def build_model(self, spec: Spec) -> torch.nn.Module:
        from dentpy.models import build_model

        return build_model(spec.model, in_channels=1, out_channels=self.out_channels)

    def build_loss(
        self, spec: Spec, auto_weights: Sequence[float] | None = None
    ) -> torch.nn.Module:
        """`loss.name` (or a weighted sum) in `loss.mode`, channel 0 being background.
        `loss.class_weights: auto` takes `auto_weights`: the weights train resolved from
        `constraints.class_weights` (dentpy.imbalance; None = unweighted)."""
        from dentpy.losses import build_loss, loss_config

        return build_loss(
            spec.loss.name,
            loss_config(spec.loss, self.out_channels, background=True, auto_weights=auto_weights),
        )

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=1, keepdim=True)

    def swap_table(self) -> list[int] | None:
        if self.instances is None:
            return side_swap_table(list(self.class_names))
        from dentpy.tasks.instance import instance_swap_table

        return instance_swap_table(self.class_names, self.class_label_ids)

    def instance_label_ids(self, family: str) -> tuple[int, ...]:
        """Dataset label ids of one instance family ("teeth" or "pulp") this task learns."""
        from dentpy.tasks.instance import family_of

        return tuple(
            ids[0] for ids in self.class_label_ids if len(ids) == 1 and family_of(ids[0]) == family
        )

    def validation(
        self,
        cases: Sequence[PreparedCase],
        spec: Spec,
        device: torch.device,
        amp_dtype: torch.dtype | None,
    ) -> ShardedValidation:
        """Mean Dice per class over validation cases (network space), and their mean:
        `score`, which picks the best checkpoint. A class absent from both prediction and
        truth counts as Dice 1 (DESIGN.md §4). Several processes share the cases, balanced
        by voxels (dentpy.engine.validation)."""
        import numpy as np

        from dentpy.engine.validation import ShardedValidation
        from dentpy.inference import network_probabilities

        n_classes = len(self.class_names)

        def predict(model: torch.nn.Module, indices: Sequence[int]) -> list[list[float]]:
            per_case = []
            for index in indices:
                case = cases[index]
                probabilities = network_probabilities(
                    model, case.image, spec, self.out_channels, device, amp_dtype
                )
                prediction = probabilities.argmax(0).cpu().numpy()
                truth = np.asarray(case.label)
                per_case.append(
                    [_dice(prediction == c, truth == c) for c in range(1, n_classes + 1)]
                )
            return per_case

        def score(per_case: list[list[float]]) -> dict[str, float]:
            by_class = np.asarray(per_case, dtype=np.float64).reshape(-1, n_classes)
            scores = {
                f"dice_{name}": float(np.mean(by_class[:, c]))
                for c, name in enumerate(self.class_names)
            }
            scores["score"] = float(np.mean(list(scores.values())))
            return scores

        return ShardedValidation(
            len(cases), predict, score, costs=[float(np.prod(c.image.shape)) for c in cases]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": "segmentation",
            "class_names": list(self.class_names),
            "class_label_ids": [list(ids) for ids in self.class_label_ids],
            "instances": self.instances,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentationTask:
        return cls(
            tuple(data["class_names"]),
            tuple(tuple(ids) for ids in data["class_label_ids"]),
            data.get("instances"),
        )


def _dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two masks; 1.0 when both are empty."""
    denominator = int(prediction.sum()) + int(truth.sum())
    return 1.0 if denominator == 0 else 2 * int((prediction & truth).sum()) / denominator


def build_segmentation_task(spec: Spec, dataset_labels: Mapping[str, int]) -> SegmentationTask:
    """Resolve `objective.classes` (and, for instance output, `objective.instances`) against
    the dataset's label names."""
    names = [n for n, i in dataset_labels.items() if i != 0]
    if spec.objective.output == "instance":
        from dentpy.tasks.instance import instance_class_names

        extra = [] if spec.objective.classes == "auto" else list(spec.objective.classes)
        _check_names(extra, dataset_labels, names, "objective.classes")
        wanted = instance_class_names(dataset_labels, spec.objective.instances) + [
            n for n in extra if n not in instance_class_names(dataset_labels, "teeth+pulp")
        ]
        _check_keep_largest(spec, wanted)
        return SegmentationTask(
            tuple(wanted), tuple((dataset_labels[n],) for n in wanted), spec.objective.instances
        )
    wanted = names if spec.objective.classes == "auto" else list(spec.objective.classes)
    if not wanted:
        raise SpecError(
            "objective.classes is empty",
            expected="at least one label name to segment",
            found="[]",
            fix=f"choose from: {', '.join(names)}",
        )
    _check_names(wanted, dataset_labels, names, "objective.classes")
    _check_keep_largest(spec, wanted)
    return SegmentationTask(tuple(wanted), tuple((dataset_labels[n],) for n in wanted))


def _check_names(
    wanted: list[str], dataset_labels: Mapping[str, int], names: list[str], key: str
) -> None:
    for name in wanted:
        if name not in dataset_labels or dataset_labels[name] == 0:
            raise SpecError(
                f"{key} names '{name}', which the dataset does not label",
                expected=f"one of the dataset's labels: {', '.join(names)}",
                found=name,
                fix=did_you_mean(name, names),
            )


def _check_keep_largest(spec: Spec, wanted: list[str]) -> None:
    for name in spec.postprocess.keep_largest:
        if name not in wanted:
            raise SpecError(
                f"postprocess.keep_largest names '{name}', which is not a trained class",
                expected=f"some of objective.classes: {', '.join(wanted)}",
                found=name,
                fix=did_you_mean(name, wanted),
            )
