"""Registry of losses. Each takes logits (N, C, *spatial) and integer targets (N, 1, *spatial).

For semantic segmentation the mode is multiclass (softmax over C, background included)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dentpy.registry import Registry

if TYPE_CHECKING:
    import torch

LossFactory = Callable[[], "torch.nn.Module"]
LOSSES: Registry[LossFactory] = Registry("loss")


def _cross_entropy() -> torch.nn.Module:
    """Cross-entropy as -sum(one_hot * log_softmax), averaged over voxels.

    The same value as `torch.nn.functional.cross_entropy`, but built from ops that have
    deterministic CUDA kernels: PyTorch's nll_loss2d/3d forward has none, so
    `constraints.deterministic=true` on a GPU would otherwise stop at the first step.
    """
    import torch

    class _CrossEntropy(torch.nn.Module):
        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            log_p = torch.log_softmax(logits, dim=1)
            classes = target.long().clamp(0, logits.shape[1] - 1)
            picked = torch.gather(log_p, 1, classes)
            return -picked.mean()

    return _CrossEntropy()


@LOSSES.register("dice_ce", help="soft Dice (foreground classes) + cross-entropy, equal weights")
def _dice_ce() -> torch.nn.Module:
    import torch
    from monai.losses import DiceLoss

    dice = DiceLoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    cross_entropy = _cross_entropy()

    class _DiceCE(torch.nn.Module):
        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return dice(logits, target) + cross_entropy(logits, target)

    return _DiceCE()


@LOSSES.register("dice", help="soft Dice over foreground classes")
def _dice() -> torch.nn.Module:
    from monai.losses import DiceLoss

    return DiceLoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)


@LOSSES.register("ce", help="cross-entropy")
def _ce() -> torch.nn.Module:
    return _cross_entropy()


@LOSSES.register("dice_focal", help="soft Dice + focal loss (gamma 2)")
def _dice_focal() -> torch.nn.Module:
    from monai.losses import DiceFocalLoss

    return DiceFocalLoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)


def build_loss(name: str) -> torch.nn.Module:
    return LOSSES.get(name)()
