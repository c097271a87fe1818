"""The first two stages: the input data as it lies on disk (labels, counts, shapes,
spacings) and the preprocessing that turns it into what the network reads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dentpy.describe.facts import (
    NOT_YET,
    Facts,
    fingerprint_median,
    input_size_2d,
    known_classes,
)
from dentpy.describe.formatting import dims, listed, number, tuple_text
from dentpy.describe.model import Stage

if TYPE_CHECKING:
    from dentpy.spec import Spec


def input_stage(spec: Spec, facts: Facts) -> Stage:
    fp = facts.fingerprint
    modality = spec.input.modality.upper() if spec.input.modality != "photo" else "photo"
    layout = (fp or {}).get("layout") or spec.input.layout
    details = [f"{modality} {spec.input.dimensionality.upper()}, layout: {layout}"]
    details += _label_lines(spec, facts)
    three_d = spec.input.dimensionality == "3d"
    if fp is None:
        what = "shape & spacing" if three_d else "image sizes & bit depth"
        details.append(f"{what}: {facts.note or NOT_YET}")
        shape = "(I, J, K) voxels" if three_d else "(H, W) pixels"
        return Stage("input", "Input data", tuple(details), shape)
    unit = "cases" if three_d else "images"
    count = f"{fp.get('n_cases', '?')} labelled {unit}"
    if fp.get("n_test_cases"):
        count += f" + {fp['n_test_cases']} test"
    details.append(count)
    sampled = int(fp.get("n_cases_fingerprinted") or 0)
    total = int(fp.get("n_cases") or 0) + int(fp.get("n_test_cases") or 0)
    median = f"median of {sampled} sampled" if 0 < sampled < total else "median"
    if three_d:
        shape_mm = fingerprint_median(fp, "shape")
        spacing = fingerprint_median(fp, "spacing_mm")
        if shape_mm:
            details.append(f"shape ({median}): {dims(shape_mm, 'voxels')}")
        if spacing:
            details.append(f"spacing ({median}): {dims(spacing, 'mm')}")
        orientations = fp.get("orientations") or {}
        if orientations:
            details.append(
                "orientation: " + ", ".join(f"{k} ×{v}" for k, v in orientations.items())
            )
        shape = f"(I, J, K) = {tuple_text(tuple(int(v) for v in shape_mm))}" if shape_mm else ""
    else:
        size = fingerprint_median(fp, "size_wh")
        if size:
            details.append(f"size ({median}): {dims(size, 'px')} (W × H)")
        dtypes = fp.get("dtypes") or {}
        channels = fp.get("channels") or {}
        if dtypes:
            details.append(
                "pixels: "
                + ", ".join(dtypes)
                + (f", {'/'.join(channels)} channel(s)" if channels else "")
            )
        shape = f"(H, W) = {tuple_text((int(size[1]), int(size[0])))}" if size else ""
    return Stage("input", "Input data", tuple(details), shape)


def _label_lines(spec: Spec, facts: Facts) -> list[str]:
    task, output = spec.objective.task, spec.objective.output
    classes = known_classes(spec, facts)
    fp = facts.fingerprint or {}
    if output == "instance":
        lines = [f"labels: FDI ids ({spec.objective.instances}; tooth = FDI, pulp = 100 + FDI)"]
        if facts.task is not None:
            lines.append(_instance_counts(facts.task))
        elif spec.objective.classes != "auto":
            lines.append("also: " + listed(spec.objective.classes))
        return lines
    if task == "segmentation":
        if classes is None:
            return [f"labels: every dataset label ({NOT_YET})"]
        return [f"labels learnt: {listed(classes)}", "other labels → background"]
    if task == "classification":
        what = {"binary": "one class per image", "multiclass": "one class per image"}.get(
            output, "one grade per image"
        )
        if classes is None:
            return [f"{what}; classes {NOT_YET}"]
        counts = fp.get("class_counts") or {}
        shown = [f"{c} ({counts[c]})" if c in counts else c for c in classes]
        lines = [f"{what}: {listed(shown)}"]
        positive = (facts.task or {}).get("positive_class") or (
            spec.objective.positive_class if output == "binary" else None
        )
        if positive and positive != "auto":
            lines.append(f"positive class: {positive}")
        return lines
    lines = [f"boxes, class = box {spec.objective.box_class.replace('_', ' ')}"]
    if classes is None:
        lines.append(f"box classes {NOT_YET}")
    else:
        lines.append(f"{len(classes)} classes: {listed(classes)}")
    if fp.get("n_boxes"):
        per_image = fingerprint_median(fp, "boxes_per_image")
        lines.append(
            f"{fp['n_boxes']} boxes"
            + (f", median {number(per_image[0])} per image" if per_image else "")
        )
    return lines


def _instance_counts(task: dict[str, Any]) -> str:
    from dentpy.tasks.instance import family_of

    families = [family_of(int(ids[0])) for ids in task.get("class_label_ids", []) if ids]
    teeth, pulps = families.count("teeth"), families.count("pulp")
    other = len(families) - teeth - pulps
    return f"{len(families)} classes: {teeth} teeth, {pulps} pulps, {other} other"


def _target_spacing(spec: Spec, facts: Facts) -> tuple[list[float] | None, str]:
    planned = (facts.plan or {}).get("preprocess", {}).get("target_spacing_mm")
    if isinstance(planned, list):
        return [float(v) for v in planned], "(the run's plan)"
    if spec.preprocess.target_spacing_mm != "median":
        return list(spec.preprocess.target_spacing_mm), "(spec)"
    sampled = fingerprint_median(facts.fingerprint, "spacing_mm")
    if sampled and facts.plan is None:
        return sampled, "(median training spacing; sampled)"
    return sampled, "(median training spacing)"


def preprocess_stage(spec: Spec, facts: Facts) -> Stage:
    low, high = spec.preprocess.clip_percentiles
    clip = f"clip to own {number(low)}–{number(high)} percentiles, z-score"
    if spec.input.dimensionality == "3d":
        spacing, origin = _target_spacing(spec, facts)
        details = ["reorient to RAS canonical axes"]
        if spec.input.assume_spacing_mm:
            details.append(f"header spacing replaced by {dims(spec.input.assume_spacing_mm, 'mm')}")
        if spacing:
            details.append(f"resample to {dims(spacing, 'mm')} {origin}")
        else:
            details.append("resample to the median training spacing")
        details.append(f"intensity: {clip}")
        details.append(
            "label ids → FDI classes 1..C-1, others 0"
            if spec.objective.output == "instance"
            else "label ids → classes 1..C-1, others 0"
        )
        source_shape = fingerprint_median(facts.fingerprint, "shape")
        source_spacing = fingerprint_median(facts.fingerprint, "spacing_mm")
        if source_shape and source_spacing and spacing:
            from dentpy.preprocess import resampled_shape

            grid = resampled_shape(
                tuple(int(n) for n in source_shape), tuple(source_spacing), tuple(spacing)
            )
            shape = f"(1, {', '.join(str(n) for n in grid)}) per case"
        else:
            shape = "(1, X, Y, Z) per case"
        return Stage("preprocess", "Preprocessing", tuple(details), shape)
    height, width = input_size_2d(spec, facts)
    details = ["one gray channel (16-bit kept; equal RGB accepted)", f"intensity: {clip}"]
    if spec.objective.task == "detection":
        details.append(f"letterbox to {height} × {width} px (aspect kept, padded)")
        details.append("boxes mapped into network pixels exactly")
    else:
        details.append(f"resize to {height} × {width} px (bilinear, antialiased)")
        details.append("image files are never changed")
    return Stage("preprocess", "Preprocessing", tuple(details), f"(1, {height}, {width}) per image")
