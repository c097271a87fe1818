"""One generic training loop with hooks. It knows no task: the task supplies the model,
loss and validation; sampling and augmentation supply batches.

Iteration-based (not epoch-based): patch training has no natural epoch, and a fixed
iteration count makes time budgets and exact resume simple.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dentpy.errors import TrainingError

if TYPE_CHECKING:
    import torch

    from dentpy.optim import LRSchedule


class Hook(Protocol):
    def on_iteration_end(self, trainer: Trainer, loss: float) -> None: ...

    def on_validation_end(self, trainer: Trainer, scores: dict[str, float]) -> None: ...


@dataclass
class Trainer:
    model: torch.nn.Module
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    # (input, target); the target is whatever the task's loss takes (a tensor, or e.g.
    # detection's box targets).
    next_batch: Callable[[], tuple[torch.Tensor, Any]]
    validate: Callable[[torch.nn.Module], dict[str, float]]
    amp_dtype: torch.dtype | None = None
    grad_clip_norm: float | None = None
    # Gradient accumulation: batches whose gradients are summed (each loss divided by this)
    # before one optimizer step; an iteration is one optimizer step.
    accumulate: int = 1
    # A further loss term per batch, e.g. semi-supervised consistency on unlabelled data:
    # called with the model and the iteration about to run; returns a scalar tensor.
    extra_loss: Callable[[torch.nn.Module, int], torch.Tensor] | None = None
    # Called after each optimizer step (e.g. a Mean Teacher's EMA update).
    after_step: Callable[[Trainer], None] | None = None
    # The network that is validated and saved as the run's model, when it is not the one
    # being trained (a Mean Teacher's EMA teacher); None: `model`.
    export_model: Callable[[], torch.nn.Module] | None = None
    # Distributed training (dentpy.engine.distributed): a step's loss -> its mean over all
    # ranks, so every rank logs the same value; None in one process.
    reduce_loss: Callable[[float], float] | None = None
    hooks: list[Any] = field(default_factory=list)
    iteration: int = 0
    # Where fit() ends; a hook may move it while training (dentpy.engine.pacing).
    total_iterations: int = 0
    should_stop: bool = False

    def _batch_loss(self) -> torch.Tensor:
        import torch

        image, label = self.next_batch()
        device_type = image.device.type
        autocast = (
            torch.autocast(device_type, dtype=self.amp_dtype)
            if self.amp_dtype
            else contextlib.nullcontext()
        )
        with autocast:
            logits = self.model(image)
        loss = self.loss_fn(logits.float(), label)
        if self.extra_loss is not None:
            loss = loss + self.extra_loss(self.model, self.iteration)
        return loss

    def train_step(self) -> float:
        import torch

        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        # DDP: gradients are averaged over ranks on the last batch only (no_sync before).
        no_sync = getattr(self.model, "no_sync", None)
        for index in range(self.accumulate):
            last = index == self.accumulate - 1
            with no_sync() if no_sync is not None and not last else contextlib.nullcontext():
                loss = self._batch_loss()
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise TrainingError(
                        f"training loss became {value} at iteration {self.iteration + 1}",
                        expected="a finite loss",
                        found=f"loss = {value} (lr {self.schedule.lr:.3g})",
                        fix="lower optimizer.lr, keep optimizer.grad_clip_norm set, or check "
                        "the data with `dentpy data check`; the last good checkpoint is kept",
                    )
                (loss / self.accumulate).backward()
            total += value
        if self.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
        self.optimizer.step()
        self.schedule.step()
        self.iteration += 1
        if self.after_step is not None:
            self.after_step(self)
        mean = total / self.accumulate
        return self.reduce_loss(mean) if self.reduce_loss is not None else mean

    def fit(self, total_iterations: int, validate_every: int) -> None:
        self.total_iterations = total_iterations
        validated_at = self.iteration
        while self.iteration < self.total_iterations and not self.should_stop:
            loss = self.train_step()
            for hook in self.hooks:
                hook.on_iteration_end(self, loss)
            if self.iteration % validate_every == 0 or self.iteration == self.total_iterations:
                self.run_validation()
                validated_at = self.iteration
        if validated_at != self.iteration:
            # Stopped early (time budget): validate so the last steps are checkpointed too.
            self.run_validation()

    def exported(self) -> torch.nn.Module:
        """The network validated and saved (see `export_model`)."""
        return self.export_model() if self.export_model is not None else self.model

    def run_validation(self) -> dict[str, float]:
        import torch

        network = self.exported()
        network.eval()
        with torch.inference_mode():
            scores = self.validate(network)
        self.schedule.validated(scores.get("score", 0.0))
        for hook in self.hooks:
            hook.on_validation_end(self, scores)
        return scores
