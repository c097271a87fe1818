"""Registry of segmentation losses: logits (N, C, *spatial), targets (N, 1, *spatial).

Every loss has a mode (`dentpy.losses_core`): multiclass (softmax over C, background
included; the segmentation default), binary (one sigmoid logit) or multilabel (a sigmoid
per channel). Pointwise terms (ce, bce, focal, gce, sce, mse, l1) are dentpy's own
deterministic implementation shared with classification; region terms (dice, jaccard,
tversky, generalized_dice) are MONAI's, fed with probabilities and one-hot targets so the
mode decides the activation. `loss.name` may be a weighted sum of two registered names
(`"0.7*dice + 0.3*focal"`, `dentpy.losses_names`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dentpy.losses_core import LossConfig, pointwise_loss
from dentpy.losses_names import parse_loss_expression
from dentpy.registry import Registry

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Loss

LossFactory = Callable[[LossConfig], "torch.nn.Module"]
LOSSES: Registry[LossFactory] = Registry("loss")


def region_form(
    logits: torch.Tensor, target: torch.Tensor, mode: str, background: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities and targets (N, C', M) of the channels a region loss scores.

    Multiclass: softmax and one-hot, without channel 0 when it is background. Binary: the
    foreground sigmoid. Multilabel: every channel's sigmoid. Spatial axes are flattened
    (the sums are the same) so (N, C) classification logits work too.
    """
    import torch
    import torch.nn.functional as F

    from dentpy.losses_core import binary_logit, labels_of, multi_hot

    logits = logits.float()
    n, c = logits.shape[0], logits.shape[1]
    if mode == "multiclass":
        probs = torch.softmax(logits, dim=1).reshape(n, c, -1)
        truth = F.one_hot(labels_of(logits, target), c).permute(0, 2, 1).float()
        if background and c > 1:
            return probs[:, 1:], truth[:, 1:]
        return probs, truth
    if mode == "binary":
        probs = torch.sigmoid(binary_logit(logits)).reshape(n, 1, -1)
        if target.is_floating_point() and target.dim() == logits.dim():
            truth = target.float().reshape(n, 1, -1)
        else:
            truth = labels_of(logits, target).clamp(0, 1).float().reshape(n, 1, -1)
        return probs, truth
    if mode == "multilabel":
        return torch.sigmoid(logits).reshape(n, c, -1), multi_hot(logits, target)
    raise ValueError(f"unknown loss mode {mode!r}")


def _region_weights(config: LossConfig) -> list[float] | None:
    """Class weights for the channels `region_form` keeps (None: unweighted)."""
    weights = config.class_weights
    if weights is None or config.mode == "binary":
        return None
    if config.mode == "multiclass" and config.background and len(weights) > 1:
        return list(weights[1:])
    return list(weights)


def region_loss(kind: str, config: LossConfig) -> torch.nn.Module:
    """MONAI's Dice family over the whole batch (batch=True: one Dice per class, so a
    patch without a class does not count as a failed prediction of it)."""
    import torch
    from monai.losses import DiceLoss, GeneralizedDiceLoss, TverskyLoss

    loss: torch.nn.Module
    if kind in ("dice", "jaccard"):
        loss = DiceLoss(batch=True, jaccard=kind == "jaccard", weight=_region_weights(config))
    elif kind == "tversky":
        loss = TverskyLoss(batch=True, alpha=config.tversky_alpha, beta=config.tversky_beta)
    elif kind == "generalized_dice":
        loss = GeneralizedDiceLoss(batch=True)
    else:
        raise ValueError(f"unknown region loss {kind!r}")

    class _Region(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.loss = loss

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            probs, truth = region_form(logits, target, config.mode, config.background)
            value: torch.Tensor = self.loss(probs, truth)
            return value

    return _Region()


def weighted_sum(parts: list[tuple[float, torch.nn.Module]]) -> torch.nn.Module:
    """sum_i w_i * loss_i(logits, target); a single term of weight 1 is returned as is."""
    import torch

    if len(parts) == 1 and parts[0][0] == 1.0:
        return parts[0][1]

    class WeightedSum(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = [w for w, _ in parts]
            self.parts = torch.nn.ModuleList([m for _, m in parts])

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            total: torch.Tensor = self.weights[0] * self.parts[0](logits, target)
            for weight, part in zip(self.weights[1:], self.parts[1:], strict=True):
                total = total + weight * part(logits, target)
            return total

    return WeightedSum()


def _pointwise(kind: str, help: str, name: str | None = None) -> None:
    LOSSES.register(name or kind, help=help)(lambda config: pointwise_loss(kind, config))


def _region(kind: str, help: str) -> None:
    LOSSES.register(kind, help=help)(lambda config: region_loss(kind, config))


def _pair(name: str, first: LossFactory, second: LossFactory, help: str) -> None:
    LOSSES.register(name, help=help)(
        lambda config: weighted_sum([(1.0, first(config)), (1.0, second(config))])
    )


_pointwise("ce", "cross-entropy (label_smoothing, class_weights)")
_pointwise("bce", "binary cross-entropy per channel (one-vs-rest in multiclass mode)")
_pointwise("focal", "focal loss, (1-p)^focal_gamma * CE (Lin et al. 2017)")
_pointwise("gce", "generalized CE (1 - p^q)/q for noisy labels (Zhang & Sabuncu 2018)")
_pointwise("sce", "symmetric CE, sce_alpha*CE + sce_beta*reverse CE (Wang et al. 2019)")
_pointwise("mse", "mean squared error of probabilities vs one-hot targets")
_pointwise("l1", "mean absolute error of probabilities vs one-hot targets")
_pointwise("l1", "alias of l1 (mean absolute error)", name="mae")
_region("dice", "soft Dice (foreground classes in multiclass mode), MONAI DiceLoss")
_region("jaccard", "soft Jaccard / IoU, MONAI DiceLoss(jaccard=True)")
_region("tversky", "Tversky (tversky_alpha weights FP, tversky_beta FN), MONAI")
_region("generalized_dice", "generalized Dice (classes weighted 1/volume^2), MONAI")
_pair("dice_ce", LOSSES.get("dice"), LOSSES.get("ce"), "soft Dice + cross-entropy")
_pair("dice_focal", LOSSES.get("dice"), LOSSES.get("focal"), "soft Dice + focal loss")
_pair("jaccard_focal", LOSSES.get("jaccard"), LOSSES.get("focal"), "soft Jaccard + focal")


def build_loss(name: str, config: LossConfig | None = None) -> torch.nn.Module:
    """The loss `name` names (a registered name or a weighted sum of two); SpecError with a
    suggestion for an unknown name."""
    config = config or LossConfig()
    terms = parse_loss_expression(name)
    return weighted_sum([(term.weight, LOSSES.get(term.name)(config)) for term in terms])


def loss_config(
    loss: Loss,
    n_classes: int,
    *,
    background: bool,
    auto_weights: Sequence[float] | None = None,
) -> LossConfig:
    """Resolve the spec's `loss` section for a network with `n_classes` output classes.

    `auto_weights` are what `class_weights: auto` means for the task (segmentation: none
    for now; classification: the class-imbalance weights). SpecError when the mode or the
    weights do not fit the classes.
    """
    from dentpy.errors import SpecError

    mode = "multiclass" if loss.mode == "auto" else loss.mode
    if mode == "binary" and n_classes != 2:
        raise SpecError(
            f"loss.mode binary needs 2 classes (background/absent and one), found {n_classes}",
            expected="2 classes, e.g. one segmented structure or a binary objective",
            found=f"{n_classes} classes",
            fix="set loss.mode=multiclass (or multilabel for one sigmoid per class)",
        )
    weights: Sequence[float] | None
    if loss.class_weights == "auto":
        weights = auto_weights
    elif loss.class_weights == "none":
        weights = None
    else:
        weights = loss.class_weights
        if len(weights) != n_classes:
            what = "background first, then each class" if background else "one per class"
            raise SpecError(
                f"loss.class_weights has {len(weights)} entries for {n_classes} classes",
                expected=f"{n_classes} weights ({what})",
                found=str(list(weights)),
                fix="give one weight per class, or loss.class_weights=none",
            )
    return LossConfig(
        mode=mode,
        label_smoothing=loss.label_smoothing,
        focal_gamma=loss.focal_gamma,
        tversky_alpha=loss.tversky_alpha,
        tversky_beta=loss.tversky_beta,
        gce_q=loss.gce_q,
        sce_alpha=loss.sce_alpha,
        sce_beta=loss.sce_beta,
        class_weights=None if weights is None else tuple(float(w) for w in weights),
        background=background,
    )
