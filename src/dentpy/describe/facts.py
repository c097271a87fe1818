"""What is known beyond the spec: a trained run's plan and fingerprint, or a sample of the
dataset when its folder exists, or nothing (then the stages say so)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dentpy.errors import DentpyError, InputDataError, SpecError

if TYPE_CHECKING:
    from dentpy.spec import Spec

NOT_YET = "from the dataset when it exists"


@dataclass(frozen=True)
class Facts:
    """What is known beyond the spec: the run's plan and fingerprint, or the dataset's."""

    plan: dict[str, Any] | None
    fingerprint: dict[str, Any] | None
    task: dict[str, Any] | None  # a task's to_dict(), resolved against real data
    source: str
    note: str | None = None  # why the dataset could not tell more


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputDataError(
            f"{path.parent.name}/{path.name} cannot be read",
            expected="the JSON file `dentpy train` wrote",
            found=type(exc).__name__,
            fix="pass a complete run folder (e.g. runs/NAME) or leave --run out",
        ) from None
    if not isinstance(data, dict):
        raise InputDataError(
            f"{path.parent.name}/{path.name} is not a JSON object",
            expected="the JSON file `dentpy train` wrote",
            found=type(data).__name__,
        )
    return data


def facts_from_run(run_dir: Path) -> Facts:
    plan_path = run_dir / "plan.json"
    if not plan_path.is_file():
        raise InputDataError(
            f"{run_dir.name}: not a trained run folder",
            expected="a folder with spec.yaml and plan.json (written by `dentpy train`)",
            found="no plan.json",
            fix="pass the folder `dentpy train` printed (e.g. runs/NAME), or leave --run out",
        )
    plan = _read_json(plan_path)
    fingerprint_path = run_dir / "fingerprint.json"
    fingerprint = _read_json(fingerprint_path) if fingerprint_path.is_file() else None
    task = plan.get("task")
    return Facts(plan, fingerprint, task if isinstance(task, dict) else None, "the run")


def facts_from_dataset(spec: Spec) -> Facts:
    """Labels, classes and a fingerprint of a few cases, when the data folder exists.

    Only cheap reads: the dataset's listing and annotations, and the fingerprint of one
    volume (3D) or a few images (2D)."""
    data = Path(spec.input.data)
    if not data.exists():
        return Facts(None, None, None, "the spec", note=NOT_YET)
    try:
        from dentpy.data.dataset import Dataset, open_any

        dataset = open_any(data, spec.input.layout, spec.input.assume_spacing_mm)
        if isinstance(dataset, Dataset):
            fingerprint = dataset.fingerprint(max_cases=1)
        else:
            fingerprint = dataset.fingerprint(max_cases=20)
        task = _task_from_dataset(spec, dataset)
    except DentpyError:
        note = "the dataset could not be read (run `dentpy data check`)"
        return Facts(None, None, None, "the spec", note=note)
    return Facts(None, fingerprint, task, "the dataset (sampled)")


def _task_from_dataset(spec: Spec, dataset: Any) -> dict[str, Any]:
    task = spec.objective.task
    if task == "segmentation":
        from dentpy.tasks.segmentation import build_segmentation_task

        return build_segmentation_task(spec, dataset.labels).to_dict()
    if task == "classification":
        from dentpy.tasks.classification import build_classification_task

        labels = [r.class_label for r in dataset.records if r.class_label is not None]
        return build_classification_task(spec, dataset.classes, labels).to_dict()
    from dentpy.tasks.detection import build_detection_task

    return build_detection_task(spec, dataset.records).to_dict()


def check_same_task(spec: Spec, facts: Facts, run_dir: Path | None) -> None:
    trained = (facts.task or {}).get("task")
    if run_dir is not None and trained is not None and trained != spec.objective.task:
        raise SpecError(
            f"{Path(run_dir).name} was trained for {trained}, the spec describes "
            f"{spec.objective.task}",
            expected="the spec the run was trained from",
            found=f"objective.task: {spec.objective.task}",
            fix=f"pass {Path(run_dir).name}/spec.yaml, or leave --run out",
        )


def known_classes(spec: Spec, facts: Facts) -> tuple[str, ...] | None:
    """The network's classes (segmentation: without background), when known."""
    if facts.task is not None:
        key = "class_names" if spec.objective.task == "segmentation" else "classes"
        return tuple(str(c) for c in facts.task.get(key, ()))
    if spec.objective.output == "instance":
        return None  # the teeth come from the dataset's FDI labels
    if spec.objective.classes != "auto":
        return tuple(spec.objective.classes)
    return None


def class_count(spec: Spec, facts: Facts) -> int | None:
    classes = known_classes(spec, facts)
    if classes is not None:
        return len(classes)
    if spec.objective.output == "binary":
        return 2
    return None


def classification_loss(spec: Spec, facts: Facts) -> str:
    if facts.task is not None and "loss_name" in facts.task:
        return str(facts.task["loss_name"])
    return "focal" if spec.constraints.class_imbalance == "focal" else spec.loss.name


def input_size_2d(spec: Spec, facts: Facts) -> tuple[int, int]:
    """(height, width) a 2D network sees: the run's planned size, else the spec's."""
    size = (facts.plan or {}).get("preprocess", {}).get("image_size")
    if isinstance(size, list) and len(size) == 2:
        return int(size[0]), int(size[1])
    return spec.preprocess.image_size


def fingerprint_median(fingerprint: dict[str, Any] | None, key: str) -> list[float] | None:
    value = (fingerprint or {}).get(key)
    if isinstance(value, dict) and isinstance(value.get("median"), list):
        return [float(v) for v in value["median"]]
    return None
