"""Plain-text summaries: the problem formulation per spec section, metric definitions, and
a Pipeline as indented text for the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dentpy.describe.formatting import number, percent
from dentpy.describe.model import Pipeline
from dentpy.describe.stages_results import metric_names

if TYPE_CHECKING:
    from dentpy.spec import Spec


def metric_definition(spec: Spec, name: str) -> str | None:
    """The written definition dentpy's evaluation uses for metric `name`, if it has one."""
    task = spec.objective.task
    if task == "classification":
        from dentpy.metrics.classification import METRIC_DEFINITIONS as definitions
    elif task == "detection":
        from dentpy.metrics.detection import DETECTION_DEFINITIONS as definitions
    else:
        from dentpy.metrics.segmentation import METRIC_DEFINITIONS as definitions
    aliases = {"kappa": "quadratic_weighted_kappa"}
    return definitions.get(aliases.get(name, name))


def describe_problem(spec: Spec) -> list[tuple[str, str]]:
    """The problem formulation, one (section, summary) per spec section, in spec order."""
    o, i, c, e, p = spec.objective, spec.input, spec.constraints, spec.evaluation, spec.paradigm
    classes = "auto (from the dataset)" if o.classes == "auto" else ", ".join(o.classes)
    objective = f"{o.task}, output {o.output}; classes: {classes}"
    if o.output == "instance":
        objective += f"; instances: {o.instances}"
    if o.task == "detection":
        objective += f"; box class: {o.box_class}"
    if o.output == "binary":
        objective += f"; positive class: {o.positive_class}"
    paradigm: str = p.kind
    if p.kind == "semi-supervised":
        paradigm += f" ({p.method.replace('_', ' ')})"
    budget = f"{number(c.time_budget_minutes)} min" if c.time_budget_minutes else "none"
    constraints = (
        f"device {c.device}, precision {c.precision}, time budget {budget}, "
        f"deterministic {str(c.deterministic).lower()}"
    )
    baselines = ", ".join(e.baselines) if e.baselines else "none"
    evaluation = (
        f"val {percent(e.val_fraction)}, test {percent(e.test_fraction)} (by patient, seed "
        f"{e.split_seed}); baselines: {baselines}"
    )
    lr = spec.optimizer.lr if spec.optimizer.lr == "auto" else f"{spec.optimizer.lr:g}"
    model = spec.model.name
    if o.task == "segmentation":
        model += f", channels {list(spec.model.channels)}"
    elif o.task == "detection":
        model += f", base width {spec.model.channels[0]}"
    definition = metric_definition(spec, spec.metrics.select_by)
    selection = [(spec.metrics.select_by, definition)] if definition else []
    return [
        ("objective", objective),
        ("input", f"{i.modality} {i.dimensionality}, layout {i.layout}"),
        (
            "metrics",
            f"select by {spec.metrics.select_by}; report: {', '.join(metric_names(spec))}",
        ),
        *selection,
        ("paradigm", paradigm),
        ("constraints", constraints),
        ("evaluation", evaluation),
        ("model", model),
        ("loss", spec.loss.name),
        (
            "optimizer",
            f"{spec.optimizer.name}, lr {lr}, weight decay {spec.optimizer.weight_decay:g}",
        ),
        ("schedule", f"{spec.schedule.name}, {spec.schedule.warmup_iterations} warm-up iterations"),
    ]


def describe_text(pipeline: Pipeline) -> str:
    """The pipeline as indented plain text (no markup), one block per stage."""
    lines = [pipeline.title, pipeline.subtitle, ""]
    for position, stage in enumerate(pipeline.stages, start=1):
        suffix = "  [training only]" if stage.training_only else ""
        lines.append(f"{position}. {stage.title}{suffix}")
        lines += [f"     - {detail}" for detail in stage.details]
        if stage.shape:
            lines.append(f"     => {stage.shape}")
    return "\n".join(lines)
