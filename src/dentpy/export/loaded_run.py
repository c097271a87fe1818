"""A trained run loaded for export: its network on the CPU in fp32 eval mode, the shape of
one network input, and which axes of that input may vary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dentpy.engine.run import RunFolder, load_weights, require_run_folder
from dentpy.errors import CheckpointError, SpecError

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Spec

# `task` values of the card: what the exported network answers.
SEGMENTATION, INSTANCE = "segmentation", "instance segmentation"
CLASSIFICATION, DETECTION = "classification", "detection"


@dataclass(frozen=True)
class LoadedRun:
    run: RunFolder
    spec: Spec
    plan: dict[str, Any]
    task: str  # one of SEGMENTATION, INSTANCE, CLASSIFICATION, DETECTION
    model: torch.nn.Module
    iteration: int
    checkpoint: str
    # One network input (N, 1, *spatial); N is 2 so an exporter cannot specialise on 1.
    example_shape: tuple[int, ...]
    # Spatial sizes must be multiples of this (3D networks halve their input).
    spatial_multiple: int

    @property
    def spatial_dynamic(self) -> bool:
        """3D networks are fully convolutional: any multiple of `spatial_multiple` works."""
        return self.task in (SEGMENTATION, INSTANCE)


def load_for_export(run_dir: Path, checkpoint: str = "best") -> LoadedRun:
    """Verified weights of `run_dir` (sha256-checked by `load_weights`) in a CPU fp32 model."""
    import torch

    from dentpy.spec import load_spec

    if checkpoint not in ("best", "last"):
        raise SpecError(
            f"unknown checkpoint '{checkpoint}'",
            expected="best (chosen on validation) or last",
            found=checkpoint,
            fix="pass --checkpoint best or --checkpoint last",
        )
    run = require_run_folder(Path(run_dir))
    spec = load_spec(run.spec)
    plan = run.read_json(run.plan)
    kind = str(plan.get("task", {}).get("task", ""))
    model, task, shape, multiple = _build(kind, plan, spec, run)
    weights = load_weights(run, spec, model, checkpoint)
    network = weights.model.to(torch.device("cpu"), dtype=torch.float32).eval()
    return LoadedRun(
        run=run,
        spec=spec,
        plan=plan,
        task=task,
        model=network,
        iteration=weights.iteration,
        checkpoint=checkpoint,
        example_shape=shape,
        spatial_multiple=multiple,
    )


def _build(
    kind: str, plan: dict[str, Any], spec: Spec, run: RunFolder
) -> tuple[torch.nn.Module, str, tuple[int, ...], int]:
    if kind == "segmentation":
        from dentpy.models import downsampling_factor
        from dentpy.tasks.segmentation import SegmentationTask

        seg = SegmentationTask.from_dict(plan["task"])
        task = INSTANCE if seg.instances else SEGMENTATION
        shape = (2, 1, *(int(s) for s in spec.train.patch_size))
        return seg.build_model(spec), task, shape, downsampling_factor(spec.model)
    if kind == "classification":
        from dentpy.tasks.classification import ClassificationTask

        size = plan["preprocess"]["image_size"]
        model = ClassificationTask.from_dict(plan["task"]).build_model(spec)
        return model, CLASSIFICATION, (2, 1, int(size[0]), int(size[1])), 1
    if kind == "detection":
        from dentpy.tasks.detection import DetectionTask

        size = plan["preprocess"]["image_size"]
        model = DetectionTask.from_dict(plan["task"]).build_model(spec)
        return model, DETECTION, (2, 1, int(size[0]), int(size[1])), 1
    raise CheckpointError(
        f"{run.root.name}: plan.json names no task dentpy can export",
        expected="task segmentation, classification or detection in plan.json",
        found=f"task {kind or 'missing'}",
        fix="export a run folder written by `dentpy train`",
    )
