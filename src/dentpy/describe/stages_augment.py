"""The training-only sampling stage: patches or batches, class balancing, oversampling and
the random augmentations (with the left/right flip's class swap)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dentpy.describe.facts import Facts, known_classes
from dentpy.describe.formatting import dims, number, percent, tuple_text, value_range
from dentpy.describe.model import Stage
from dentpy.describe.network import Network

if TYPE_CHECKING:
    from dentpy.spec import Spec


def _swap_table(spec: Spec, facts: Facts) -> list[int] | str | None:
    """The task's left/right class swap table; "unknown" before the classes are known."""
    task = facts.task
    classes = known_classes(spec, facts)
    if task is None and classes is not None:
        # Semantic and box classes pair by name (FDI numbers, left_/right_).
        if spec.objective.task == "segmentation":
            from dentpy.augment import side_swap_table

            return side_swap_table(list(classes))
        from dentpy.tasks.detection import detection_swap_table

        return detection_swap_table(classes)
    if task is None:
        return "unknown"
    if spec.objective.task == "segmentation":
        from dentpy.tasks.segmentation import SegmentationTask

        return SegmentationTask.from_dict(task).swap_table()
    from dentpy.tasks.detection import DetectionTask

    return DetectionTask.from_dict(task).swap_table()


def _flip_line(spec: Spec, facts: Facts) -> str:
    numbered = spec.objective.output == "instance" or (
        spec.objective.task == "detection" and spec.objective.box_class != "label"
    )
    if spec.objective.task == "classification":
        return "left/right flip"  # a crop's class does not depend on its side
    table = _swap_table(spec, facts)
    if table is None:
        return "left/right flip: off (a side-specific class lacks its partner)"
    if table == "unknown":
        if numbered:
            return "left/right flip, FDI renumbered (36 ↔ 46)"
        return "left/right flip, left/right classes swapped"
    if table == sorted(table):
        return "left/right flip (no side-specific class)"
    return (
        "left/right flip, FDI renumbered (36 ↔ 46)"
        if numbered
        else ("left/right flip, left/right classes swapped")
    )


def _augment_lines(spec: Spec, facts: Facts, boxes: bool) -> list[str]:
    a = spec.augment
    p = percent(a.probability)
    lines: list[str] = []
    if a.flip_left_right:
        lines.append(_flip_line(spec, facts))
    if boxes:
        low, high = a.scale_range
        lines.append(f"zoom {number(low)}–{number(high)} + shift (p {p}); no rotation")
    else:
        if a.rotate_degrees > 0:
            lines.append(
                f"rotate ±{number(a.rotate_degrees)}°, scale {value_range(a.scale_range)} (p {p})"
            )
        elif a.scale_range != (1.0, 1.0):
            lines.append(f"scale {value_range(a.scale_range)} (p {p})")
    if a.intensity_scale or a.intensity_shift:
        lines.append(
            f"intensity ×(1 ± {number(a.intensity_scale)}) ± {number(a.intensity_shift)} (p {p})"
        )
    if a.gamma_range != (1.0, 1.0):
        lines.append(f"gamma {value_range(a.gamma_range)} (p {p})")
    if a.noise_std > 0:
        lines.append(f"Gaussian noise, σ ~ |N(0, {number(a.noise_std)})|")
    return lines


def _oversampling(spec: Spec, facts: Facts) -> str:
    imbalance = (facts.plan or {}).get("imbalance") or {}
    fraction = imbalance.get("foreground_fraction")
    if isinstance(fraction, int | float):
        return f"{percent(float(fraction))} of patches centred on foreground"
    setting = spec.constraints.foreground_oversampling
    if setting == "auto":
        return "33–67% of patches on foreground (by rarity)"
    value = spec.train.foreground_fraction if setting is None else float(setting)
    return f"{percent(value)} of patches centred on foreground"


def augment_stage(spec: Spec, facts: Facts, network: Network) -> Stage:
    task = spec.objective.task
    batch = spec.train.batch_size
    if task == "segmentation":
        details = [
            f"random patches {dims(spec.train.patch_size, 'voxels')}, batch {batch}",
            _oversampling(spec, facts),
        ]
        sampling = spec.constraints.class_sampling
        if sampling != "uniform":
            shown = sampling if isinstance(sampling, str) else "per-class list"
            details.append(f"class of a foreground patch: {shown}")
    else:
        details = [f"batches of {batch} images"]
        if task == "classification":
            imbalance = (facts.task or {}).get("imbalance") or spec.constraints.class_imbalance
            if imbalance == "balanced_sampler":
                details.append("class-balanced sampler")
            elif imbalance == "auto":
                details.append("imbalance: weighted loss if rarest < 1/3 of commonest")
            elif imbalance != "none":
                details.append(f"class imbalance: {imbalance.replace('_', ' ')}")
    if spec.train.accumulate_batches > 1:
        details.append(f"{spec.train.accumulate_batches} batches summed per step")
    details += _augment_lines(spec, facts, boxes=task == "detection")
    if spec.paradigm.kind == "semi-supervised":
        method = spec.paradigm.method.replace("_", " ")
        details.append(f"+ unlabelled data: {method}")
    shape = tuple_text(network.in_shape)
    if task == "segmentation":
        shape += " + labels"
    elif task == "detection":
        shape += " + boxes"
    return Stage("augment", "Sampling & augmentation", tuple(details), shape, training_only=True)
