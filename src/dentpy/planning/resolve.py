"""`auto` sizes in a spec -> numbers: what `dentpy train` calls once the training cases
are known, and what a resumed run reuses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dentpy.planning.chooser import Constraints, Plan, apply_plan, choose
from dentpy.planning.inputs import inputs_from_cases
from dentpy.planning.limits import memory_limit

if TYPE_CHECKING:
    import torch

    from dentpy.data.cache import PreparedCase
    from dentpy.spec import Spec


def has_auto(spec: Spec) -> bool:
    from dentpy.spec import AUTO_SIZES

    return any(_value(spec, name) == "auto" for name in AUTO_SIZES)


def require_numbers(spec: Spec, command: str, alternative: str = "") -> None:
    """Refuse "auto" sizes in a command that does not plan them itself."""
    from dentpy.errors import SpecError
    from dentpy.spec import AUTO_SIZES

    autos = [name for name in AUTO_SIZES if _value(spec, name) == "auto"]
    if autos:
        raise SpecError(
            f"`{command}` needs numbers for {', '.join(autos)}",
            expected="numbers (only `dentpy train` and `dentpy plan` choose 'auto' sizes)",
            found="'auto'",
            fix="run `dentpy plan SPEC` (it prints the chosen numbers) and put them in the spec"
            + alternative,
        )


def _value(spec: Spec, name: str) -> Any:
    section, key = name.split(".")
    return getattr(getattr(spec, section), key)


def planning_constraints(
    spec: Spec, device: torch.device, amp_dtype: torch.dtype | None
) -> Constraints:
    import torch

    from dentpy.engine.distributed import local_world_size

    limit, rule = memory_limit(spec.constraints.memory_limit_gb, device.type, local_world_size())
    return Constraints(
        device_type=device.type,
        bf16=amp_dtype == torch.bfloat16,
        limit_bytes=limit,
        limit_rule=rule,
        time_budget_minutes=spec.constraints.time_budget_minutes,
    )


def _shared_timing(measure: Callable[[Spec], float]) -> Callable[[Spec], float]:
    """Under torch.distributed every process must train the same number of iterations:
    rank 0's timing decides."""

    def timed(spec: Spec) -> float:
        import torch.distributed as dist

        seconds = measure(spec)
        if dist.is_available() and dist.is_initialized():
            shared = [seconds]
            dist.broadcast_object_list(shared, src=0)
            seconds = float(shared[0])
        return seconds

    return timed


def plan_for_cases(
    spec: Spec,
    train_cases: Sequence[PreparedCase],
    val_cases: Sequence[PreparedCase],
    target_spacing_mm: Sequence[float],
    out_channels: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    fingerprint: dict[str, Any] | None = None,
    seconds_per_iteration: float | None = None,
    measure_time: bool = True,
    spacing_rule: str = "given",
) -> Plan:
    """The plan for `spec` on these cases. Timing is measured (or `seconds_per_iteration`
    used) only where it matters: `train.iterations: auto` with a time budget, or when
    `measure_time` asks for it to be reported."""
    from dentpy.engine.distributed import world_size
    from dentpy.planning.timing import seconds_per_iteration as measure
    from dentpy.planning.timing import seconds_per_validation

    inputs = inputs_from_cases(
        train_cases, val_cases, target_spacing_mm, out_channels, fingerprint, spacing_rule
    )
    timing: Callable[[Spec], float] | float | None = seconds_per_iteration
    validation: Callable[[Spec], float] | None = None
    if timing is None and measure_time:
        timing = _shared_timing(lambda s: measure(s, out_channels, device, amp_dtype))
        shapes = [case.image.shape[-3:] for case in val_cases]
        ranks = world_size()  # several processes share each validation
        validation = _shared_timing(
            lambda s: seconds_per_validation(s, out_channels, device, amp_dtype, shapes, ranks)
        )
    constraints = planning_constraints(spec, device, amp_dtype)
    return choose(spec, inputs, constraints, timing, validation)


def resolve_auto(
    spec: Spec,
    train_cases: Sequence[PreparedCase],
    val_cases: Sequence[PreparedCase],
    target_spacing_mm: Sequence[float],
    out_channels: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    fingerprint: dict[str, Any] | None = None,
    seconds_per_iteration: float | None = None,
    spacing_rule: str = "given",
) -> tuple[Spec, dict[str, Any]]:
    """(`spec` with its "auto" sizes replaced by the plan's numbers, the plan as a dict);
    a spec without "auto" sizes comes back unchanged with an empty dict. Timing runs only
    for `train.iterations: auto` with `constraints.time_budget_minutes`.

    Under torch.distributed every rank plans (their timings run side by side, as training
    will; rank 0's timing is shared) and then takes rank 0's plan, so all train the same
    sizes and number of steps."""
    from dentpy.engine.distributed import broadcast_from_main

    if not has_auto(spec):
        return spec, {}
    needs_time = spec.train.iterations == "auto" and bool(spec.constraints.time_budget_minutes)
    plan = plan_for_cases(
        spec,
        train_cases,
        val_cases,
        target_spacing_mm,
        out_channels,
        device,
        amp_dtype,
        fingerprint,
        seconds_per_iteration,
        measure_time=needs_time,
        spacing_rule=spacing_rule,
    )
    return broadcast_from_main((apply_plan(spec, plan), plan.to_dict()))


def adopt_recorded_auto(spec: Spec, recorded: Spec) -> None:
    """Resume: "auto" sizes take the numbers the run started with (its spec.yaml)."""
    from dentpy.spec import AUTO_SIZES

    for name in AUTO_SIZES:
        if _value(spec, name) == "auto" and _value(recorded, name) != "auto":
            section, key = name.split(".")
            setattr(getattr(spec, section), key, _value(recorded, name))
