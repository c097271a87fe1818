"""Choosing patch size, batch size, network widths and iterations (nnU-Net's recipe).

1. Patch: start at the median training case shape in network space (so the patch's aspect
   follows the data's); while the estimated peak memory at the smallest batch exceeds the
   limit, shrink the axis that is largest relative to the median shape by one network
   step. Every axis stays a multiple of the network's downsampling factor.
2. Depth and widths ("auto" channels): as many levels as keep the bottleneck >= 4 voxels
   per axis (2..6), widths doubling from 16 (CPU) or 32 (CUDA) up to 320.
3. Batch: the largest that fits, at least 2, and (nnU-Net's cap) covering at most 5% of the
   training voxels per step.
4. Iterations: with a time budget, what fits in 95% of it at the measured time per
   iteration plus the measured validation time spread over `validate_every` iterations
   (the rest is data loading, checkpoints, start-up; 80% when only the step time is
   known); else the spec default.

Only the timing is measured; everything else follows from the inputs and constraints, so
the same fingerprint and constraints give the same plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dentpy.errors import SpecError
from dentpy.inference_window import WINDOW_MEMORY_SHARE
from dentpy.planning.inputs import PlanInputs
from dentpy.planning.memory import MIB, MemoryEstimate, MemoryInputs, estimate_memory
from dentpy.planning.network import MIN_LEVELS, levels_for, network_sizes, widths_for
from dentpy.planning.timing import TIMED_STEPS, WARMUP_STEPS

if TYPE_CHECKING:
    from dentpy.spec import Spec

MIN_BATCH = 2
BATCH_DATASET_SHARE = 0.05
BUDGET_TRAINING_SHARE = 0.8  # steps only timed: the rest covers validation and data
BUDGET_SHARE_WITH_VALIDATION = 0.95  # validation timed too: data, checkpoints, start-up
DEFAULT_ITERATIONS = 1000
MAX_SHRINK_STEPS = 10_000  # a bound on the shrink loop; real plans need tens


@dataclass
class Plan:
    patch_size: tuple[int, int, int]
    batch_size: int
    channels: list[int]
    iterations: int
    rules: dict[str, str]
    memory: MemoryEstimate
    limit_bytes: int
    limit_rule: str
    device: str
    precision: str
    inputs: PlanInputs
    seconds_per_iteration: float | None = None
    timing_rule: str = "not measured"
    seconds_per_validation: float | None = None
    auto: list[str] = field(default_factory=list)

    def seconds_per_epoch(self) -> float | None:
        """An epoch = enough iterations to sample every training voxel once on average."""
        if self.seconds_per_iteration is None:
            return None
        return self.seconds_per_iteration * self.iterations_per_epoch()

    def iterations_per_epoch(self) -> int:
        patch_voxels = math.prod(self.patch_size) * self.batch_size
        return max(1, math.ceil(self.inputs.dataset_voxels / patch_voxels))

    def to_dict(self) -> dict[str, Any]:
        epoch = self.seconds_per_epoch()
        return {
            "auto": self.auto,
            "chosen": {
                "preprocess.target_spacing_mm": list(self.inputs.target_spacing_mm),
                "train.patch_size": list(self.patch_size),
                "train.batch_size": self.batch_size,
                "model.channels": self.channels,
                "train.iterations": self.iterations,
            },
            "rules": {
                "preprocess.target_spacing_mm": self.inputs.target_spacing_rule,
                **self.rules,
            },
            "device": self.device,
            "precision": self.precision,
            "memory_limit_mib": round(self.limit_bytes / MIB, 1),
            "memory_limit_rule": self.limit_rule,
            "memory_estimate": self.memory.to_dict(),
            "fits": self.memory.peak <= self.limit_bytes,
            "time": {
                "seconds_per_iteration": self.seconds_per_iteration,
                "rule": self.timing_rule,
                "seconds_per_validation": self.seconds_per_validation,
                "iterations_per_epoch": self.iterations_per_epoch(),
                "seconds_per_epoch": None if epoch is None else round(epoch, 2),
            },
            "inputs": self.inputs.to_dict(),
        }


@dataclass(frozen=True)
class Constraints:
    device_type: str
    bf16: bool
    limit_bytes: int
    limit_rule: str
    time_budget_minutes: float | None


class _Sizer:
    """Memory estimates of (patch, batch, levels) for one spec and dataset."""

    def __init__(self, spec: Spec, inputs: PlanInputs, constraints: Constraints) -> None:
        self.spec = spec
        self.constraints = constraints
        window = spec.train.sw_window
        self.memory_inputs = MemoryInputs(
            device_type=constraints.device_type,
            bf16=constraints.bf16,
            optimizer=spec.optimizer.name,
            out_channels=inputs.out_channels,
            dataset_bytes=inputs.dataset_voxels * 5,
            largest_case_voxels=inputs.largest_case_voxels,
            sw_batch_size=spec.train.sw_batch_size,
            sw_window=window if isinstance(window, str) else tuple(window),
            window_budget_bytes=int(WINDOW_MEMORY_SHARE * constraints.limit_bytes),
        )

    def channels(self, levels: int) -> list[int]:
        fixed = self.spec.model.channels
        return list(fixed) if fixed != "auto" else widths_for(levels, self.constraints.device_type)

    def step(self, levels: int) -> int:
        from dentpy.models import downsampling_factor
        from dentpy.spec import Model

        return downsampling_factor(Model(name=self.spec.model.name, channels=self.channels(levels)))

    def estimate(self, patch: tuple[int, int, int], batch: int, levels: int) -> MemoryEstimate:
        sizes = network_sizes(
            self.spec.model.name,
            tuple(self.channels(levels)),
            self.spec.model.num_res_units,
            self.memory_inputs.out_channels,
            patch,
        )
        return estimate_memory(sizes, patch, batch, self.memory_inputs)


def _levels(spec: Spec, patch: Sequence[int]) -> int:
    return len(spec.model.channels) if spec.model.channels != "auto" else levels_for(patch)


def _round_to(patch: Sequence[int], step: int, smallest: int) -> tuple[int, int, int]:
    return tuple(max(smallest, (p // step) * step) for p in patch)  # type: ignore[return-value]


def _too_small_error(
    estimate: MemoryEstimate, patch: tuple[int, ...], batch: int, c: Constraints
) -> SpecError:
    return SpecError(
        "no configuration fits the memory limit",
        expected=f"an estimated peak within {c.limit_rule} ({c.limit_bytes / MIB:.0f} MiB)",
        found=f"the smallest configuration (patch {list(patch)}, batch {batch}) needs an "
        f"estimated {estimate.peak / MIB:.0f} MiB "
        f"({', '.join(f'{k} {v}' for k, v in estimate.to_dict().items() if k != 'unit')})",
        fix="raise constraints.memory_limit_gb (or --memory-gb), or set smaller "
        "model.channels / train.patch_size by hand",
    )


def _choose_patch(
    sizer: _Sizer, inputs: PlanInputs, batch: int
) -> tuple[tuple[int, int, int], int, str]:
    spec = sizer.spec
    median = tuple(max(1, s) for s in inputs.median_shape)
    current = list(median)
    for shrunk in range(MAX_SHRINK_STEPS):
        levels = _levels(spec, current)
        step = sizer.step(levels)
        # Auto depth keeps >= 4 bottleneck voxels; a spec's own depth only needs divisibility.
        smallest = step * (4 if spec.model.channels == "auto" else 1)
        patch = _round_to(current, step, smallest)
        estimate = sizer.estimate(patch, batch, levels)
        if estimate.peak <= sizer.constraints.limit_bytes:
            rule = (
                f"median case shape {list(median)} in network space, rounded to multiples of {step}"
            )
            if shrunk:
                rule += f", shrunk {shrunk} step(s) (largest axis relative to the median first) to "
                rule += "fit the memory limit"
            return patch, levels, rule
        # Auto depth can drop levels as the patch shrinks, down to 2 levels (8 voxels).
        floor = 4 * 2 ** (MIN_LEVELS - 1) if spec.model.channels == "auto" else step
        ratios = [patch[a] / median[a] if patch[a] - step >= floor else -1.0 for a in range(3)]
        axis = max(range(3), key=lambda a: (ratios[a], patch[a], -a))
        if ratios[axis] < 0:
            raise _too_small_error(estimate, patch, batch, sizer.constraints)
        current = list(patch)
        current[axis] = patch[axis] - step
    raise SpecError("patch planning did not converge", expected="a plan", found="a loop")


def _levels_for_fixed_patch(spec: Spec, patch: tuple[int, int, int]) -> int:
    """Auto channels with a fixed patch: most levels whose factor divides every axis."""
    levels = levels_for(patch)
    while levels > 2 and any(p % 2 ** (levels - 1) for p in patch):
        levels -= 1
    if any(p % 2 for p in patch):
        raise SpecError(
            f"train.patch_size {list(patch)} cannot be halved by any network level",
            expected="even patch sides (the network halves them at least once)",
            found=str(list(patch)),
            fix="use train.patch_size=auto, or even sides such as [64, 64, 64]",
        )
    return levels


def choose(
    spec: Spec,
    inputs: PlanInputs,
    constraints: Constraints,
    time_per_iteration: Callable[[Spec], float] | float | None = None,
    time_per_validation: Callable[[Spec], float] | float | None = None,
) -> Plan:
    """The plan for `spec`'s "auto" sizes (numbers in the spec are kept and only estimated).
    `time_per_iteration`: seconds, or a function measuring them for a resolved spec; only
    used for `train.iterations: auto` with a time budget (and reported when given)."""
    from dentpy.spec import AUTO_SIZES

    auto = [name for name in AUTO_SIZES if _value(spec, name) == "auto"]
    sizer = _Sizer(spec, inputs, constraints)
    rules: dict[str, str] = {}
    fixed_batch = spec.train.batch_size if spec.train.batch_size != "auto" else None
    min_batch = fixed_batch or MIN_BATCH

    if spec.train.patch_size == "auto":
        patch, levels, rules["train.patch_size"] = _choose_patch(sizer, inputs, min_batch)
    else:
        patch = tuple(spec.train.patch_size)  # type: ignore[assignment]
        levels = (
            _levels_for_fixed_patch(spec, patch)
            if spec.model.channels == "auto"
            else len(spec.model.channels)
        )
        rules["train.patch_size"] = "from the spec"
    channels = sizer.channels(levels)
    rules["model.channels"] = (
        f"{levels} levels: the most keeping the bottleneck >= 4 voxels per axis "
        f"(patch {list(patch)}), widths doubling from {channels[0]} up to 320"
        if spec.model.channels == "auto"
        else "from the spec"
    )

    if fixed_batch is None:
        cap = max(MIN_BATCH, int(BATCH_DATASET_SHARE * inputs.dataset_voxels / math.prod(patch)))
        batch = MIN_BATCH
        first = sizer.estimate(patch, batch, levels)
        if first.peak > constraints.limit_bytes:
            raise _too_small_error(first, patch, batch, constraints)
        while (
            batch < cap and sizer.estimate(patch, batch + 1, levels).peak <= constraints.limit_bytes
        ):
            batch += 1
        rules["train.batch_size"] = (
            f"largest that fits the memory limit, >= {MIN_BATCH}, capped at {cap} "
            f"(a step covers at most {BATCH_DATASET_SHARE:.0%} of the training voxels)"
        )
    else:
        batch = fixed_batch
        rules["train.batch_size"] = "from the spec"

    memory = sizer.estimate(patch, batch, levels)
    plan = Plan(
        patch_size=patch,
        batch_size=batch,
        channels=channels,
        iterations=0,
        rules=rules,
        memory=memory,
        limit_bytes=constraints.limit_bytes,
        limit_rule=constraints.limit_rule,
        device=constraints.device_type,
        precision="bf16" if constraints.bf16 else "fp32",
        inputs=inputs,
        auto=auto,
    )
    _choose_iterations(spec, plan, constraints, time_per_iteration, time_per_validation)
    return plan


def _value(spec: Spec, name: str) -> Any:
    section, key = name.split(".")
    return getattr(getattr(spec, section), key)


def _choose_iterations(
    spec: Spec,
    plan: Plan,
    constraints: Constraints,
    time_per_iteration: Callable[[Spec], float] | float | None,
    time_per_validation: Callable[[Spec], float] | float | None = None,
) -> None:
    auto = spec.train.iterations == "auto"
    budget = constraints.time_budget_minutes
    if time_per_iteration is not None and (budget or not auto):
        resolved = apply_plan(spec, plan)
        if callable(time_per_iteration):
            plan.seconds_per_iteration = float(time_per_iteration(resolved))
            plan.timing_rule = (
                f"measured: median of {TIMED_STEPS} training steps after "
                f"{WARMUP_STEPS} warm-up steps"
            )
        else:
            plan.seconds_per_iteration = float(time_per_iteration)
            plan.timing_rule = "given"
        if time_per_validation is not None:
            validation = time_per_validation
            plan.seconds_per_validation = float(
                validation(resolved) if callable(validation) else validation
            )
    if not auto:
        plan.iterations = int(spec.train.iterations)
        plan.rules["train.iterations"] = "from the spec"
    elif budget and plan.seconds_per_iteration:
        every = spec.train.validate_every
        if plan.seconds_per_validation is None:
            usable = budget * 60 * BUDGET_TRAINING_SHARE
            plan.iterations = max(1, int(usable / plan.seconds_per_iteration))
            plan.rules["train.iterations"] = (
                f"{BUDGET_TRAINING_SHARE:.0%} of the {budget:g} min budget / "
                f"{plan.seconds_per_iteration:.3g} s per iteration"
            )
        else:
            # Validation measured too: only data loading, checkpoints and start-up are
            # left to the margin. Overrunning it is harmless: the budget stops training
            # near the end of the schedule, where the learning rate is already small.
            usable = budget * 60 * BUDGET_SHARE_WITH_VALIDATION
            per_iteration = plan.seconds_per_iteration + plan.seconds_per_validation / every
            plan.iterations = max(1, int(usable / per_iteration))
            plan.rules["train.iterations"] = (
                f"{BUDGET_SHARE_WITH_VALIDATION:.0%} of the {budget:g} min budget / "
                f"({plan.seconds_per_iteration:.3g} s per iteration + "
                f"{plan.seconds_per_validation:.3g} s per validation / {every})"
            )
    else:
        plan.iterations = DEFAULT_ITERATIONS
        plan.rules["train.iterations"] = (
            f"no constraints.time_budget_minutes: the default {DEFAULT_ITERATIONS}"
        )


def apply_plan(spec: Spec, plan: Plan) -> Spec:
    """A copy of `spec` with its "auto" sizes replaced by the plan's numbers."""
    resolved = spec.model_copy(deep=True)
    if spec.train.patch_size == "auto":
        resolved.train.patch_size = plan.patch_size
    if spec.train.batch_size == "auto":
        resolved.train.batch_size = plan.batch_size
    if spec.model.channels == "auto":
        resolved.model.channels = plan.channels
    if spec.train.iterations == "auto":
        # While timing (before iterations are known) the copy keeps a placeholder.
        resolved.train.iterations = plan.iterations or DEFAULT_ITERATIONS
    return resolved
