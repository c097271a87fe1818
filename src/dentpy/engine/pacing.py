"""Time-budget pacing: re-plans the number of iterations from the run's own measured pace.

`dentpy plan` turns a time budget into iterations from a few timed steps at the start.
On a shared or noisy machine those steps run 10-30% slower or faster than training later
does, so a run either ends its schedule early and leaves budget unused, or is cut off by
the budget while its learning rate is still high. The pacer measures the real wall time
per iteration (validation, sampling and checkpoints included) at a few fixed points of the
run (over the iterations since the previous point) and moves the end of the schedule so
that it finishes inside the budget.

Re-planning happens at fixed iterations (fractions of the planned count), so that every
process of a distributed run decides at the same step; rank 0's measurement is shared.
It stops well before the end, where moving the end would jolt a decayed learning rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dentpy.engine.trainer import Trainer

# Fractions of the planned iterations at which the pace is measured and the end moved.
REPLAN_FRACTIONS = (0.1, 0.3, 0.6)
# One re-plan moves the end by at most this factor either way: an early measurement can be
# off, and later points correct the rest.
MAX_CHANGE = 1.5
# Changes smaller than this fraction are left alone (not worth moving the schedule).
MIN_CHANGE = 0.02
# Budget kept free at the end besides one validation: loop exit, last checkpoint, summary.
END_MARGIN_FRACTION = 0.01


def new_total(
    iteration: int,
    total: int,
    seconds_per_iteration: float,
    seconds_left: float,
) -> int:
    """The iteration count that ends the run with `seconds_left` used, at the measured
    pace, clamped to `MAX_CHANGE` of `total` and never before the next step."""
    wanted = iteration + int(max(0.0, seconds_left) / seconds_per_iteration)
    low, high = int(total / MAX_CHANGE), int(total * MAX_CHANGE)
    return max(iteration + 1, min(high, max(low, wanted)))


@dataclass
class Replan:
    """One re-plan, as train_summary.json records it."""

    at_iteration: int
    seconds_per_iteration: float
    old_total: int
    new_total: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "at_iteration": self.at_iteration,
            "seconds_per_iteration": round(self.seconds_per_iteration, 4),
            "old_total": self.old_total,
            "new_total": self.new_total,
        }


@dataclass
class PaceHook:
    """A trainer hook; `deadline` is time.monotonic() seconds. `apply(trainer, total)` moves
    the end of training (trainer, schedule, progress bar, recorded spec); `share` makes
    rank 0's measurement everyone's in a distributed run (identity in one process)."""

    deadline: float
    budget_seconds: float
    planned: int
    apply: Callable[[Trainer, int], None]
    share: Callable[[int], int] = lambda value: value
    clock: Callable[[], float] = time.monotonic
    replans: list[Replan] = field(default_factory=list)
    _checkpoints: list[int] = field(default_factory=list)
    _window: tuple[float, int] | None = None  # (time, iteration) the pace is measured from
    _iteration_end: float | None = None
    _validation_seconds: float = 0.0

    def __post_init__(self) -> None:
        self._checkpoints = sorted({max(2, round(f * self.planned)) for f in REPLAN_FRACTIONS})

    def on_iteration_end(self, trainer: Trainer, loss: float) -> None:
        now = self.clock()
        self._iteration_end = now
        if self._window is None:
            # The pace is measured from the end of the first step: the first one carries
            # one-off costs (allocations, autotuning) that later steps do not repeat.
            self._window = (now, trainer.iteration)
            return
        if not self._checkpoints or trainer.iteration < self._checkpoints[0]:
            return
        self._checkpoints.pop(0)
        # The pace of the iterations since the previous re-plan, not since the start: on
        # the 2-core machine steps ran 10-20% faster in the second half of an 8-minute run
        # than in its first minutes, and an average from the start lagged behind that.
        start, first_iteration = self._window
        self._window = (now, trainer.iteration)
        pace = (now - start) / max(1, trainer.iteration - first_iteration)
        left = self.deadline - now - self._validation_seconds
        left -= END_MARGIN_FRACTION * self.budget_seconds
        total = trainer.total_iterations
        proposed = self.share(new_total(trainer.iteration, total, pace, left))
        if abs(proposed - total) < MIN_CHANGE * total:
            return
        self.replans.append(Replan(trainer.iteration, pace, total, proposed))
        self.apply(trainer, proposed)

    def on_validation_end(self, trainer: Trainer, scores: dict[str, float]) -> None:
        # Hooks before this one (checkpoints) ran already: their time counts as validation.
        if self._iteration_end is not None:
            self._validation_seconds = self.clock() - self._iteration_end

    def summary(self) -> dict[str, Any]:
        return {
            "planned_iterations": self.planned,
            "replans": [r.to_dict() for r in self.replans],
        }
