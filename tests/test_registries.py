"""Contract tests driven by the registries: every registered component passes them."""

from __future__ import annotations

import pytest
import torch

from dentpy.losses import LOSSES, build_loss
from dentpy.models import MODELS, build_model
from dentpy.optim import OPTIMIZERS, SCHEDULES, LRSchedule, build_optimizer
from dentpy.spec import Model, Optimizer, Schedule


@pytest.mark.parametrize("name", MODELS.names())
def test_model_forward_backward_and_state_round_trip(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(Model(name=name, channels=[8, 16, 32]), in_channels=1, out_channels=3)
    x = torch.randn(2, 1, 32, 48, 32)  # anisotropic patch
    out = model(x)
    assert out.shape == (2, 3, 32, 48, 32)
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    again = build_model(Model(name=name, channels=[8, 16, 32]), in_channels=1, out_channels=3)
    again.load_state_dict(model.state_dict())
    model.eval()
    again.eval()
    assert torch.allclose(model(x), again(x))


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_is_finite_and_lowest_for_the_right_answer(name: str) -> None:
    loss_fn = build_loss(name)
    target = torch.zeros(2, 1, 8, 8, 8, dtype=torch.long)
    target[:, :, 2:6, 2:6, 2:6] = 1
    target[:, :, 6:, 6:, 6:] = 2
    perfect = torch.nn.functional.one_hot(target[:, 0], 3).permute(0, 4, 1, 2, 3).float() * 20
    wrong = perfect.roll(1, dims=1)
    logits = torch.zeros(2, 3, 8, 8, 8, requires_grad=True)
    value = loss_fn(logits, target)
    value.backward()
    assert torch.isfinite(value)
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert loss_fn(perfect, target) < value < loss_fn(wrong, target)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizer_reduces_a_quadratic(name: str) -> None:
    weight = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    optimizer = build_optimizer([weight], Optimizer(name=name, lr=0.05, weight_decay=0.0))
    start = float((weight.detach() ** 2).sum())
    for _ in range(50):
        optimizer.zero_grad()
        (weight**2).sum().backward()
        optimizer.step()
    assert float((weight.detach() ** 2).sum()) < 0.5 * start


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_schedule_warms_up_and_resumes_exactly(name: str) -> None:
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    schedule = LRSchedule(optimizer, Schedule(name=name, warmup_iterations=5), total=50)
    lrs = []
    for _ in range(20):
        lrs.append(schedule.lr)
        schedule.step()
        schedule.validated(0.0)
    assert lrs[0] < lrs[4] <= 1.0  # warm-up rises
    state = schedule.state_dict()
    resumed = LRSchedule(
        torch.optim.SGD([weight], lr=1.0), Schedule(name=name, warmup_iterations=5), 50
    )
    resumed.load_state_dict(state)
    assert resumed.lr == pytest.approx(schedule.lr)


def test_plateau_halves_the_lr_when_validation_stalls() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = LRSchedule(
        optimizer, Schedule(name="plateau", warmup_iterations=0, plateau_patience=1), 10
    )
    for score in (0.5, 0.5, 0.5):
        schedule.validated(score)
    assert schedule.lr == pytest.approx(0.5)


def test_cosine_and_poly_decay_to_the_floor() -> None:
    for name in ("cosine", "poly"):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        schedule = LRSchedule(optimizer, Schedule(name=name, warmup_iterations=0), 10)
        for _ in range(10):
            schedule.step()
        assert schedule.lr == pytest.approx(0.01, abs=1e-6)


def test_cross_entropy_losses_equal_the_reference_implementations() -> None:
    import torch
    from monai.losses import DiceCELoss

    from dentpy.losses import build_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 6, 6)
    target = torch.randint(0, 4, (2, 1, 6, 6, 6))
    reference = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    torch.testing.assert_close(build_loss("dice_ce")(logits, target), reference(logits, target))
    torch.testing.assert_close(
        build_loss("ce")(logits, target), torch.nn.functional.cross_entropy(logits, target[:, 0])
    )
