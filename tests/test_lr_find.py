"""The LR range test: the sweep, the smoothing, the stop rule and the suggestion against a
quadratic whose stable LR range is known analytically; `dentpy lr-find` and
`optimizer.lr: auto` on a tiny classification dataset."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.lr_find import (
    DIVERGENCE,
    SMOOTHING,
    exponential_lrs,
    lr_range_test,
    suggest,
    write_outputs,
)
from dentpy.spec import load_spec

runner = CliRunner()


def _regression(seed: int, dim: int = 10, batch: int = 32) -> tuple[Any, Any]:
    """Linear regression with x ~ N(0, I): the mean squared error's Hessian is 2 I, so plain
    SGD converges for lr < 2 / 2 = 1 and diverges above it."""
    torch.manual_seed(seed)
    w_true = torch.randn(dim, 1)
    generator = torch.Generator().manual_seed(seed + 100)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(batch, dim, generator=generator)
        return x, x @ w_true + 0.01 * torch.randn(batch, 1, generator=generator)

    model = torch.nn.Linear(dim, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    return model, next_batch


def test_lrs_rise_geometrically_from_min_to_max() -> None:
    lrs = exponential_lrs(1e-4, 1.0, 5)
    assert lrs == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_suggestion_lies_in_the_decade_below_the_divergence_limit(seed: int) -> None:
    model, next_batch = _regression(seed)
    before = model.weight.detach().clone()
    result = lr_range_test(
        model,
        torch.nn.functional.mse_loss,
        lambda params: torch.optim.SGD(params, lr=1e-5),
        next_batch,
        min_lr=1e-5,
        max_lr=10.0,
        iterations=100,
    )
    # Stable for lr < 1 (see _regression): the loss must blow up before lr 10 and the
    # suggestion (minimum / 10) must sit in the decade below the limit.
    assert result.stopped_early and result.lrs[-1] < 10.0
    assert 0.1 <= result.suggestion < 1.0
    assert result.suggestion == pytest.approx(result.min_loss_lr / 10)
    assert torch.equal(model.weight, before)  # the weights are not kept
    # The smoothed curve is the bias-corrected EMA of the raw losses.
    average = 0.0
    for i, (raw, smooth) in enumerate(zip(result.losses, result.smoothed, strict=True)):
        average = SMOOTHING * average + (1 - SMOOTHING) * raw
        assert smooth == pytest.approx(average / (1 - SMOOTHING ** (i + 1)))
    # It stopped at the first point above 4x the best smoothed loss so far.
    assert result.smoothed[-1] > DIVERGENCE * min(result.smoothed[:-1])
    assert all(
        s <= DIVERGENCE * min(result.smoothed[: i + 1]) for i, s in enumerate(result.smoothed[:-1])
    )


def test_a_non_finite_loss_stops_the_test() -> None:
    model = torch.nn.Linear(1, 1)
    losses = iter([1.0, 0.9, 0.8, math.inf])

    def loss_fn(output: torch.Tensor, target: Any) -> torch.Tensor:
        return output.sum() * 0 + next(losses)

    result = lr_range_test(
        model,
        loss_fn,
        lambda params: torch.optim.SGD(params, lr=1e-3),
        lambda: (torch.zeros(1, 1), None),
        min_lr=1e-3,
        max_lr=1.0,
        iterations=10,
    )
    assert result.stopped_early and result.losses == pytest.approx([1.0, 0.9, 0.8])


def test_a_loss_that_never_falls_is_flagged() -> None:
    """Lowest at the start of the sweep: the suggestion means nothing (`lr: auto` refuses)."""
    model = torch.nn.Linear(1, 1)
    losses = iter(np.linspace(1.0, 2.0, 30).tolist())

    def loss_fn(output: torch.Tensor, target: Any) -> torch.Tensor:
        return output.sum() * 0 + next(losses)

    result = lr_range_test(
        model,
        loss_fn,
        lambda params: torch.optim.SGD(params, lr=1e-3),
        lambda: (torch.zeros(1, 1), None),
        min_lr=1e-3,
        max_lr=1.0,
        iterations=30,
    )
    assert not result.loss_fell and result.min_loss_lr == pytest.approx(1e-3)


def test_suggestion_rule_on_a_known_curve() -> None:
    lrs = exponential_lrs(1e-6, 1.0, 61)
    x = np.log10(lrs)
    # Falls fastest at lr 1e-3 (a tanh step), bottoms out at 1e-1, then climbs.
    curve = 2 - np.tanh(2 * (x + 3)) + np.where(x > -1, 8 * (x + 1) ** 2, 0)
    curve[x <= -1] -= 0.01 * (x[x <= -1] + 1)  # a gentle slope down to the minimum
    suggestion, steepest, lowest = suggest(lrs, list(curve))
    assert lowest == pytest.approx(0.1)
    assert suggestion == pytest.approx(0.01)
    assert steepest == pytest.approx(1e-3)


def test_outputs_are_a_readable_plot_and_the_curve(tmp_path: Path) -> None:
    model, next_batch = _regression(0)
    result = lr_range_test(
        model,
        torch.nn.functional.mse_loss,
        lambda params: torch.optim.SGD(params, lr=1e-5),
        next_batch,
        min_lr=1e-4,
        max_lr=10.0,
        iterations=40,
    )
    write_outputs(result, tmp_path)
    saved = json.loads((tmp_path / "lr_find.json").read_text())
    assert saved["suggestion"] == result.suggestion and "/ 10" in saved["rule"]
    assert len(saved["lrs"]) == len(saved["losses"]) == len(saved["smoothed"])
    image = np.asarray(Image.open(tmp_path / "lr_find.png"))
    assert image.shape[:2] == (540, 840)  # 7 x 4.5 in at 120 dpi


def _tiny_classification(root: Path, n: int = 40) -> Path:
    """Two classes a tiny CNN tells apart within a few steps (an edge across the image, or
    along it), patients in a CSV."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        label = "caries" if i % 2 == 0 else "sound"
        path = root / "crops" / label / f"img{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image = rng.normal(1500, 100, (24, 24))
        if label == "caries":
            image[:, 12:] += 1500
        else:
            image[12:, :] += 1500
        Image.fromarray(image.clip(0, 4095).astype(np.uint16)).save(path)
        rows.append([f"{label}/img{i:03d}.png", f"patient{i // 2:02d}"])
    with (root / "crops" / "patients.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "patient"])
        writer.writerows(rows)
    spec = root / "spec.yaml"
    result = runner.invoke(
        app, ["init", "--template", "caries-binary", "--data", "crops", "--out", str(spec)]
    )
    assert result.exit_code == 0, result.output
    return spec


TINY = [
    "model.name=tiny_cnn",
    "train.batch_size=8",
    "train.validate_every=2",
    "preprocess.image_size=[24, 24]",
    "evaluation.bootstrap=20",
]


@pytest.mark.slow  # trains a model briefly
def test_cli_lr_find_writes_the_plot_and_the_curve_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _tiny_classification(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "finder"
    result = runner.invoke(
        app,
        ["lr-find", str(spec), *TINY, "--iterations", "20", "--min-lr", "1e-4", "--max-lr", "10"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "suggested lr" in result.output
    # Default --out is ./lr-find; nothing else appears (no run folder).
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "lr-find"])
    saved = json.loads((tmp_path / "lr-find" / "lr_find.json").read_text())
    assert saved["lrs"][0] == pytest.approx(1e-4) and len(saved["lrs"]) <= 20
    assert saved["loss_fell"] and "warning" not in result.output
    assert saved["suggestion"] == pytest.approx(saved["min_loss_lr"] / 10)
    assert (tmp_path / "lr-find" / "lr_find.png").stat().st_size > 10_000
    assert not out.exists()


@pytest.mark.slow  # trains a model briefly
def test_train_with_auto_lr_records_and_resumes_with_the_chosen_lr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dentpy.engine.trainer as trainer_module
    import dentpy.lr_find as lr_find_module

    spec = _tiny_classification(tmp_path)
    seen: list[int] = []

    real_trainer = trainer_module.Trainer

    def recording_trainer(**kwargs: Any) -> Any:
        seen.append(kwargs["accumulate"])
        return real_trainer(**kwargs)

    monkeypatch.setattr(trainer_module, "Trainer", recording_trainer)
    runs = tmp_path / "runs"
    args = [*TINY, "optimizer.lr=auto", "optimizer.lr_find_iterations=20", "--runs", str(runs)]
    args += ["optimizer.lr_find_min_lr=1e-4", "optimizer.lr_find_max_lr=10"]
    args += ["--no-progress"]
    result = runner.invoke(
        app,
        ["train", str(spec), *args, "train.iterations=2", "train.accumulate_batches=2"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert seen == [2]  # train.accumulate_batches reached the Trainer
    run = runs / "caries-binary"
    found = json.loads((run / "lr_find.json").read_text())
    chosen = float(f"{found['suggestion']:.3g}")
    assert found["loss_fell"] and 1e-4 < chosen < 10
    assert load_spec(run / "spec.yaml").optimizer.lr == chosen  # what was used, not "auto"
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["lr"] == chosen
    assert (run / "lr_find.png").exists()

    # The test put the sampler, augmentation and RNG states back: a run with that LR fixed
    # trains on the same batches, so it logs the same losses.
    fixed = [a for a in args if a != "optimizer.lr=auto"]
    fixed += [f"optimizer.lr={chosen}", "--name", "fixed"]
    result = runner.invoke(
        app,
        ["train", str(spec), *fixed, "train.iterations=2", "train.accumulate_batches=2"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output

    def logged(folder: Path) -> list[tuple[str, ...]]:
        with (folder / "training_log.csv").open() as handle:
            return [(r["iteration"], r["train_loss"], r["lr"]) for r in csv.DictReader(handle)]

    assert logged(run) == logged(runs / "fixed")

    # A resume with the same "auto" spec uses the recorded LR; the finder must not run.
    def no_second_test(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the LR range test ran again on resume")

    monkeypatch.setattr(lr_find_module, "lr_range_test", no_second_test)
    result = runner.invoke(
        app,
        ["train", str(spec), *args, "train.iterations=4", "train.accumulate_batches=2", "--resume"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["iterations"] == 4 and summary["lr"] == chosen
