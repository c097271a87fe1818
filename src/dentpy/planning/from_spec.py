"""A plan straight from a spec file (`dentpy plan`): the same data steps `dentpy train`
takes before training (dataset, splits, target spacing, cached preprocessing), so the plan
shown is the plan `train` will resolve "auto" to."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dentpy.errors import SpecError

if TYPE_CHECKING:
    from dentpy.planning.chooser import Plan
    from dentpy.spec import Spec


def refuse_other_tasks(spec: Spec) -> None:
    if spec.objective.task != "segmentation":
        raise SpecError(
            f"`dentpy plan` plans 3D segmentation; this spec is {spec.objective.task}",
            expected="objective.task segmentation (semantic or instance output): patch size, "
            "batch size, network channels and iterations are planned",
            found=f"objective.task {spec.objective.task}",
            fix="set train.batch_size and train.iterations by hand for classification and "
            "detection (docs/planning.md)",
        )


def plan_spec(
    spec: Spec,
    cache_dir: Path | None = None,
    measure_time: bool = True,
    seconds_per_iteration: float | None = None,
    show_progress: bool = False,
) -> Plan:
    from dentpy.data.cache import default_cache_dir
    from dentpy.data.dataset import open_dataset
    from dentpy.planning.resolve import plan_for_cases
    from dentpy.semi import check_paradigm
    from dentpy.semi.attach import split_labels
    from dentpy.tasks.segmentation import build_segmentation_task
    from dentpy.train import configure_runtime, make_splits, prepare, target_spacing_choice

    refuse_other_tasks(spec)
    check_paradigm(spec)
    dataset = open_dataset(spec.input.data, spec.input.layout, spec.input.assume_spacing_mm)
    task = build_segmentation_task(spec, dataset.labels)
    splits = make_splits(spec, dataset)
    splits = split_labels(spec, splits, {r.case_id: r.patient_id for r in dataset.records})
    from dentpy.preprocess import PreprocessPlan

    spacing = target_spacing_choice(spec, dataset, splits["train"])
    preprocess = PreprocessPlan(
        target_spacing_mm=spacing.mm,
        clip_percentiles=spec.preprocess.clip_percentiles,
    )
    device, amp_dtype = configure_runtime(spec)
    cache = cache_dir or default_cache_dir()
    ids = splits["train"] + splits["val"]
    prepared = prepare(dataset, task, preprocess, ids, cache, show_progress)
    n_train = len(splits["train"])
    return plan_for_cases(
        spec,
        prepared[:n_train],
        prepared[n_train:],
        spacing.mm,
        task.out_channels,
        device,
        amp_dtype,
        dataset.fingerprint(max_cases=50),
        seconds_per_iteration,
        measure_time,
        spacing.rule,
    )
