"""A run folder and what it holds; loading a trained model back from it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dentpy.errors import CheckpointError
from dentpy.preprocess import PreprocessPlan
from dentpy.tasks.segmentation import SegmentationTask

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Spec


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder (`runs/<name>/`)."""

    root: Path

    @property
    def spec(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def splits(self) -> Path:
        return self.root / "splits.json"

    @property
    def fingerprint(self) -> Path:
        return self.root / "fingerprint.json"

    @property
    def metrics_csv(self) -> Path:
        return self.root / "training_log.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation"

    def read_json(self, path: Path) -> Any:
        if not path.is_file():
            raise CheckpointError(
                f"{path.name} is missing from the run folder",
                expected=f"{path} written by `dentpy train`",
                found="no such file",
                fix="point at a run folder made by `dentpy train` (e.g. runs/<name>)",
            )
        return json.loads(path.read_text())


@dataclass(frozen=True)
class TrainedModel:
    spec: Spec
    task: SegmentationTask
    plan: PreprocessPlan
    model: torch.nn.Module
    device: torch.device
    amp_dtype: torch.dtype | None
    iteration: int


def require_run_folder(run_dir: Path) -> RunFolder:
    """The run folder, or a clear error when `run_dir` is not one."""
    run = RunFolder(Path(run_dir))
    if not run.spec.is_file():
        raise CheckpointError(
            f"{run_dir} is not a dentpy run folder",
            expected="a folder with spec.yaml, plan.json and checkpoints/",
            found="no spec.yaml",
            fix="pass the folder `dentpy train` printed (e.g. runs/<name>)",
        )
    return run


def load_trained(run_dir: Path, checkpoint: str = "best") -> TrainedModel:
    """Rebuild the network from the run's plan and load verified weights, in the layout
    3D networks predict fastest in on the run's device."""
    from dentpy.engine.device import inference_memory_format_3d
    from dentpy.spec import load_spec

    run = require_run_folder(run_dir)
    spec = load_spec(run.spec)
    plan_data = run.read_json(run.plan)
    task = SegmentationTask.from_dict(plan_data["task"])
    plan = PreprocessPlan.from_dict(plan_data["preprocess"])
    weights = load_weights(run, spec, task.build_model(spec), checkpoint)
    layout = inference_memory_format_3d(weights.device)
    return TrainedModel(
        spec=spec,
        task=task,
        plan=plan,
        model=weights.model.to(memory_format=layout),  # type: ignore[call-overload]
        device=weights.device,
        amp_dtype=weights.amp_dtype,
        iteration=weights.iteration,
    )


@dataclass(frozen=True)
class LoadedWeights:
    model: torch.nn.Module
    device: torch.device
    amp_dtype: torch.dtype | None
    iteration: int


def load_weights(
    run: RunFolder, spec: Spec, model: torch.nn.Module, checkpoint: str
) -> LoadedWeights:
    """Verified checkpoint weights into `model`, on the spec's device, in eval mode."""
    from dentpy.engine.checkpoint import load_checkpoint
    from dentpy.engine.device import autocast_dtype, choose_device

    device = choose_device(spec.constraints.device)
    loaded = load_checkpoint(run.checkpoints, tag=checkpoint)
    model.load_state_dict(loaded.weights)
    model.to(device).eval()
    return LoadedWeights(
        model, device, autocast_dtype(device, spec.constraints.precision), loaded.iteration
    )


def run_task(run_dir: Path) -> str | None:
    """The task a run folder was trained for ("segmentation", "classification",
    "detection"), None when it holds no plan."""
    run = RunFolder(Path(run_dir))
    if not run.plan.is_file():
        return None
    task = json.loads(run.plan.read_text()).get("task", {}).get("task")
    return str(task) if task is not None else None
