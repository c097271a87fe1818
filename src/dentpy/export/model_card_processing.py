"""The card's preprocessing, decoding and postprocessing sections: the exact recipe dentpy
applies around the network, with this run's values, so the exported file can be used
without dentpy."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dentpy.export.loaded_run import LoadedRun

# dentpy.inference's sliding window (Gaussian blending, half-window overlap).
SW_OVERLAP = 0.5
SW_MODE = "gaussian"
SW_SIGMA_SCALE = 0.125  # MONAI's default Gaussian sigma, as a fraction of the window
INTENSITY_3D = (
    "per case, in canonical order: clip to the case's own clip_percentiles (numpy "
    "percentile, linear), then z-score with the clipped volume's mean and std (std floored at "
    "1e-6); float32. No global HU window: CBCT gray values are not calibrated"
)
INTENSITY_2D = (
    "gray image (RGB accepted only with three equal channels, first channel used); clip to "
    "the image's own clip_percentiles, then z-score with its mean and std (std below 1e-6: "
    "divide by 1); float32"
)


def segmentation_processing(loaded: LoadedRun) -> dict[str, Any]:
    plan = loaded.plan["preprocess"]
    spec = loaded.spec
    patch = [int(s) for s in spec.train.patch_size]
    task_plan = loaded.plan["task"]
    instances = task_plan.get("instances")
    return {
        "preprocessing": {
            "plan": plan,
            "orientation": "reorient to RAS canonical (nibabel io_orientation + "
            "apply_orientation: axis permutation and flips only, no interpolation)",
            "intensity": INTENSITY_3D,
            "clip_percentiles": list(plan["clip_percentiles"]),
            "target_spacing_mm": list(plan["target_spacing_mm"]),
            "resampling": "after normalisation: trilinear (align_corners=False) to "
            "floor(n * spacing / target_spacing + 0.5) voxels per canonical axis",
            "order": ["orientation", "intensity", "resampling"],
            "patch_size": patch,
            "sliding_window": {
                "implementation": "monai.inferers.sliding_window_inference",
                "roi_size": patch,
                "overlap": SW_OVERLAP,
                "sw_batch_size": int(spec.train.sw_batch_size),
                "mode": SW_MODE,
                "sigma_scale": SW_SIGMA_SCALE,
                "padding": "volumes smaller than a window are padded with 0 and cropped back",
            },
        },
        "decoding": {
            "task_plan": task_plan,
            "output": f"logits (N, {len(task_plan['class_names']) + 1}, I, J, K): channel 0 "
            "background, channel i = classes[i]",
            "activation": "softmax over channels (after blending the windows' logits)",
            "labels": "resize probabilities trilinearly to the canonical original grid, "
            "argmax over channels, undo the reorientation (labels in the input file's grid "
            "and affine)",
        },
        "postprocessing": {
            "keep_largest": list(spec.postprocess.keep_largest),
            "keep_largest_rule": "for each listed class keep only its largest 26-connected "
            "component",
            "instances": None
            if instances is None
            else "class index -> dataset label id (tooth = FDI number, pulp = 100 + FDI); "
            "per number keep one piece, remove specks under 10% of the family's median size "
            "(dentpy.instances.instance_postprocess)",
        },
    }


def classification_processing(loaded: LoadedRun, threshold: tuple[float, str]) -> dict[str, Any]:
    plan = loaded.plan["preprocess"]
    task = loaded.plan["task"]
    output, coral = task["output"], task.get("loss_name") == "coral"
    n = len(task["classes"])
    if coral:
        activation = (
            f"{n - 1} cumulative logits P(grade > k): sigmoid, running minimum over k, "
            "differences give P(grade = k) (clipped at 0, rows renormalised)"
        )
    else:
        activation = f"softmax over the {n} logits"
    if output == "binary":
        rule = (
            f"predict '{task['positive_class']}' when its probability >= threshold "
            f"{threshold[0]:.6g}, else the other class"
        )
    else:
        rule = "argmax of the class probabilities"
    return {
        "preprocessing": {
            "plan": plan,
            "intensity": INTENSITY_2D,
            "clip_percentiles": list(plan["clip_percentiles"]),
            "image_size": list(plan["image_size"]),
            "resize": f"bilinear with antialias (align_corners=False) to {plan['image_size'][0]}"
            f" x {plan['image_size'][1]} (height x width); the aspect ratio is not kept",
        },
        "decoding": {
            "task_plan": task,
            "output": f"logits (N, {n - 1 if coral else n})",
            "activation": activation,
            "rule": rule,
            "threshold": threshold[0] if output == "binary" else None,
            "threshold_source": threshold[1] if output == "binary" else None,
        },
        "postprocessing": {},
    }


def detection_processing(loaded: LoadedRun) -> dict[str, Any]:
    from dentpy.detection.centernet import STRIDE

    plan = loaded.plan["preprocess"]
    task = loaded.plan["task"]
    n = len(task["classes"])
    spec = loaded.spec
    threshold_file = loaded.run.root / "detection_threshold.json"
    score = (
        float(json.loads(threshold_file.read_text())["score_threshold"])
        if threshold_file.is_file()
        else None
    )
    return {
        "preprocessing": {
            "plan": plan,
            "intensity": INTENSITY_2D,
            "clip_percentiles": list(plan["clip_percentiles"]),
            "image_size": list(plan["image_size"]),
            "letterbox": "scale = min(H / h, W / w); bilinear resize by that scale "
            "(align_corners=False), paste at whole-pixel offsets centring the image, pad "
            "with the image's minimum; boxes map back by x = (x' - pad_x) / scale",
        },
        "decoding": {
            "task_plan": task,
            "output": f"packed CenterNet head (N, {n + 4}, H/{STRIDE}, W/{STRIDE}): channels "
            f"0..{n - 1} class heatmap logits, {n}..{n + 1} log box width/height in network "
            f"pixels, {n + 2}..{n + 3} sub-cell x/y offsets",
            "boxes": f"sigmoid the heatmaps; peaks = cells equal to their 3x3 max; keep the "
            f"top max_detections peaks over all classes; centre = (cell + offset) * {STRIDE}; "
            "size = exp(clamp(log size, -6, 12)); box = centre -/+ size / 2 (xyxy, network "
            "pixels); class-aware NMS at nms_iou; keep score >= score_threshold; undo the "
            "letterbox and clip to the image",
            "nms_iou": spec.postprocess.nms_iou,
            "max_detections": int(spec.postprocess.max_detections),
            "score_threshold": score,
            "score_threshold_source": "chosen on the validation split at the end of "
            "training (detection_threshold.json)"
            if score is not None
            else "missing: training did not finish",
        },
        "postprocessing": {},
    }
