"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates"; fastai's lr_find).

A short run on real training batches whose LR rises exponentially from `min_lr` to `max_lr`,
one optimizer step per LR. The loss is smoothed with an exponential moving average
(beta 0.98, bias-corrected like Adam's moments), and the test stops once the smoothed loss
exceeds 4x its best (the LR is past the point where training diverges).

Suggestion rule (SUGGESTION_RULE): the LR at the minimum of the smoothed loss, divided by
10 (fastai's "minimum" suggestion; Smith: about an order of magnitude below where the loss
stops improving). It is robust: the steepest-descent point of the smoothed curve, the other
classic rule, jumps to the first LRs whenever early batches happen to differ (measured
on the toy regression in tests/test_lr_find.py: below 3e-4 for 5 of 8 seeds, where the
stability limit is 1), so it is only recorded
(`steepest_lr`, searched after the first 10% of points and before the minimum). On a
quadratic (linear regression, plain SGD) the loss diverges above lr = 2 / largest Hessian
eigenvalue; the suggestion lands in the decade below that limit.

The weights are restored afterwards: the test changes nothing but the files it writes.

`resolve_auto_lr` is called by each `dentpy train` flavour (segmentation, classification,
detection) with the model, loss and batches it built, just before its optimizer is made;
`lr_find_for_spec` (the `dentpy lr-find` command) reuses exactly that by running `train`
into a temporary folder in "probe" mode, which stops at that point.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from dentpy.engine.run import RunFolder
    from dentpy.spec import Spec

SUGGESTION_RULE = "minimum of the EMA-smoothed loss: its LR / 10"
SMOOTHING = 0.98
DIVERGENCE = 4.0


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]  # raw per-iteration training losses
    smoothed: list[float]  # EMA (beta 0.98), bias-corrected
    suggestion: float
    rule: str
    steepest_lr: float | None
    min_loss_lr: float
    stopped_early: bool  # the loss diverged (> 4x best, or not finite) before max_lr
    # False when the smoothed loss is lowest within the first 10% of the sweep: the loss
    # never fell, so the suggestion means nothing (too few iterations, or min_lr too high).
    loss_fell: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def exponential_lrs(min_lr: float, max_lr: float, iterations: int) -> list[float]:
    """LR of each iteration: min_lr at the first, max_lr at the last, geometric between."""
    ratio = max_lr / min_lr
    return [min_lr * ratio ** (i / max(1, iterations - 1)) for i in range(iterations)]


def suggest(lrs: Sequence[float], smoothed: Sequence[float]) -> tuple[float, float | None, float]:
    """(suggestion, steepest-descent LR or None, LR of the minimum); see SUGGESTION_RULE."""
    lowest = int(np.argmin(smoothed))
    min_loss_lr = float(lrs[lowest])
    skip = len(lrs) // 10
    steepest = None
    if lowest - skip >= 2:
        head = np.asarray(smoothed[: lowest + 1], dtype=np.float64)
        slope = np.gradient(head, np.log10(np.asarray(lrs[: lowest + 1], dtype=np.float64)))
        if slope[skip:].min() < 0:
            steepest = float(lrs[skip + int(np.argmin(slope[skip:]))])
    return min_loss_lr / 10, steepest, min_loss_lr


def lr_range_test(
    model: torch.nn.Module,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    make_optimizer: Callable[[Iterable[Any]], torch.optim.Optimizer],
    next_batch: Callable[[], tuple[torch.Tensor, Any]],
    *,
    min_lr: float = 1e-7,
    max_lr: float = 1.0,
    iterations: int = 100,
    amp_dtype: torch.dtype | None = None,
    grad_clip_norm: float | None = None,
    accumulate: int = 1,
) -> LRFindResult:
    """Run the range test; `model`'s weights are the same afterwards as before.

    make_optimizer(params) builds the optimizer (its LR is overwritten every iteration);
    next_batch() gives (input, target) as the training loop gets them; the steps mirror
    dentpy.engine.trainer.Trainer.train_step (accumulation, clipping, autocast)."""
    import torch

    saved = copy.deepcopy(model.state_dict())
    optimizer = make_optimizer(model.parameters())
    lrs, losses, smoothed = [], [], []
    average, best, stopped = 0.0, math.inf, False
    try:
        model.train()
        for i, lr in enumerate(exponential_lrs(min_lr, max_lr, iterations)):
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            value = 0.0
            for _ in range(accumulate):
                image, target = next_batch()
                autocast = (
                    torch.autocast(image.device.type, dtype=amp_dtype)
                    if amp_dtype
                    else contextlib.nullcontext()
                )
                with autocast:
                    output = model(image)
                loss = loss_fn(output.float(), target)
                (loss / accumulate).backward()
                value += float(loss.detach()) / accumulate
            if not math.isfinite(value):
                stopped = True
                break
            average = SMOOTHING * average + (1 - SMOOTHING) * value
            current = average / (1 - SMOOTHING ** (i + 1))
            lrs.append(lr)
            losses.append(value)
            smoothed.append(current)
            if current > DIVERGENCE * best:
                stopped = True
                break
            best = min(best, current)
            if grad_clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
            optimizer.step()
    finally:
        model.load_state_dict(saved)
        optimizer.zero_grad(set_to_none=True)
    if not lrs:
        from dentpy.errors import TrainingError

        raise TrainingError(
            "the LR range test got no finite loss",
            expected="a finite training loss at the smallest learning rate",
            found=f"a non-finite loss at lr {min_lr:.3g}",
            fix="lower optimizer.lr_find_min_lr, or check the data with `dentpy data check`",
        )
    suggestion, steepest, min_loss_lr = suggest(lrs, smoothed)
    fell = int(np.argmin(smoothed)) >= max(2, len(lrs) // 10)
    return LRFindResult(
        lrs, losses, smoothed, suggestion, SUGGESTION_RULE, steepest, min_loss_lr, stopped, fell
    )


def write_outputs(result: LRFindResult, folder: Path, title: str = "LR range test") -> None:
    """lr_find.json (the curve, the suggestion and its rule) and lr_find.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lr_find.json").write_text(json.dumps(result.to_dict(), indent=2))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.plot(result.lrs, result.losses, color="0.75", linewidth=1, label="loss per iteration")
    ax.plot(result.lrs, result.smoothed, color="C0", linewidth=2, label="smoothed loss (EMA 0.98)")
    lowest = int(np.argmin(result.smoothed))
    ax.axvline(result.min_loss_lr, color="0.4", linestyle=":", linewidth=1.5)
    ax.plot(
        [result.min_loss_lr],
        [result.smoothed[lowest]],
        "s",
        color="0.4",
        label=f"smoothed-loss minimum at lr {result.min_loss_lr:.2g}",
    )
    ax.axvline(result.suggestion, color="C3", linestyle="--", linewidth=1.5)
    at = int(np.argmin(np.abs(np.log(np.asarray(result.lrs)) - math.log(result.suggestion))))
    ax.plot(
        [result.suggestion],
        [result.smoothed[at]],
        "o",
        color="C3",
        label=f"suggested lr = {result.suggestion:.2g} (minimum / 10)",
    )
    ax.set_xscale("log")
    # The smoothed curve decides the view; a diverging last raw loss would flatten it.
    best = min(result.smoothed)
    low = min(best, float(np.percentile(result.losses, 5)))
    high = min(max(result.smoothed), DIVERGENCE * best) if best > 0 else max(result.smoothed)
    margin = 0.08 * (high - low) + 1e-12
    ax.set_ylim(low - margin, high + margin)
    ax.set_xlabel("learning rate (log scale)", fontsize=11)
    ax.set_ylabel("training loss", fontsize=11)
    ax.set_title(f"{title}: suggestion = LR of the loss minimum / 10", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(folder / "lr_find.png")
    plt.close(fig)


@dataclass
class _Probe:
    """`dentpy lr-find`: run the test where training would start, write here, stop."""

    out: Path
    iterations: int | None
    min_lr: float | None
    max_lr: float | None


class _ProbeDone(Exception):  # control flow, not an error
    def __init__(self, result: LRFindResult) -> None:
        super().__init__("lr-find probe finished")
        self.result = result


_PROBE: ContextVar[_Probe | None] = ContextVar("dentpy_lr_find_probe", default=None)


@contextlib.contextmanager
def _rng_states_kept(stateful: Sequence[Any]) -> Iterator[None]:
    """Put back the sampler, augmentation and global RNG states the test consumed, so the
    training after it draws exactly the batches a run with that LR fixed would draw."""
    import torch

    parts = [copy.deepcopy(part.state_dict()) for part in stateful]
    torch_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    try:
        yield
    finally:
        for part, state in zip(stateful, parts, strict=True):
            part.load_state_dict(state)
        torch.set_rng_state(torch_state)
        if cuda_state:
            torch.cuda.set_rng_state_all(cuda_state)
        np.random.set_state(numpy_state)
        random.setstate(python_state)


def resolve_auto_lr(
    spec: Spec,
    run: RunFolder,
    identity: dict[str, str],
    model: torch.nn.Module,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    next_batch: Callable[[], tuple[torch.Tensor, Any]],
    amp_dtype: torch.dtype | None,
    stateful: Sequence[Any],
) -> None:
    """With `optimizer.lr: auto` (and no LR recorded for a resumed run), run the range test
    and make its suggestion the spec's LR: written to the run's spec.yaml (so a resume
    reuses it), the run identity and lr_find.json/png in the run folder. Without "auto",
    does nothing, except in `dentpy lr-find`'s probe mode (see module docstring)."""
    from dentpy.engine.distributed import broadcast_from_main, is_main
    from dentpy.optim import build_optimizer

    probe = _PROBE.get()
    if probe is None and spec.optimizer.lr != "auto":
        return
    cfg = spec.optimizer

    def make_optimizer(params: Iterable[Any]) -> torch.optim.Optimizer:
        return build_optimizer(params, cfg.model_copy(update={"lr": cfg.lr_find_min_lr}))

    with _rng_states_kept(stateful):
        result = lr_range_test(
            model,
            loss_fn,
            make_optimizer,
            next_batch,
            min_lr=(probe and probe.min_lr) or cfg.lr_find_min_lr,
            max_lr=(probe and probe.max_lr) or cfg.lr_find_max_lr,
            iterations=(probe and probe.iterations) or cfg.lr_find_iterations,
            amp_dtype=amp_dtype,
            grad_clip_norm=cfg.grad_clip_norm,
            accumulate=spec.train.accumulate_batches,
        )
    if probe is not None:
        write_outputs(result, probe.out, title=f"LR range test ({spec.name})")
        raise _ProbeDone(result)
    # Several processes: each ran the test on its own batches; rank 0's result decides, so
    # every rank trains with the same LR, and only rank 0 writes.
    result = broadcast_from_main(result)
    if is_main():
        write_outputs(result, run.root, title=f"LR range test ({spec.name})")
    if not result.loss_fell:
        from dentpy.errors import TrainingError

        raise TrainingError(
            "optimizer.lr: auto - the LR range test found no LR at which the loss falls",
            expected="a smoothed loss that falls somewhere in the tested LR range",
            found=f"its lowest point at lr {result.min_loss_lr:.3g}, at the start of the "
            f"sweep (see {run.root / 'lr_find.png'})",
            fix="raise optimizer.lr_find_iterations or lower optimizer.lr_find_min_lr, or set "
            "optimizer.lr to a number; then train under a new --name (this run folder holds "
            "no checkpoint yet)",
        )
    spec.optimizer.lr = float(f"{result.suggestion:.3g}")
    identity["spec"] = spec.digest(exclude=("train", "constraints"))
    if not is_main():
        return
    run.spec.write_text(spec.to_yaml())
    if run.plan.exists():
        from dentpy.train import write_json

        plan = json.loads(run.plan.read_text())
        if isinstance(plan.get("identity"), dict):
            plan["identity"] = identity
            write_json(run.plan, plan)


def lr_find_for_spec(
    spec: Spec,
    out: Path,
    iterations: int | None = None,
    min_lr: float | None = None,
    max_lr: float | None = None,
    cache_dir: Path | None = None,
) -> LRFindResult:
    """`dentpy lr-find`: the range test on the batches `dentpy train` would train on.
    `train` runs into a temporary folder (deleted afterwards) and stops at the test."""
    from dentpy.errors import TrainingError
    from dentpy.train import train

    token = _PROBE.set(_Probe(out, iterations, min_lr, max_lr))
    try:
        with tempfile.TemporaryDirectory(prefix="dentpy-lr-find-") as tmp:
            train(spec, Path(tmp) / "run", show_progress=False, cache_dir=cache_dir)
    except _ProbeDone as done:
        return done.result
    finally:
        _PROBE.reset(token)
    raise TrainingError(
        "the LR range test did not run",
        expected="training to reach its first step",
        found="training finished without running the LR range test",
        fix="report this as a dentpy bug",
    )
