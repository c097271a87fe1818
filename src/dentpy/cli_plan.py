"""`dentpy plan` (registered on the main app by dentpy.cli)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer


def _fail(exc: Exception) -> typer.Exit:
    # Print here and exit 2 ourselves, as dentpy.cli does for its own commands.
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def _console() -> Any:
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=140)


def plan_overrides(
    memory_gb: float | None, minutes: float | None, device: str | None, only_auto: bool
) -> list[str]:
    """Spec overrides the options stand for (all four sizes "auto" unless --only-auto)."""
    from dentpy.spec import AUTO_SIZES

    overrides = [] if only_auto else [f"{name}=auto" for name in AUTO_SIZES]
    if memory_gb is not None:
        overrides.append(f"constraints.memory_limit_gb={memory_gb}")
    if minutes is not None:
        overrides.append(f"constraints.time_budget_minutes={minutes}")
    if device is not None:
        overrides.append(f"constraints.device={device}")
    return overrides


def _show(plan: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    table = Table(title=f"plan ({plan['device']}, {plan['precision']})")
    table.add_column("setting")
    table.add_column("value")
    table.add_column("why", overflow="fold")
    for name, value in plan["chosen"].items():
        table.add_row(name, str(value), plan["rules"][name])
    console = _console()
    console.print(table)
    memory = plan["memory_estimate"]
    parts = ", ".join(
        f"{k} {v}" for k, v in memory.items() if k not in ("unit", "training_mib", "peak_mib")
    )
    console.print(
        f"estimated peak memory: {memory['peak_mib']:.0f} MiB of {plan['memory_limit_mib']:.0f} "
        f"MiB allowed ({plan['memory_limit_rule']})\n  parts (MiB): {parts}",
        markup=False,
    )
    time = plan["time"]
    if time["seconds_per_iteration"] is not None:
        console.print(
            f"time per iteration: {time['seconds_per_iteration']:.3g} s ({time['rule']}); "
            f"epoch ({time['iterations_per_epoch']} iterations) ~{time['seconds_per_epoch']} s; "
            f"{plan['chosen']['train.iterations']} iterations ~"
            f"{time['seconds_per_iteration'] * plan['chosen']['train.iterations'] / 60:.1f} min",
            markup=False,
        )
    if time.get("seconds_per_validation") is not None:
        console.print(
            f"validation of the whole validation split: ~{time['seconds_per_validation']:.3g} s "
            "(measured: one prediction of the largest case, scaled by voxels)",
            markup=False,
        )
    if "measured" in plan:
        measured = plan["measured"]
        console.print(
            f"measured peak of {measured['steps']} training steps: "
            f"{measured['peak_mib']:.0f} MiB vs estimated {measured['estimated_mib']:.0f} MiB "
            f"(ratio {measured['ratio']:.2f})",
            markup=False,
        )
    overrides = " ".join(plan["as_overrides"])
    console.print(f"written: {out}\n  use it: dentpy train SPEC {overrides}", markup=False)


def register(app: typer.Typer) -> None:
    """Define `plan` on `app`."""

    @app.command(
        context_settings={"allow_extra_args": True, "ignore_unknown_options": False},
        epilog="Example: `dentpy plan spec.yaml --memory-gb 8 --minutes 30` · then "
        "`dentpy train spec.yaml train.patch_size=auto train.batch_size=auto "
        "model.channels=auto train.iterations=auto`",
    )
    def plan(
        spec: Annotated[Path, typer.Argument(help="spec YAML")],
        overrides: Annotated[
            list[str] | None, typer.Argument(help="key=value overrides, e.g. model.name=unet")
        ] = None,
        memory_gb: Annotated[
            float | None,
            typer.Option(min=0.01, help="memory limit in GB (default: the spec's, else auto)"),
        ] = None,
        minutes: Annotated[
            float | None, typer.Option(min=0.01, help="training time budget in minutes")
        ] = None,
        device: Annotated[
            str | None, typer.Option(help="cpu, cuda or auto (default: the spec's)")
        ] = None,
        out: Annotated[
            Path | None, typer.Option(help="plan JSON (default: plan.json next to the spec)")
        ] = None,
        only_auto: Annotated[
            bool,
            typer.Option(help="plan only the sizes the spec sets to auto (as train does)"),
        ] = False,
        timing: Annotated[
            bool, typer.Option(help="time 3 training steps of the plan on the device")
        ] = True,
        measure: Annotated[
            bool,
            typer.Option(help="also measure the peak memory of 3 training steps (a subprocess)"),
        ] = False,
        force: Annotated[bool, typer.Option(help="overwrite an existing plan JSON")] = False,
    ) -> None:
        """Self-configuration for 3D segmentation (semantic and instance), in the spirit of
        nnU-Net: from the training cases (target spacing, median shape in network space) and
        the constraints (device, memory limit, time budget) choose the patch size, batch size,
        network widths and iterations; estimate peak memory and time per iteration. Writes
        a JSON with every value, the rule that chose it and the estimate's parts."""
        from dentpy.errors import DentpyError, OutputError
        from dentpy.planning.from_spec import plan_spec, refuse_other_tasks
        from dentpy.spec import load_spec
        from dentpy.train import write_json

        target = out if out is not None else spec.parent / "plan.json"
        try:
            if target.exists() and not force:
                raise OutputError(
                    f"{target} already exists",
                    expected="a new output path",
                    found="an existing file",
                    fix="pass --force to overwrite it, or --out another path",
                )
            # Classification/detection: say what is planned for which task before the "auto"
            # overrides could make the spec itself invalid.
            refuse_other_tasks(load_spec(spec, list(overrides or [])))
            extra = plan_overrides(memory_gb, minutes, device, only_auto)
            loaded = load_spec(spec, [*(overrides or []), *extra])
            chosen = plan_spec(loaded, measure_time=timing, show_progress=True)
            result = chosen.to_dict()
            if measure:
                result["measured"] = _measure(loaded, chosen)
        except DentpyError as exc:
            raise _fail(exc) from None
        result["as_overrides"] = [
            f"{name}={_yaml_value(value)}" for name, value in result["chosen"].items()
        ]
        target.parent.mkdir(parents=True, exist_ok=True)
        write_json(target, result)
        _show(result, target)


def _yaml_value(value: Any) -> str:
    return "[" + ",".join(str(v) for v in value) + "]" if isinstance(value, list) else str(value)


def _measure(spec: Any, plan: Any) -> dict[str, Any]:
    from dentpy.planning.chooser import apply_plan
    from dentpy.planning.measure import measure_peak
    from dentpy.planning.memory import MIB

    resolved = apply_plan(spec, plan)
    steps = 3
    measured = measure_peak(resolved.to_dict(), plan.inputs.out_channels, plan.device, steps)
    estimated = plan.memory.training
    if plan.device == "cuda":
        estimated -= plan.memory.process_overhead  # max_memory_allocated excludes the context
    return {
        "steps": steps,
        "what": "training steps on random data: peak RSS (CPU) or max_memory_allocated (CUDA)",
        "peak_mib": round(measured["peak_bytes"] / MIB, 1),
        "estimated_mib": round(estimated / MIB, 1),
        "ratio": round(estimated / measured["peak_bytes"], 3),
    }
