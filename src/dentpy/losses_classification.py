"""Registry of image-classification losses: logits (N, n_outputs), targets (N,) long -> scalar.

Every loss is built from log_softmax / logsigmoid and gather, never from
`F.cross_entropy`, `F.nll_loss` or `F.binary_cross_entropy_with_logits` reductions whose
CUDA kernels are not deterministic (see `dentpy.losses._cross_entropy`), so
`constraints.deterministic=true` works on a GPU.

Weighting follows PyTorch's convention for `cross_entropy(weight=...)`: a weighted mean,
divided by the summed weight of each sample's true class, so the loss scale does not
depend on the batch's class mix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dentpy.registry import Registry

if TYPE_CHECKING:
    import torch

ClassificationLossFactory = Callable[[int, "torch.Tensor | None", float, float], "torch.nn.Module"]
CLASSIFICATION_LOSSES: Registry[ClassificationLossFactory] = Registry("classification loss")


def _softmax_loss(
    n_classes: int, class_weights: torch.Tensor | None, label_smoothing: float, gamma: float
) -> torch.nn.Module:
    """Softmax cross-entropy with a focal factor (1 - p)^gamma; gamma 0 is plain CE.

    With label smoothing eps the target is (1 - eps) on the true class plus eps / C on
    every class, exactly as `F.cross_entropy(label_smoothing=eps)` defines it, and the
    focal factor is applied per class term.
    """
    import torch

    class _SoftmaxLoss(torch.nn.Module):
        weight: torch.Tensor | None

        def __init__(self) -> None:
            super().__init__()
            if class_weights is not None:
                weights = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
                if weights.numel() != n_classes:
                    raise ValueError(
                        f"class_weights has {weights.numel()} entries for {n_classes} classes"
                    )
                self.register_buffer("weight", weights)
            else:
                self.weight = None
            self.gamma = float(gamma)
            self.smoothing = float(label_smoothing)

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            log_p = torch.log_softmax(logits.float(), dim=1)
            terms = -log_p  # (N, C): the loss if that class were the target
            if self.gamma > 0:
                terms = terms * (1 - log_p.exp()).clamp(min=0) ** self.gamma
            target = target.long().reshape(-1, 1)
            if self.weight is not None:
                weight = self.weight.to(logits.device)
                terms = terms * weight
                sample_weight = weight[target[:, 0]]
            else:
                sample_weight = torch.ones(target.shape[0], device=logits.device)
            picked = torch.gather(terms, 1, target)[:, 0]
            per_sample = (1 - self.smoothing) * picked
            if self.smoothing > 0:
                per_sample = per_sample + self.smoothing / logits.shape[1] * terms.sum(1)
            return per_sample.sum() / sample_weight.sum()

    return _SoftmaxLoss()


@CLASSIFICATION_LOSSES.register(
    "ce", help="softmax cross-entropy (optional class weights, label smoothing)"
)
def _ce(
    n_classes: int, class_weights: torch.Tensor | None, label_smoothing: float, focal_gamma: float
) -> torch.nn.Module:
    return _softmax_loss(n_classes, class_weights, label_smoothing, 0.0)


@CLASSIFICATION_LOSSES.register(
    "focal", help="multi-class focal loss (loss.focal_gamma; class weights act as alpha)"
)
def _focal(
    n_classes: int, class_weights: torch.Tensor | None, label_smoothing: float, focal_gamma: float
) -> torch.nn.Module:
    return _softmax_loss(n_classes, class_weights, label_smoothing, focal_gamma)


@CLASSIFICATION_LOSSES.register(
    "coral", help="ordinal CORAL: C-1 logits for P(grade > k), binary CE per threshold"
)
def _coral(
    n_classes: int, class_weights: torch.Tensor | None, label_smoothing: float, focal_gamma: float
) -> torch.nn.Module:
    return coral_loss(n_classes, class_weights=class_weights, label_smoothing=label_smoothing)


def coral_loss(
    n_classes: int,
    class_weights: torch.Tensor | None = None,
    task_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.nn.Module:
    """Ordinal regression as C-1 binary tasks "is the grade above k?" (Cao et al., CORAL).

    Logit k predicts P(y > k); the target of task k is 1 when y > k. Each task's binary
    cross-entropy is computed from logsigmoid (deterministic, numerically stable).
    `task_weights` (C-1) weight the thresholds; `class_weights` (C) weight each sample by
    its true grade, which is how the class-imbalance setting reaches an ordinal loss.
    Label smoothing eps moves binary targets to eps/2 and 1 - eps/2.
    """
    import torch
    import torch.nn.functional as F

    n_tasks = n_classes - 1
    if n_tasks < 1:
        raise ValueError("the CORAL loss needs at least 2 classes")

    class _CoralLoss(torch.nn.Module):
        class_weight: torch.Tensor | None
        task_weight: torch.Tensor | None

        def __init__(self) -> None:
            super().__init__()
            for name, values, size in (
                ("class_weight", class_weights, n_classes),
                ("task_weight", task_weights, n_tasks),
            ):
                if values is None:
                    setattr(self, name, None)
                    continue
                tensor = torch.as_tensor(values, dtype=torch.float32).flatten()
                if tensor.numel() != size:
                    raise ValueError(f"{name} has {tensor.numel()} entries, expected {size}")
                self.register_buffer(name, tensor)
            self.smoothing = float(label_smoothing)

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            logits = logits.float()
            target = target.long().reshape(-1)
            thresholds = torch.arange(n_tasks, device=logits.device)
            levels = (target[:, None] > thresholds[None, :]).float()
            if self.smoothing > 0:
                levels = levels * (1 - self.smoothing) + self.smoothing / 2
            bce = -(levels * F.logsigmoid(logits) + (1 - levels) * F.logsigmoid(-logits))
            if self.task_weight is not None:
                task_weight = self.task_weight.to(logits.device)
            else:
                task_weight = torch.ones(n_tasks, device=logits.device)
            per_sample = (bce * task_weight).sum(1)
            if self.class_weight is not None:
                sample_weight = self.class_weight.to(logits.device)[target]
            else:
                sample_weight = torch.ones_like(per_sample)
            return (per_sample * sample_weight).sum() / (sample_weight.sum() * task_weight.sum())

    return _CoralLoss()


def is_cumulative(name: str) -> bool:
    """Whether a loss name means C-1 cumulative logits instead of C softmax logits."""
    return name == "coral"


def build_classification_loss(
    name: str,
    n_classes: int,
    class_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    focal_gamma: float = 2.0,
) -> torch.nn.Module:
    """Build the loss a spec names (SpecError with a suggestion if unknown)."""
    return CLASSIFICATION_LOSSES.get(name)(n_classes, class_weights, label_smoothing, focal_gamma)
