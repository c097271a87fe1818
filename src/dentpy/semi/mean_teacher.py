"""Mean Teacher (Tarvainen & Valpola, NeurIPS 2017).

The teacher is a copy of the network whose weights are an exponential moving average (EMA)
of the student's, updated after every optimizer step:

    teacher <- a * teacher + (1 - a) * student,   a = min(1 - 1/(step + 1), ema_decay)

(the warm-up form of the reference implementation: early on the teacher follows the
student closely instead of averaging in the random initial weights). Buffers (batch-norm
statistics) are copied, not averaged.

On each step the student also sees a batch of unlabelled data; the loss gains
`weight(step) * mean((p_student - p_teacher)^2)` over the class probabilities, where the two
networks see the same data under independent augmentation (for segmentation the same
geometric transform, so voxels correspond, with independent intensity and noise draws).
`weight` ramps up with the sigmoid schedule exp(-5 (1 - t)^2), t = step / rampup, to
`consistency_weight`, so the untrained teacher cannot dominate the first steps.

The teacher runs in training mode (its dropout is part of the method's noise) and gets no
gradients. By default (`paradigm.validate_with: teacher`) the teacher is what is validated
and saved as the run's model, as in the paper: an average of recent students generalises
better than the last one, most of all when a time budget stops training before the LR has
decayed. The student's weights then travel in the checkpoint's extra state (with the
unlabelled sampler and augmentation generators) so that a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from dentpy.engine.trainer import Trainer


def sigmoid_rampup(iteration: int, length: int) -> float:
    """exp(-5 (1 - t)^2) with t = iteration / length clipped to [0, 1]; 1 when length is 0."""
    if length <= 0:
        return 1.0
    t = min(max(iteration, 0), length) / length
    return math.exp(-5.0 * (1.0 - t) ** 2)


def softmax_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of two probability tensors (N, C, ...); the teacher side is
    a target (no gradient)."""
    return ((student - teacher.detach()) ** 2).mean()


class EMATeacher:
    """A gradient-free copy of `student` kept as the EMA of its weights."""

    def __init__(self, student: torch.nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(student)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.decay = decay

    def alpha(self, step: int) -> float:
        """The weight kept from the old teacher at optimizer step `step` (1-based)."""
        return min(1.0 - 1.0 / (step + 1), self.decay)

    def update(self, student: torch.nn.Module, step: int) -> None:
        import torch

        a = self.alpha(step)
        with torch.no_grad():
            for kept, new in zip(self.model.parameters(), student.parameters(), strict=True):
                kept.mul_(a).add_(new.detach(), alpha=1.0 - a)
            for buffer, source in zip(self.model.buffers(), student.buffers(), strict=True):
                buffer.copy_(source)

    def state_dict(self) -> dict[str, Any]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state)


class MeanTeacher:
    """The consistency term (`extra_loss`) and EMA update (`after_step`) for the Trainer,
    and the checkpointed state an exact resume needs (`state_dict`).

    `views()` returns (student input, teacher input): one unlabelled batch under two
    augmentations. `probabilities` maps network outputs to class probabilities.
    `parts`: further stateful pieces (samplers, augmentation generators) by name.
    """

    def __init__(
        self,
        student: torch.nn.Module,
        views: Callable[[], tuple[torch.Tensor, torch.Tensor]],
        probabilities: Callable[[torch.Tensor], torch.Tensor],
        decay: float,
        consistency_weight: float,
        rampup_iterations: int,
        amp_dtype: torch.dtype | None = None,
        parts: dict[str, Any] | None = None,
        validate_with: str = "teacher",
    ) -> None:
        self.student = student
        self.teacher = EMATeacher(student, decay)
        self.validate_with = validate_with
        self.views = views
        self.probabilities = probabilities
        self.consistency_weight = consistency_weight
        self.rampup_iterations = rampup_iterations
        self.amp_dtype = amp_dtype
        self.parts = parts or {}
        self.last_consistency = float("nan")

    def weight(self, iteration: int) -> float:
        return self.consistency_weight * sigmoid_rampup(iteration, self.rampup_iterations)

    def _autocast(self, device: torch.device) -> Any:
        import torch

        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.amp_dtype)

    def extra_loss(self, model: torch.nn.Module, iteration: int) -> torch.Tensor:
        import torch

        student_input, teacher_input = self.views()
        self.teacher.model.train()
        with self._autocast(student_input.device):
            student_logits = model(student_input)
        with torch.no_grad(), self._autocast(teacher_input.device):
            teacher_logits = self.teacher.model(teacher_input)
        consistency = softmax_mse(
            self.probabilities(student_logits.float()),
            self.probabilities(teacher_logits.float()),
        )
        self.last_consistency = float(consistency.detach())
        return self.weight(iteration) * consistency

    def summary(self) -> dict[str, Any]:
        return {
            "ema_decay": self.teacher.decay,
            "consistency_weight": self.consistency_weight,
            "rampup_iterations": self.rampup_iterations,
            # None when no step ran in this process (a run resumed at its end).
            "last_consistency": (
                None if math.isnan(self.last_consistency) else self.last_consistency
            ),
            "validated_and_saved": self.validate_with,
        }

    def attach(self, trainer: Trainer) -> None:
        """Plug into the trainer: consistency term, EMA update, and (by default) the
        teacher as the validated and saved network."""
        trainer.extra_loss = self.extra_loss
        trainer.after_step = self.after_step
        if self.validate_with == "teacher":
            trainer.export_model = lambda: self.teacher.model

    def after_step(self, trainer: Trainer) -> None:
        self.teacher.update(trainer.model, trainer.iteration)

    def state_dict(self) -> dict[str, Any]:
        state = {
            "teacher": self.teacher.state_dict(),
            **{name: part.state_dict() for name, part in self.parts.items()},
        }
        if self.validate_with == "teacher":
            # The checkpoint's weights are the teacher's: keep the student's here.
            state["student"] = {k: v.detach().clone() for k, v in self.student.state_dict().items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.teacher.load_state_dict(state["teacher"])
        if "student" in state:
            self.student.load_state_dict(state["student"])
        self.load_streams(state)

    def streams(self) -> dict[str, Any]:
        """The unlabelled sampler's and augmentation's state: this rank's own stream, which
        checkpoints keep per rank (dentpy.engine.hooks.stream_state)."""
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_streams(self, state: dict[str, Any]) -> None:
        for name, part in self.parts.items():
            part.load_state_dict(state[name])
