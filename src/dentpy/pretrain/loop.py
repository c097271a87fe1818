"""The pretraining optimisation loop shared by both methods: AdamW, linear warm-up then
cosine decay, gradient clipping, a time budget, and one loss row per iteration.

Kept separate from `engine.trainer.Trainer`, which is built around validation-selected
checkpoints; a pretext task has no validation metric and keeps its last weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dentpy.errors import TrainingError

if TYPE_CHECKING:
    import torch

WARMUP_FRACTION = 0.05
GRAD_CLIP_NORM = 5.0


@dataclass
class LossLog:
    """(iteration, loss, lr, seconds) per iteration."""

    rows: list[tuple[int, float, float, float]] = field(default_factory=list)

    def mean_loss(self, first: bool, share: float = 0.1) -> float:
        """Mean loss of the first or last `share` of the iterations (at least one)."""
        count = max(1, round(len(self.rows) * share))
        rows = self.rows[:count] if first else self.rows[-count:]
        return float(sum(r[1] for r in rows) / len(rows)) if rows else float("nan")

    def to_csv(self) -> str:
        lines = ["iteration,loss,lr,seconds"]
        lines += [f"{i},{loss:.6g},{lr:.6g},{s:.2f}" for i, loss, lr, s in self.rows]
        return "\n".join(lines) + "\n"


def lr_factor(iteration: int, total: int, time_fraction: float = 0.0) -> float:
    """Linear warm-up over the first 5% of iterations, then cosine decay to 2%. Progress is
    the larger of the iteration and the time-budget fraction, so a run the budget stops
    early still ends with a decayed learning rate."""
    warmup = max(1, round(WARMUP_FRACTION * total))
    if iteration < warmup:
        return (iteration + 1) / warmup
    progress = max((iteration - warmup) / max(1, total - warmup), time_fraction)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def fit(
    parameters: Iterable[torch.nn.Parameter],
    step_loss: Callable[[int], torch.Tensor],
    iterations: int,
    lr: float,
    weight_decay: float,
    budget_minutes: float | None,
    show_progress: bool,
) -> LossLog:
    """Minimise `step_loss(iteration)` for `iterations` steps (or until the budget).

    Several processes (DDP, `step_loss` running the wrapped model): the elapsed time that
    sets the learning rate and stops the budget is the ranks' mean, so every rank takes the
    same learning rate and stops at the same step; the logged loss is the ranks' mean."""
    import torch
    from rich.progress import Progress

    from dentpy.engine import distributed

    params = [p for p in parameters if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    log = LossLog()
    start = time.monotonic()
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("pretrain", total=iterations)
        for iteration in range(iterations):
            elapsed = distributed.all_reduce_mean(time.monotonic() - start)
            time_fraction = elapsed / (budget_minutes * 60) if budget_minutes else 0.0
            current = lr * lr_factor(iteration, iterations, time_fraction)
            for group in optimizer.param_groups:
                group["lr"] = current
            optimizer.zero_grad(set_to_none=True)
            loss = step_loss(iteration)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingError(
                    f"pretraining loss became {value} at iteration {iteration + 1}",
                    expected="a finite loss",
                    found=f"loss = {value} (lr {current:.3g})",
                    fix="lower pretrain.lr, or check the images with `dentpy data check`",
                )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP_NORM)
            optimizer.step()
            seconds = distributed.all_reduce_mean(time.monotonic() - start)
            value = distributed.all_reduce_mean(value)
            log.rows.append((iteration + 1, value, current, seconds))
            progress.update(task, advance=1, description=f"pretrain loss {value:.4f}")
            if budget_minutes is not None and seconds > budget_minutes * 60:
                break
    return log
