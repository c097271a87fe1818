"""Training state and the hooks `dentpy train` plugs into the generic loop.

`TrainingSetup` is everything a checkpoint must capture for an exact resume: model,
optimizer, schedule, patch sampler, augmentation generator and every global RNG.
Hooks: checkpoints (last + best on validation), CSV/TensorBoard log, time budget.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
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
    # Time-budget pacing (dentpy.engine.pacing): planned iterations and re-plans, if paced.
    pacing: dict[str, Any] | None = None


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def numpy_global_state() -> list[Any]:
    name, key, position, has_gauss, cached = np.random.get_state(legacy=True)
    return [name, np.asarray(key).tolist(), int(position), int(has_gauss), float(cached)]


def stream_state(setup: TrainingSetup) -> dict[str, Any]:
    """What decides this process's next samples: sampler, augmentation and global RNGs
    (one per rank in distributed training)."""
    import torch

    return {
        "sampler": setup.sampler.state_dict(),
        "augment": setup.augment.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # As plain lists: weights_only loading accepts no numpy arrays.
        "numpy_rng": numpy_global_state(),
        "python_rng": random.getstate(),
        # Streams of further parts (a Mean Teacher's unlabelled sampler and augmentation).
        "extra_streams": {name: part.streams() for name, part in _with_streams(setup).items()},
    }


def _with_streams(setup: TrainingSetup) -> dict[str, Any]:
    return {name: part for name, part in setup.extra.items() if hasattr(part, "streams")}


def trainer_state(setup: TrainingSetup) -> dict[str, Any]:
    """The state a checkpoint holds. Distributed: a collective (every rank must call it);
    rank 0's streams at the top level, every rank's under "ranks"."""
    from dentpy.engine import distributed

    trainer = setup.trainer
    streams = stream_state(setup)
    state = {
        "iteration": trainer.iteration,
        "optimizer": trainer.optimizer.state_dict(),
        "schedule": trainer.schedule.state_dict(),
        **streams,
        "best_score": setup.best_score,
        "extra": {name: part.state_dict() for name, part in setup.extra.items()},
    }
    if distributed.active():
        state["ranks"] = distributed.gather_all(streams)
    return state


def own_streams(state: dict[str, Any]) -> dict[str, Any] | None:
    """This rank's saved streams: its own entry when the checkpoint was written by as many
    ranks; rank 0 (or a single process) continues the top-level streams otherwise, and
    the other ranks keep the fresh streams seeded from (train.seed, rank) (None)."""
    from dentpy.engine import distributed

    saved = state.get("ranks")
    if saved is not None and len(saved) == distributed.world_size():
        return saved[distributed.rank()]
    return state if distributed.is_main() else None


def restore_streams(setup: TrainingSetup, streams: dict[str, Any]) -> None:
    import torch

    setup.sampler.load_state_dict(streams["sampler"])
    setup.augment.load_state_dict(streams["augment"])
    torch.set_rng_state(streams["torch_rng"])
    if streams["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(streams["cuda_rng"])
    name, key, position, has_gauss, cached = streams["numpy_rng"]
    np.random.set_state((name, np.array(key, dtype=np.uint32), position, has_gauss, cached))
    random.setstate(streams["python_rng"])
    parts = _with_streams(setup)
    for name, state in streams.get("extra_streams", {}).items():
        parts[name].load_streams(state)


def restore(setup: TrainingSetup) -> None:
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
    fresh = {name: part.streams() for name, part in _with_streams(setup).items()}
    for name, part in setup.extra.items():
        part.load_state_dict(state["extra"][name])  # rank 0's streams among them
    streams = own_streams(state)
    if streams is not None:
        restore_streams(setup, streams)
    else:  # another rank count: this rank keeps its fresh streams (see own_streams)
        for name, part in _with_streams(setup).items():
            part.load_streams(fresh[name])
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

        from dentpy.engine import distributed
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
        state = trainer_state(setup)  # on every rank: distributed, it gathers their streams
        if not distributed.is_main():
            return  # rank 0 writes the checkpoints
        save_checkpoint(
            setup.run.checkpoints,
            trainer.iteration,
            weights,
            state,
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
    """Stops training when the time budget is spent (the loop then validates and saves).
    `agree`: distributed, turns this rank's verdict into one all ranks share (any rank's
    budget spent stops all), so no rank waits for a step the others never take."""

    def __init__(
        self, minutes: float | None, start: float, agree: Callable[[bool], bool] | None = None
    ) -> None:
        self.deadline = None if minutes is None else start + 60 * minutes
        self.agree = agree

    def on_iteration_end(self, trainer: Trainer, loss: float) -> None:
        if self.deadline is None:
            return
        spent = time.monotonic() >= self.deadline
        if self.agree is not None:
            spent = self.agree(spent)
        if spent:
            trainer.should_stop = True

    def on_validation_end(self, trainer: Trainer, scores: dict[str, float]) -> None:
        return None
