"""Optimizers and LR schedules from the spec, against closed forms and torch's own classes;
exact schedule resume; gradient accumulation equals one larger batch."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from dentpy.engine.trainer import Trainer
from dentpy.optim import OPTIMIZERS, SCHEDULES, LRSchedule, build_optimizer
from dentpy.spec import Optimizer, Schedule, Train

# name -> (torch class, hyperparameters its param group must hold). Every registered name
# must be listed: a new optimizer fails here until its expectations are written down.
EXPECTED_OPTIMIZERS: dict[str, tuple[type, dict[str, Any]]] = {
    "sgd": (torch.optim.SGD, {"momentum": 0.0, "nesterov": False}),
    "momentum": (torch.optim.SGD, {"momentum": 0.8, "nesterov": False}),
    "nesterov": (torch.optim.SGD, {"momentum": 0.8, "nesterov": True}),
    "rmsprop": (torch.optim.RMSprop, {"momentum": 0.8}),
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {}),
}


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_builds_from_the_spec(name: str) -> None:
    assert name in EXPECTED_OPTIMIZERS, f"write the expectations for optimizer {name!r}"
    cls, hyper = EXPECTED_OPTIMIZERS[name]
    cfg = Optimizer(name=name, lr=0.03, weight_decay=1e-3, momentum=0.8)
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg)
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.03 and group["weight_decay"] == 1e-3
    for key, value in hyper.items():
        assert group[key] == value, key


def test_sgd_is_plain_and_old_nesterov_specs_keep_their_meaning() -> None:
    assert Optimizer(name="sgd").nesterov is False  # the default no longer adds momentum
    # Before `sgd` became plain SGD it meant Nesterov momentum (nesterov: true); such a
    # spec resolves to the honest name, so an old spec trains as it did.
    assert Optimizer(name="sgd", nesterov=True).name == "nesterov"
    heavy_ball = build_optimizer(
        [torch.nn.Parameter(torch.zeros(1))], Optimizer(name="momentum", nesterov=True)
    )
    assert heavy_ball.param_groups[0]["nesterov"] is True


def test_lr_accepts_auto_and_numbers_but_nothing_else() -> None:
    assert Optimizer(lr="auto").lr == "auto"
    assert Optimizer(lr="3e-4").lr == pytest.approx(3e-4)  # YAML reads 3e-4 as a string
    for bad in (0, -1e-3, "fast"):
        with pytest.raises(ValueError):
            Optimizer(lr=bad)
    with pytest.raises(ValueError):
        Optimizer(lr_find_min_lr=1.0, lr_find_max_lr=0.1)
    with pytest.raises(ValueError):
        Train(accumulate_batches=0)
    with pytest.raises(TypeError):  # "auto" must be resolved before an optimizer is built
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], Optimizer(lr="auto"))


# Closed forms, written independently of dentpy.optim: factor(iteration, total, W, cfg).
def _linear_warmup(i: int, w: int) -> float:
    return (i + 1) / (w + 1)


def _cosine(i: int, total: int, w: int, c: Schedule) -> float:
    if i < w:
        return _linear_warmup(i, w)
    t = min(i - w, total - w) / (total - w)
    return c.min_lr_fraction + (1 - c.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * t))


def _poly(i: int, total: int, w: int, c: Schedule) -> float:
    if i < w:
        return _linear_warmup(i, w)
    t = min(i - w, total - w) / (total - w)
    return max(c.min_lr_fraction, (1 - t) ** c.poly_power)


def _flat(i: int, total: int, w: int, c: Schedule) -> float:
    return _linear_warmup(i, w) if i < w else 1.0


def _step(i: int, total: int, w: int, c: Schedule) -> float:
    if i < w:
        return _linear_warmup(i, w)
    return max(c.min_lr_fraction, c.step_gamma ** ((i - w) // c.step_iterations))


def _onecycle(i: int, total: int, w: int, c: Schedule) -> float:
    start, low = c.onecycle_start_fraction, c.min_lr_fraction
    if i < w:  # cosine ramp start -> 1 over the warm-up
        return 1 + (start - 1) * 0.5 * (1 + math.cos(math.pi * i / w))
    t = min(i - w, total - w) / (total - w)
    return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * t))


EXPECTED_SCHEDULES: dict[str, Callable[[int, int, int, Schedule], float]] = {
    "cosine": _cosine,
    "poly": _poly,
    "constant": _flat,
    "plateau": _flat,  # without validation calls
    "step": _step,
    "onecycle": _onecycle,
}


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_every_schedule_follows_its_closed_form(name: str) -> None:
    assert name in EXPECTED_SCHEDULES, f"write the closed form of schedule {name!r}"
    total, warmup = 40, 6
    cfg = Schedule(
        name=name, warmup_iterations=warmup, min_lr_fraction=0.05, step_gamma=0.5, step_iterations=7
    )
    schedule = LRSchedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0), cfg, total)
    for i in range(total + 5):
        expected = 2.0 * EXPECTED_SCHEDULES[name](i, total, warmup, cfg)
        assert schedule.lr == pytest.approx(expected, abs=1e-12), i
        schedule.step()


def test_step_and_onecycle_at_known_iterations() -> None:
    def lrs(cfg: Schedule, total: int, n: int) -> list[float]:
        schedule = LRSchedule(
            torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], 1.0), cfg, total
        )
        out = []
        for _ in range(n):
            out.append(schedule.lr)
            schedule.step()
        return out

    step = Schedule(
        name="step", warmup_iterations=2, step_gamma=0.5, step_iterations=3, min_lr_fraction=0.2
    )
    expected = [1 / 3, 2 / 3, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2]
    assert lrs(step, 100, 13) == pytest.approx(expected)
    onecycle = Schedule(
        name="onecycle", warmup_iterations=4, onecycle_start_fraction=0.1, min_lr_fraction=0.01
    )
    got = lrs(onecycle, 12, 14)
    assert got[0] == pytest.approx(0.1) and got[2] == pytest.approx(0.55)  # mid-ramp
    assert got[4] == pytest.approx(1.0) and max(got) == got[4]  # the peak ends the warm-up
    assert got[8] == pytest.approx(0.505)  # half-way down
    assert got[12] == got[13] == pytest.approx(0.01)  # the floor, and it stays


def test_onecycle_equals_torch_one_cycle_lr() -> None:
    """The documented equivalence to torch's OneCycleLR (two-phase, cosine)."""
    total, warmup, start, low = 50, 12, 0.04, 0.002
    cfg = Schedule(
        name="onecycle",
        warmup_iterations=warmup,
        onecycle_start_fraction=start,
        min_lr_fraction=low,
    )
    ours = LRSchedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3), cfg, total)
    reference_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3)
    reference = torch.optim.lr_scheduler.OneCycleLR(
        reference_optimizer,
        max_lr=0.3,
        total_steps=total + 1,
        pct_start=(warmup + 1) / (total + 1),
        div_factor=1 / start,
        final_div_factor=start / low,
        cycle_momentum=False,
    )
    for i in range(total + 1):
        assert ours.lr == pytest.approx(reference.get_last_lr()[0], rel=1e-6, abs=1e-9), i
        ours.step()
        if i < total:
            reference_optimizer.step()
            reference.step()


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_schedule_state_round_trip_continues_identically(name: str) -> None:
    cfg = Schedule(name=name, warmup_iterations=3, plateau_patience=1, step_iterations=4)

    def make() -> LRSchedule:
        return LRSchedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), cfg, 30)

    first = make()
    for i in range(13):
        first.step()
        first.validated(0.5 if i > 2 else 0.1 * i)  # stalls: plateau halves the LR
    resumed = make()
    resumed.load_state_dict(first.state_dict())
    assert resumed.state_dict() == first.state_dict()
    for _ in range(20):
        assert resumed.lr == first.lr
        for schedule in (first, resumed):
            schedule.step()
            schedule.validated(0.5)


def test_accumulating_two_batches_equals_one_double_batch() -> None:
    """Linear model, mean squared error: accumulate=2 with batches of b gives exactly the
    closed-form step of one batch of 2b (w <- w - lr * 2/n X^T (X w - y))."""
    torch.set_default_dtype(torch.float64)
    try:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(8, 3, generator=generator)
        y = torch.randn(8, 1, generator=generator)
        w0 = torch.randn(1, 3, generator=generator)
        lr = 0.1

        def run(batches: list[tuple[torch.Tensor, torch.Tensor]], accumulate: int) -> torch.Tensor:
            model = torch.nn.Linear(3, 1, bias=False)
            with torch.no_grad():
                model.weight.copy_(w0)
            optimizer = torch.optim.SGD(model.parameters(), lr=lr)
            feed = iter(batches)
            trainer = Trainer(
                model=model,
                loss_fn=torch.nn.MSELoss(),
                optimizer=optimizer,
                schedule=LRSchedule(optimizer, Schedule(name="constant", warmup_iterations=0), 1),
                next_batch=lambda: next(feed),
                validate=lambda m: {},
                accumulate=accumulate,
            )
            trainer.train_step()
            assert trainer.iteration == 1  # one optimizer step
            return model.weight.detach().clone()

        accumulated = run([(x[:4], y[:4]), (x[4:], y[4:])], accumulate=2)
        single = run([(x, y)], accumulate=1)
        closed_form = w0 - lr * (2 / 8) * ((x @ w0.T - y).T @ x)
        assert torch.allclose(accumulated, closed_form, atol=1e-6, rtol=0)
        assert torch.allclose(single, closed_form, atol=1e-6, rtol=0)
    finally:
        torch.set_default_dtype(torch.float32)
