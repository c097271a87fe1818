"""Optimizers and learning-rate schedules by name, each schedule with a warm-up.

Schedules are expressed as a multiplier of the base LR per iteration (a pure function of
the iteration), which makes them exactly resumable; `plateau` additionally scales on
validation, and its few numbers are part of LRSchedule's state. `onecycle`'s warm-up is its
own rising phase (see _onecycle); every other schedule warms up linearly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from dentpy.registry import Registry

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Optimizer, Schedule

OptimizerFactory = Callable[[Iterable[Any], "Optimizer"], "torch.optim.Optimizer"]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")
SCHEDULES: Registry[Callable[[int, int, Schedule], Callable[[int], float]]] = Registry("schedule")


def _torch_sgd(
    params: Iterable[Any], cfg: Optimizer, momentum: float, nesterov: bool
) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(
        params,
        lr=_lr(cfg),
        momentum=momentum,
        nesterov=nesterov and momentum > 0,
        weight_decay=cfg.weight_decay,
    )


@OPTIMIZERS.register("sgd", help="plain SGD (no momentum)")
def _sgd(params: Iterable[Any], cfg: Optimizer) -> torch.optim.Optimizer:
    return _torch_sgd(params, cfg, 0.0, nesterov=False)


@OPTIMIZERS.register("momentum", help="SGD with (heavy-ball) momentum = optimizer.momentum")
def _momentum(params: Iterable[Any], cfg: Optimizer) -> torch.optim.Optimizer:
    return _torch_sgd(params, cfg, cfg.momentum, nesterov=cfg.nesterov)


@OPTIMIZERS.register("nesterov", help="SGD with Nesterov momentum = optimizer.momentum (nnU-Net)")
def _nesterov(params: Iterable[Any], cfg: Optimizer) -> torch.optim.Optimizer:
    return _torch_sgd(params, cfg, cfg.momentum, nesterov=True)


@OPTIMIZERS.register("rmsprop", help="RMSProp")
def _rmsprop(params: Iterable[Any], cfg: Optimizer) -> torch.optim.Optimizer:
    import torch

    return torch.optim.RMSprop(
        params, lr=_lr(cfg), momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


@OPTIMIZERS.register("adam", help="Adam")
def _adam(params: Iterable[Any], cfg: Optimizer) -> torch.optim.Optimizer:
    import torch

    return torch.optim.Adam(params, lr=_lr(cfg), weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adamw", help="AdamW (decoupled weight decay)")
def _adamw(params: Iterable[Any], cfg: Optimizer) -> torch.optim.Optimizer:
    import torch

    return torch.optim.AdamW(params, lr=_lr(cfg), weight_decay=cfg.weight_decay)


def _warm(warmup: int, after: Callable[[int], float]) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return after(step - warmup)

    return factor


@SCHEDULES.register("cosine", help="cosine decay to min_lr_fraction after warm-up")
def _cosine(total: int, warmup: int, cfg: Schedule) -> Callable[[int], float]:
    span = max(1, total - warmup)
    low = cfg.min_lr_fraction
    return _warm(
        warmup, lambda s: low + (1 - low) * 0.5 * (1 + math.cos(math.pi * min(s, span) / span))
    )


@SCHEDULES.register("poly", help="polynomial decay (1 - t)^power after warm-up (nnU-Net)")
def _poly(total: int, warmup: int, cfg: Schedule) -> Callable[[int], float]:
    span = max(1, total - warmup)
    return _warm(
        warmup, lambda s: max(cfg.min_lr_fraction, (1 - min(s, span) / span) ** cfg.poly_power)
    )


@SCHEDULES.register("constant", help="constant LR after warm-up")
def _constant(total: int, warmup: int, cfg: Schedule) -> Callable[[int], float]:
    return _warm(warmup, lambda s: 1.0)


@SCHEDULES.register("plateau", help="warm-up, then halve the LR when validation stops improving")
def _plateau(total: int, warmup: int, cfg: Schedule) -> Callable[[int], float]:
    return _warm(warmup, lambda s: 1.0)


@SCHEDULES.register(
    "step",
    help="after warm-up, multiply by step_gamma every step_iterations (floor: min_lr_fraction)",
)
def _step(total: int, warmup: int, cfg: Schedule) -> Callable[[int], float]:
    gamma, every, low = cfg.step_gamma, cfg.step_iterations, cfg.min_lr_fraction
    return _warm(warmup, lambda s: max(low, gamma ** (s // every)))


def _cos_between(start: float, end: float, fraction: float) -> float:
    """Cosine interpolation from `start` (fraction 0) to `end` (fraction 1)."""
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * fraction))


@SCHEDULES.register(
    "onecycle",
    help="one cycle: cosine ramp from onecycle_start_fraction up to the peak over the warm-up, "
    "then cosine anneal to min_lr_fraction",
)
def _onecycle(total: int, warmup: int, cfg: Schedule) -> Callable[[int], float]:
    """Smith's one-cycle policy, torch OneCycleLR's two-phase cosine form: the warm-up *is*
    the rising phase (it starts at onecycle_start_fraction, not at the linear warm-up's
    1/(W+1)), the peak (factor 1) is at iteration W = warmup_iterations, the factor reaches
    min_lr_fraction at iteration `total` and stays there. Equals
    OneCycleLR(total_steps=total + 1, pct_start=(W + 1) / (total + 1),
    div_factor=1 / onecycle_start_fraction, final_div_factor=start / min_lr_fraction)."""
    start, low = cfg.onecycle_start_fraction, cfg.min_lr_fraction
    span = max(1, total - warmup)

    def factor(step: int) -> float:
        if step < warmup:
            return _cos_between(start, 1.0, step / warmup)
        return _cos_between(1.0, low, min(step - warmup, span) / span)

    return factor


def _lr(cfg: Optimizer) -> float:
    if isinstance(cfg.lr, str):
        # Internal misuse, not a user error: `lr: auto` is resolved (dentpy.lr_find) before
        # any optimizer is built.
        raise TypeError(f"optimizer.lr must be resolved to a number first, got {cfg.lr!r}")
    return cfg.lr


def build_optimizer(params: Iterable[Any], cfg: Optimizer) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(cfg.name)(params, cfg)


class LRSchedule:
    """Sets each parameter group's LR to base_lr x factor(iteration) x plateau_scale.

    One small object instead of torch's LambdaLR + ReduceLROnPlateau pair, because those two
    overwrite each other's LR; its whole state is a few numbers, so resume is exact.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: Schedule, total: int) -> None:
        self.optimizer = optimizer
        self.cfg = cfg
        self.total = total
        self.factor = SCHEDULES.get(cfg.name)(total, cfg.warmup_iterations, cfg)
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self.iteration = 0
        self.plateau_scale = 1.0
        self.best: float | None = None
        self.bad_validations = 0
        self._apply()

    def _apply(self) -> None:
        scale = self.factor(self.iteration) * self.plateau_scale
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * scale

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def set_total(self, total: int) -> None:
        """Move the schedule's end to `total` iterations (time-budget pacing): the decay
        continues from the current iteration along the curve of the new length."""
        self.total = total
        self.factor = SCHEDULES.get(self.cfg.name)(total, self.cfg.warmup_iterations, self.cfg)
        self._apply()

    def step(self) -> None:
        self.iteration += 1
        self._apply()

    def validated(self, score: float) -> None:
        """Report a validation score (higher is better); only `plateau` reacts."""
        if self.cfg.name != "plateau":
            return
        if self.best is None or score > self.best + 1e-4:
            self.best, self.bad_validations = score, 0
            return
        self.bad_validations += 1
        if self.bad_validations > self.cfg.plateau_patience:
            self.plateau_scale *= self.cfg.plateau_factor
            self.bad_validations = 0
            self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "plateau_scale": self.plateau_scale,
            "best": self.best,
            "bad_validations": self.bad_validations,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration = int(state["iteration"])
        self.plateau_scale = float(state["plateau_scale"])
        self.best = None if state["best"] is None else float(state["best"])
        self.bad_validations = int(state["bad_validations"])
        self._apply()
