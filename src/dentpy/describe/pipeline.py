"""Putting the stages together: one Pipeline for a spec, optionally with a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dentpy.describe.facts import check_same_task, facts_from_dataset, facts_from_run
from dentpy.describe.model import Pipeline
from dentpy.describe.network import build_network
from dentpy.describe.stages_augment import augment_stage
from dentpy.describe.stages_input import input_stage, preprocess_stage
from dentpy.describe.stages_results import (
    decode_stage,
    metrics_stage,
    outputs_stage,
    postprocess_stage,
)
from dentpy.describe.stages_training import model_stage, training_stage

if TYPE_CHECKING:
    from dentpy.spec import Spec


def describe_pipeline(spec: Spec, run_dir: Path | None = None) -> Pipeline:
    """The stages from raw data to outputs and metrics for `spec` (see the package docstring).

    `run_dir`: a trained run folder; its plan.json (classes, target spacing, image size)
    and fingerprint.json (shapes, spacings) then replace what the spec alone can tell."""
    from dentpy.planning import require_numbers

    require_numbers(
        spec, "dentpy describe", "; or describe the trained run folder (it holds the numbers)"
    )
    facts = facts_from_run(Path(run_dir)) if run_dir is not None else facts_from_dataset(spec)
    check_same_task(spec, facts, run_dir)
    network = build_network(spec, facts)
    stages = (
        input_stage(spec, facts),
        preprocess_stage(spec, facts),
        augment_stage(spec, facts, network),
        model_stage(spec, network),
        training_stage(spec, facts),
        decode_stage(spec, facts, network),
        postprocess_stage(spec, facts),
        outputs_stage(spec),
        metrics_stage(spec),
    )
    task = spec.objective.task
    output = spec.objective.output
    kind = f"{task} ({output})" if task != "detection" else "detection (boxes)"
    subtitle = (
        f"{kind}, {spec.input.modality.upper()} {spec.input.dimensionality.upper()}; "
        f"shapes from {facts.source}"
    )
    return Pipeline(f"dentpy pipeline: {spec.name}", subtitle, stages, facts.source)
