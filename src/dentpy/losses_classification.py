"""Registry of image-classification losses: logits (N, n_outputs), targets (N,) long -> scalar.

The softmax/sigmoid losses are the segmentation ones without spatial dimensions
(`dentpy.losses_core`, one implementation for both tasks), so every mode (multiclass,
binary, multilabel), class weights and label smoothing mean the same in both. CORAL
(ordinal, C-1 cumulative logits) is classification's own. Region losses (Dice, ...) are
segmentation-only.

Every loss is built from log_softmax / logsigmoid and elementwise ops, never from
`F.cross_entropy`, `F.nll_loss` or `F.binary_cross_entropy_with_logits` reductions whose
CUDA kernels are not deterministic, so `constraints.deterministic=true` works on a GPU.

Weighting follows PyTorch's convention for `cross_entropy(weight=...)`: a weighted mean,
divided by the summed weight of each sample's true class, so the loss scale does not
depend on the batch's class mix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dentpy.errors import SpecError
from dentpy.losses_core import LossConfig, pointwise_loss
from dentpy.losses_names import parse_loss_expression
from dentpy.registry import Registry, did_you_mean

if TYPE_CHECKING:
    import torch

# (n_classes, config) -> loss module
ClassificationLossFactory = Callable[[int, LossConfig], "torch.nn.Module"]
CLASSIFICATION_LOSSES: Registry[ClassificationLossFactory] = Registry("classification loss")
# Segmentation-only losses and the classification loss that plays their part for images.
SEGMENTATION_ONLY = {
    "dice": "ce",
    "dice_ce": "ce",
    "dice_focal": "focal",
    "jaccard": "ce",
    "jaccard_focal": "focal",
    "tversky": "ce",
    "generalized_dice": "ce",
}


def _pointwise(kind: str, help: str, name: str | None = None) -> None:
    CLASSIFICATION_LOSSES.register(name or kind, help=help)(
        lambda n_classes, config: pointwise_loss(kind, config)
    )


_pointwise("ce", "softmax cross-entropy (optional class weights, label smoothing)")
_pointwise("focal", "multi-class focal loss (loss.focal_gamma; class weights act as alpha)")
_pointwise("bce", "binary cross-entropy (binary mode; one-vs-rest per class otherwise)")
_pointwise("gce", "generalized CE (1 - p^q)/q for noisy labels (Zhang & Sabuncu 2018)")
_pointwise("sce", "symmetric CE, sce_alpha*CE + sce_beta*reverse CE (Wang et al. 2019)")
_pointwise("mse", "mean squared error of probabilities vs one-hot targets")
_pointwise("l1", "mean absolute error of probabilities vs one-hot targets")
_pointwise("l1", "alias of l1 (mean absolute error)", name="mae")


@CLASSIFICATION_LOSSES.register(
    "coral", help="ordinal CORAL: C-1 logits for P(grade > k), binary CE per threshold"
)
def _coral(n_classes: int, config: LossConfig) -> torch.nn.Module:
    import torch

    weights = None if config.class_weights is None else torch.tensor(config.class_weights)
    return coral_loss(n_classes, class_weights=weights, label_smoothing=config.label_smoothing)


def check_classification_loss(name: str) -> None:
    """SpecError unless `name` is a classification loss or a weighted sum of two (CORAL,
    which needs C-1 cumulative logits, only on its own)."""
    terms = parse_loss_expression(name)
    choices = CLASSIFICATION_LOSSES.names()
    for term in terms:
        if term.name in SEGMENTATION_ONLY or term.name not in choices:
            if term.name in SEGMENTATION_ONLY:
                fix = (
                    f"'{term.name}' is a segmentation loss; did you mean "
                    f"'{SEGMENTATION_ONLY[term.name]}'?"
                )
            else:
                fix = did_you_mean(term.name, choices)
            raise SpecError(
                f"loss.name '{term.name}' is not a classification loss",
                expected=f"one of: {', '.join(choices)} (or a weighted sum of two)",
                found=name,
                fix=fix,
            )
    if len(terms) > 1 and any(term.name == "coral" for term in terms):
        raise SpecError(
            "the coral loss cannot be summed with another loss",
            expected="coral alone (its network emits C-1 cumulative logits, not C)",
            found=name,
            fix="set loss.name=coral",
        )


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
    return name.strip() == "coral"


def build_classification_loss(
    name: str,
    n_classes: int,
    class_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    focal_gamma: float = 2.0,
    **options: Any,
) -> torch.nn.Module:
    """Build the loss a spec names (SpecError with a suggestion if unknown).

    `options` are further `LossConfig` fields (mode, gce_q, sce_alpha, ...); the mode
    defaults to multiclass (C softmax logits, also for binary outputs).
    """
    config = replace(
        LossConfig(background=False),
        label_smoothing=label_smoothing,
        focal_gamma=focal_gamma,
        class_weights=None
        if class_weights is None
        else tuple(float(w) for w in class_weights.flatten().tolist()),
        **options,
    )
    return build_configured_classification_loss(name, n_classes, config)


def build_configured_classification_loss(
    name: str, n_classes: int, config: LossConfig
) -> torch.nn.Module:
    """`name` (or a weighted sum of two) with a resolved config; mode auto = multiclass."""
    from dentpy.losses import weighted_sum

    check_classification_loss(name)
    if config.mode == "auto":
        config = replace(config, mode="multiclass")
    if config.class_weights is not None and len(config.class_weights) != n_classes:
        raise ValueError(
            f"class_weights has {len(config.class_weights)} entries for {n_classes} classes"
        )
    terms = parse_loss_expression(name)
    return weighted_sum(
        [(t.weight, CLASSIFICATION_LOSSES.get(t.name)(n_classes, config)) for t in terms]
    )
