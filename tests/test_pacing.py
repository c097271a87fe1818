"""Time-budget pacing (dentpy.engine.pacing): the end of a budget-planned run moves to where
the measured pace says the budget ends; the LR schedule and the loop follow it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from dentpy.engine.pacing import MAX_CHANGE, REPLAN_FRACTIONS, PaceHook, new_total
from dentpy.engine.trainer import Trainer
from dentpy.optim import LRSchedule
from dentpy.spec import Schedule


def test_new_total_uses_the_seconds_left_at_the_measured_pace() -> None:
    # 100 s left at 0.5 s per iteration: 200 more steps after iteration 100.
    assert new_total(100, 250, 0.5, 100.0) == 300
    assert new_total(100, 400, 1.0, 100.0) == 266  # shrunk, clamped to total / 1.5
    assert new_total(100, 300, 1.0, 100.0) == 200


def test_new_total_is_clamped_and_never_before_the_next_step() -> None:
    assert new_total(100, 200, 0.01, 1e6) == int(200 * MAX_CHANGE)
    assert new_total(100, 120, 1.0, -5.0) == 101  # budget already spent: stop next step
    assert new_total(10, 1000, 1.0, 0.0) == 666  # the clamp wins over "stop now"


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeTrainer:
    total_iterations: int
    iteration: int = 0
    moved: list[int] = field(default_factory=list)


def run_paced(planned: int, seconds_per_step: float, budget: float) -> tuple[PaceHook, Any]:
    clock = FakeClock()
    trainer = FakeTrainer(total_iterations=planned)

    def apply(t: Any, total: int) -> None:
        t.total_iterations = total
        t.moved.append(total)

    hook = PaceHook(
        deadline=budget, budget_seconds=budget, planned=planned, apply=apply, clock=clock
    )
    while trainer.iteration < trainer.total_iterations:
        clock.now += seconds_per_step
        trainer.iteration += 1
        hook.on_iteration_end(trainer, 0.0)  # type: ignore[arg-type]
    return hook, trainer


@pytest.mark.parametrize("seconds_per_step", [0.8, 1.0, 1.25])
def test_a_run_ends_near_its_budget_whatever_the_real_pace(seconds_per_step: float) -> None:
    # Planned for 1 s per step in a 1000 s budget; steps really take 0.8, 1.0 or 1.25 s.
    hook, trainer = run_paced(1000, seconds_per_step, 1000.0)
    used = trainer.iteration * seconds_per_step
    assert 0.97 * 1000 <= used <= 1000, (used, hook.summary())
    if seconds_per_step == 1.0:
        # Only the end margin: within MIN_CHANGE, so nothing moves.
        assert trainer.moved == [] and hook.summary()["replans"] == []
    else:
        assert trainer.moved and len(trainer.moved) <= len(REPLAN_FRACTIONS)
        first = hook.summary()["replans"][0]
        assert first["at_iteration"] == 100 and first["old_total"] == 1000
        assert first["seconds_per_iteration"] == pytest.approx(seconds_per_step)


def test_the_pace_is_that_of_the_last_window_and_validation_time_is_kept_free() -> None:
    clock = FakeClock()
    trainer = FakeTrainer(total_iterations=100)
    hook = PaceHook(
        deadline=200.0, budget_seconds=200.0, planned=100, apply=lambda t, n: None, clock=clock
    )
    for step in range(1, 31):
        clock.now += 1.0 if step <= 10 else 1.5  # steps slow down after iteration 10
        trainer.iteration = step
        hook.on_iteration_end(trainer, 0.0)  # type: ignore[arg-type]
        if step == 20:
            clock.now += 20.0  # a 20 s validation
            hook.on_validation_end(trainer, {})  # type: ignore[arg-type]
    first, second = hook.replans
    assert first.at_iteration == 10 and first.seconds_per_iteration == pytest.approx(1.0)
    # Iterations 10-30 (t = 10 to 60 s): (60 - 10) / 20 = 2.5 s each, the validation
    # included; left: 200 - 60 s, less one validation (20 s) and 1% of the budget (2 s).
    assert second.at_iteration == 30 and second.seconds_per_iteration == pytest.approx(2.5)
    assert second.new_total == 30 + int(118 / 2.5)


def test_rank_zero_decides_through_share() -> None:
    trainer = FakeTrainer(total_iterations=100)
    clock = FakeClock()
    moved: list[int] = []
    hook = PaceHook(
        deadline=1000.0,
        budget_seconds=1000.0,
        planned=100,
        apply=lambda t, n: moved.append(n),
        share=lambda value: 123,  # what rank 0 measured
        clock=clock,
    )
    for step in range(1, 11):
        clock.now += 1.0
        trainer.iteration = step
        hook.on_iteration_end(trainer, 0.0)  # type: ignore[arg-type]
    assert moved == [123]


@pytest.mark.parametrize("name", ["cosine", "poly", "onecycle"])
def test_moving_the_end_continues_on_the_new_curve(name: str) -> None:
    def schedule(total: int) -> LRSchedule:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return LRSchedule(optimizer, Schedule(name=name, warmup_iterations=5), total)

    moved, fresh = schedule(100), schedule(180)
    for _ in range(40):
        moved.step()
        fresh.step()
    assert moved.lr != pytest.approx(fresh.lr)
    moved.set_total(180)
    assert moved.total == 180 and moved.lr == pytest.approx(fresh.lr)


def test_the_loop_runs_to_an_end_a_hook_moved() -> None:
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    trainer = Trainer(
        model=model,
        loss_fn=torch.nn.MSELoss(),
        optimizer=optimizer,
        schedule=LRSchedule(optimizer, Schedule(name="constant", warmup_iterations=0), 10),
        next_batch=lambda: (torch.ones(4, 2), torch.zeros(4, 1)),
        validate=lambda m: {"score": 0.0},
    )

    class MoveAtFive:
        def on_iteration_end(self, t: Trainer, loss: float) -> None:
            if t.iteration == 5:
                t.total_iterations = 17

        def on_validation_end(self, t: Trainer, scores: dict[str, float]) -> None:
            return None

    trainer.hooks = [MoveAtFive()]
    trainer.fit(10, 100)
    assert trainer.iteration == 17
