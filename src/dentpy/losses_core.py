"""One implementation of every loss, for segmentation and classification alike.

Classification is segmentation without spatial dimensions: logits (N, C, *spatial) with
`spatial` possibly empty, targets (N, *spatial) or (N, 1, *spatial) integer labels (binary
and multiclass) or (N, C, *spatial) multi-hot (multilabel).

Modes say how logits become probabilities:

- multiclass: softmax over the C channels, one integer label per voxel/image.
- binary: one logit, sigmoid, target 0/1. A two-channel head is accepted too: its logit
  difference l1 - l0 is the binary logit (softmax of two logits is that sigmoid), so a
  two-class network trains the same way in either mode.
- multilabel: one sigmoid per channel, multi-hot targets; integer labels are one-hot
  encoded (one-vs-rest).

Pointwise losses (ce, bce, focal, gce, sce, mse, l1) are written once over a common form:
per position, a distribution over K outcomes (log-probabilities `log_p`, targets `q`).
Multiclass: K = C. Binary and multilabel: K = 2 (absent, present) per channel. Every loss
is a sum over outcomes of a per-outcome contribution, so class weights and label smoothing
act the same way everywhere: the weighted mean follows `F.cross_entropy(weight=...)`
(divided by the summed weight of each position's true class) and smoothing eps turns the
target into (1 - eps) * one_hot + eps / K. Only log_softmax/logsigmoid, gather-free
elementwise ops and sums are used: their CUDA kernels are deterministic, unlike
nll_loss2d/3d's (see `constraints.deterministic`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Reverse cross-entropy clips log(0) of a one-hot target to A = -4 (Wang et al. 2019).
RCE_LOG_ZERO = -4.0


@dataclass(frozen=True)
class LossConfig:
    """Everything a loss needs besides its name (the spec's `loss` section, resolved)."""

    mode: str = "multiclass"
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    tversky_alpha: float = 0.3
    tversky_beta: float = 0.7
    gce_q: float = 0.7
    sce_alpha: float = 0.1
    sce_beta: float = 1.0
    # One weight per class (segmentation: background first), or None.
    class_weights: tuple[float, ...] | None = None
    # Channel 0 is background (segmentation): region terms (Dice, ...) leave it out.
    background: bool = True


@dataclass
class PointwiseForm:
    """Per position (N, K, M): log-probabilities, hard targets, and class weights."""

    log_p: torch.Tensor
    q: torch.Tensor
    weight: torch.Tensor | None  # broadcastable to (N, K, M)


def labels_of(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Integer labels (N, M) from targets (N, *spatial) or (N, 1, *spatial)."""
    if target.dim() == logits.dim():
        if target.shape[1] != 1:
            raise ValueError(
                f"integer targets need one channel, got shape {tuple(target.shape)} for "
                f"logits {tuple(logits.shape)}"
            )
        target = target[:, 0]
    if tuple(target.shape) != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"targets of shape {tuple(target.shape)} do not fit logits {tuple(logits.shape)}"
        )
    return target.long().clamp(0, max(logits.shape[1] - 1, 1)).reshape(logits.shape[0], -1)


def binary_logit(logits: torch.Tensor) -> torch.Tensor:
    """The one logit of binary mode (N, 1, *spatial); a 2-channel head gives l1 - l0."""
    if logits.shape[1] == 1:
        return logits
    if logits.shape[1] == 2:
        return logits[:, 1:] - logits[:, :1]
    raise ValueError(f"binary mode needs 1 or 2 logit channels, got {logits.shape[1]}")


def multi_hot(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Float targets (N, C, M) for multilabel mode; integer labels are one-hot encoded."""
    import torch

    n, c = logits.shape[0], logits.shape[1]
    if (
        target.dim() == logits.dim()
        and target.shape[1] == c
        and (c > 1 or target.is_floating_point())
    ):
        if tuple(target.shape) != tuple(logits.shape):
            raise ValueError(
                f"multi-hot targets {tuple(target.shape)} do not fit logits {tuple(logits.shape)}"
            )
        return target.float().reshape(n, c, -1)
    labels = labels_of(logits, target)
    return torch.nn.functional.one_hot(labels, c).permute(0, 2, 1).float()


def pointwise_form(
    logits: torch.Tensor, target: torch.Tensor, mode: str, class_weight: torch.Tensor | None
) -> PointwiseForm:
    import torch
    import torch.nn.functional as F

    logits = logits.float()
    n, c = logits.shape[0], logits.shape[1]
    weight = None if class_weight is None else class_weight.to(logits.device).float()
    if mode == "multiclass":
        log_p = torch.log_softmax(logits, dim=1).reshape(n, c, -1)
        q = F.one_hot(labels_of(logits, target), c).permute(0, 2, 1).float()
        return PointwiseForm(log_p, q, None if weight is None else weight.view(1, c, 1))
    if mode == "binary":
        x = binary_logit(logits).reshape(n, 1, -1)
        if target.is_floating_point() and target.dim() == logits.dim():
            y = target.float().reshape(n, 1, -1)
        else:
            y = labels_of(logits, target).clamp(0, 1).float().reshape(n, 1, -1)
        log_p = torch.cat([F.logsigmoid(-x), F.logsigmoid(x)], dim=1)
        q = torch.cat([1 - y, y], dim=1)
        if weight is not None and weight.numel() != 2:
            raise ValueError(f"binary mode takes 2 class weights, got {weight.numel()}")
        return PointwiseForm(log_p, q, None if weight is None else weight.view(1, 2, 1))
    if mode == "multilabel":
        y = multi_hot(logits, target)
        x = logits.reshape(n, c, -1)
        log_p = torch.stack([F.logsigmoid(-x), F.logsigmoid(x)], dim=1).reshape(n, 2, -1)
        q = torch.stack([1 - y, y], dim=1).reshape(n, 2, -1)
        if weight is not None:
            weight = weight.view(1, 1, c, 1).expand(1, 1, c, x.shape[2]).reshape(1, 1, -1)
        return PointwiseForm(log_p, q, weight)
    raise ValueError(f"unknown loss mode {mode!r}")


# A pointwise loss: (log_p, p, smoothed targets, config) -> per-outcome contributions.
Contribution = Callable[
    ["torch.Tensor", "torch.Tensor", "torch.Tensor", LossConfig], "torch.Tensor"
]


def _ce(log_p: torch.Tensor, p: torch.Tensor, q: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    return -q * log_p


def _focal(log_p: torch.Tensor, p: torch.Tensor, q: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Lin et al. 2017: (1 - p)^gamma down-weights the outcomes already predicted well."""
    if cfg.focal_gamma == 0:
        return -q * log_p
    return -q * (1 - p).clamp(min=0) ** cfg.focal_gamma * log_p


def _gce(log_p: torch.Tensor, p: torch.Tensor, q: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Generalized CE (Zhang & Sabuncu 2018): (1 - p_y^q) / q; CE as q -> 0, MAE at q = 1."""
    import torch

    return q * (1 - torch.exp(cfg.gce_q * log_p)) / cfg.gce_q


def _sce(log_p: torch.Tensor, p: torch.Tensor, q: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Symmetric CE (Wang et al. 2019): alpha * CE + beta * RCE, RCE = -sum_k p_k log q_k
    with log 0 := -4, i.e. 4 * (1 - p_y) for a hard label."""
    log_q = q.clamp(min=math.exp(RCE_LOG_ZERO)).log()
    return cfg.sce_alpha * (-q * log_p) + cfg.sce_beta * (-p * log_q)


def _mse(log_p: torch.Tensor, p: torch.Tensor, q: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    return (p - q) ** 2 / p.shape[1]


def _l1(log_p: torch.Tensor, p: torch.Tensor, q: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    return (p - q).abs() / p.shape[1]


POINTWISE: dict[str, Contribution] = {
    "ce": _ce,
    "bce": _ce,
    "focal": _focal,
    "gce": _gce,
    "sce": _sce,
    "mse": _mse,
    "l1": _l1,
}


def pointwise_loss(kind: str, config: LossConfig) -> torch.nn.Module:
    """The loss `kind` (a key of POINTWISE) in `config.mode`.

    `bce` is binary CE per channel: in multiclass mode it is the one-vs-rest BCE of each
    channel against the one-hot target (the multilabel form of integer labels).
    """
    import torch

    contribution = POINTWISE[kind]
    mode = config.mode
    if kind == "bce" and mode == "multiclass":
        mode = "multilabel"

    class _Pointwise(torch.nn.Module):
        class_weight: torch.Tensor | None

        def __init__(self) -> None:
            super().__init__()
            if config.class_weights is None:
                self.class_weight = None
            else:
                self.register_buffer(
                    "class_weight", torch.tensor(config.class_weights, dtype=torch.float32)
                )

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            form = pointwise_form(logits, target, mode, self.class_weight)
            k = form.q.shape[1]
            q = form.q
            if config.label_smoothing > 0:
                q = q * (1 - config.label_smoothing) + config.label_smoothing / k
            terms = contribution(form.log_p, form.log_p.exp(), q, config)
            if form.weight is None:
                return terms.sum() / form.q.sum().clamp(min=1e-12)
            return (terms * form.weight).sum() / (form.q * form.weight).sum().clamp(min=1e-12)

    return _Pointwise()
