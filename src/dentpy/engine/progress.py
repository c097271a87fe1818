"""A progress bar showing loss, the validation score (Dice, ROC-AUC, kappa...) and ETA."""

from __future__ import annotations

from typing import Any


class ProgressHook:
    def __init__(
        self, total: int, completed: int, enabled: bool = True, metric: str = "Dice"
    ) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val {task.fields[metric]} {task.fields[dice]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            disable=not enabled,
        )
        self.task = self.progress.add_task(
            "train", total=total, completed=completed, loss="-", dice="-", metric=metric
        )
        self.smoothed: float | None = None

    def __enter__(self) -> ProgressHook:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def set_total(self, total: int) -> None:
        """The run's end moved (time-budget pacing)."""
        self.progress.update(self.task, total=total)

    def on_iteration_end(self, trainer: Any, loss: float) -> None:
        self.smoothed = loss if self.smoothed is None else 0.9 * self.smoothed + 0.1 * loss
        self.progress.update(self.task, completed=trainer.iteration, loss=f"{self.smoothed:.3f}")

    def on_validation_end(self, trainer: Any, scores: dict[str, float]) -> None:
        self.progress.update(self.task, dice=f"{scores['score']:.3f}")
