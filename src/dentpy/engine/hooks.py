"""Training state and the hooks `dentpy train` plugs into the generic loop.

`TrainingSetup` is everything a checkpoint must capture for an exact resume: model,
optimizer, schedule, patch sampler, augmentation generator and every global RNG.
Hooks: checkpoints (last + best on validation), CSV/TensorBoard log, time budget.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dentpy.engine.run import RunFolder

if TYPE_CHECKING:
    from dentpy.engine.trainer import Trainer
    from dentpy.spec import Spec


@dataclass
class TrainingSetup:
    spec: Spec
    run: RunFolder
    trainer: Trainer
    sampler: Any
    augment: Any
    identity: dict[str, str]
    best_score: float = -1.0
    # Further stateful parts (state_dict/load_state_dict) an exact resume needs, by name,
    # e.g. a Mean Teacher's EMA weights or a second sampler for unlabelled data.
    extra: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def numpy_global_state() -> list[Any]:
    name, key, position, has_gauss, cached = np.random.get_state(legacy=True)
    return [name, np.asarray(key).tolist(), int(position), int(has_gauss), float(cached)]


def trainer_state(setup: TrainingSetup) -> dict[str, Any]:
    import torch

    trainer = setup.trainer
    return {
        "iteration": trainer.iteration,
        "optimizer": trainer.optimizer.state_dict(),
        "schedule": trainer.schedule.state_dict(),
        "sampler": setup.sampler.state_dict(),
        "augment": setup.augment.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # As plain lists: weights_only loading accepts no numpy arrays.
        "numpy_rng": numpy_global_state(),
        "python_rng": random.getstate(),
        "best_score": setup.best_score,
        "extra": {name: part.state_dict() for name, part in setup.extra.items()},
    }


def restore(setup: TrainingSetup) -> None:
    import torch

    from dentpy.engine.checkpoint import load_checkpoint, remove_stale_temporaries

    if setup.run.checkpoints.is_dir():
        remove_stale_temporaries(setup.run.checkpoints)  # a kill -9 mid-write leaves these
    checkpoint = load_checkpoint(setup.run.checkpoints, "last", identity=setup.identity)
    state = checkpoint.state
    trainer = setup.trainer
    # The saved weights are the exported network's; when that is not the trained model (a
    # Mean Teacher), the trained model's own weights come back with the extra state below.
    trainer.model.load_state_dict(checkpoint.weights)
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.schedule.load_state_dict(state["schedule"])
    setup.sampler.load_state_dict(state["sampler"])
    setup.augment.load_state_dict(state["augment"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    name, key, position, has_gauss, cached = state["numpy_rng"]
    np.random.set_state((name, np.array(key, dtype=np.uint32), position, has_gauss, cached))
    random.setstate(state["python_rng"])
    for name, part in setup.extra.items():
        part.load_state_dict(state["extra"][name])
    trainer.iteration = int(state["iteration"])
    setup.best_score = float(state["best_score"])


class CheckpointHook:
    """Saves `last` after every validation, and `best` when validation improves."""

    def __init__(self, setup: TrainingSetup) -> None:
        self.setup = setup

    def on_iteration_end(self, trainer: Trainer, loss: float) -> None:
        return None

    def on_validation_end(self, trainer: Trainer, scores: dict[str, float]) -> None:
        import torch

        from dentpy.engine.checkpoint import save_checkpoint

        setup = self.setup
        weights = trainer.exported().state_dict()
        finite = all(
            bool(torch.isfinite(w).all()) for w in weights.values() if w.is_floating_point()
        )
        score = scores["score"]
        improved = finite and np.isfinite(score) and score > setup.best_score
        if improved:
            setup.best_score = score
        save_checkpoint(
            setup.run.checkpoints,
            trainer.iteration,
            weights,
            trainer_state(setup),
            setup.identity,
            tags=("last", "best") if improved else ("last",),
            extra={"validation": scores},
        )


class LogHook:
    """Training log as CSV and TensorBoard; losses averaged between validations."""

    def __init__(self, run: RunFolder, start: float) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run = run
        self.writer = SummaryWriter(str(run.tensorboard))
        self.losses: list[float] = []
        self.start = start
        self.last_scores: dict[str, float] = {}

    def on_iteration_end(self, trainer: Trainer, loss: float) -> None:
        self.losses.append(loss)
        self.writer.add_scalar("train/loss", loss, trainer.iteration)
        self.writer.add_scalar("train/lr", trainer.schedule.lr, trainer.iteration)

    def on_validation_end(self, trainer: Trainer, scores: dict[str, float]) -> None:
        row = {
            "iteration": trainer.iteration,
            "train_loss": float(np.mean(self.losses)) if self.losses else float("nan"),
            "lr": trainer.schedule.lr,
            "seconds": round(time.monotonic() - self.start, 1),
            **{f"val_{k}": round(v, 5) for k, v in scores.items()},
        }
        self.losses = []
        self.last_scores = scores
        for key, value in scores.items():
            self.writer.add_scalar(f"val/{key}", value, trainer.iteration)
        self.writer.flush()
        path = self.run.metrics_csv
        header = not path.exists()
        with open(path, "a") as handle:
            if header:
                handle.write(",".join(row) + "\n")
            handle.write(",".join(str(v) for v in row.values()) + "\n")

    def close(self) -> None:
        self.writer.close()


class BudgetHook:
    """Stops training when the time budget is spent (the loop then validates and saves)."""

    def __init__(self, minutes: float | None, start: float) -> None:
        self.deadline = None if minutes is None else start + 60 * minutes

    def on_iteration_end(self, trainer: Trainer, loss: float) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            trainer.should_stop = True

    def on_validation_end(self, trainer: Trainer, scores: dict[str, float]) -> None:
        return None
