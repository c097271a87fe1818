"""The stages after the network: decoding its output, postprocessing, the files
`dentpy predict` writes, and the metrics `dentpy evaluate` reports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dentpy.describe.facts import Facts, class_count, classification_loss
from dentpy.describe.formatting import dims, listed, percent
from dentpy.describe.model import Stage
from dentpy.describe.network import Network

if TYPE_CHECKING:
    from dentpy.spec import Spec


def decode_stage(spec: Spec, facts: Facts, network: Network) -> Stage:
    task, output = spec.objective.task, spec.objective.output
    channels = network.out_shape[1]
    if task == "segmentation":
        details = [
            f"sliding window, {dims(spec.train.patch_size)} windows ({spec.train.sw_batch_size}"
            " at a time)",
            f"softmax over {channels} channels → argmax",
            "back to input orientation & voxel grid",
        ]
        if output == "instance":
            details.append("class index → FDI label id")
            return Stage("decode", "Decoding", tuple(details), "(I, J, K) FDI label ids")
        return Stage("decode", "Decoding", tuple(details), "(I, J, K) class indices")
    if task == "classification":
        loss = classification_loss(spec, facts)
        if loss == "coral":
            details = [
                "sigmoid → P(grade > k), made monotone",
                "differenced into P(grade = k)",
                "predicted grade = argmax",
            ]
        else:
            details = ["softmax → class probabilities"]
            if output == "binary":
                how = spec.evaluation.threshold
                details.append(f"positive when P ≥ threshold ({how}, on validation)")
            else:
                details.append("predicted class = argmax")
        return Stage("decode", "Decoding", tuple(details), _probabilities(spec, facts))
    nms = spec.postprocess.nms_iou
    details = [
        "sigmoid heatmaps, 3×3 peak picking",
        "box = peak + offset ± exp(log-size) / 2",
        f"class-aware NMS at IoU {nms:g}" if nms is not None else "no NMS",
        "undo letterbox → image pixels, clip",
    ]
    return Stage("decode", "Decoding", tuple(details), "per image: (n, 4) boxes + scores")


def _probabilities(spec: Spec, facts: Facts) -> str:
    count = class_count(spec, facts)
    return f"(N, {count if count is not None else 'C'}) probabilities"


def postprocess_stage(spec: Spec, facts: Facts) -> Stage:
    task, output = spec.objective.task, spec.objective.output
    pp = spec.postprocess
    if output == "instance":
        details = [
            "keep the largest piece of each FDI number",
            "flag numbers appearing twice",
            "remove specks (< 10% of median tooth)",
            "flag teeth on the wrong side",
        ]
        if pp.keep_largest:
            details.append(f"largest component: {listed(pp.keep_largest)}")
        return Stage("postprocess", "Postprocessing", tuple(details), "(I, J, K) label ids")
    if task == "segmentation":
        if pp.keep_largest:
            details = [f"keep largest component: {listed(pp.keep_largest)}"]
        else:
            details = ["none (every component kept)"]
        return Stage("postprocess", "Postprocessing", tuple(details), "(I, J, K) class indices")
    if task == "detection":
        threshold = pp.score_threshold
        shown = "best F1 on validation" if threshold == "auto" else f"{threshold:g}"
        details = [f"at most {pp.max_detections} boxes per image", f"score threshold: {shown}"]
        return Stage("postprocess", "Postprocessing", tuple(details), "boxes (x0, y0, x1, y1)")
    return Stage(
        "postprocess",
        "Postprocessing",
        ("none: probabilities as decoded",),
        _probabilities(spec, facts),
    )


def outputs_stage(spec: Spec) -> Stage:
    task, output = spec.objective.task, spec.objective.output
    if output == "instance":
        details = [
            "NAME_seg.nii.gz: FDI label ids in input geometry",
            "NAME_teeth.csv / .json (--report): per tooth mm³, pulp/tooth ratio, "
            "apex-to-canal distance",
            "NAME_overlay.png (--overlay)",
        ]
        shape = "NIfTI label map + per-tooth CSV"
    elif task == "segmentation":
        details = [
            "NAME_seg.nii.gz: class indices in input geometry",
            "volumes in mm³: `dentpy volume` (table/JSON)",
            "NAME_overlay.png (--overlay)",
        ]
        shape = "NIfTI label map"
    elif task == "classification":
        details = [
            "predictions.csv: image, predicted, p_CLASS per class",
            *(["threshold.json: the decision threshold used"] if output == "binary" else []),
            "NAME_cam.png Grad-CAM (--explain)",
        ]
        shape = "CSV with probabilities"
    else:
        from dentpy.predict_detection import COCO_FILE, YOLO_FOLDER

        details = [
            f"{COCO_FILE}: COCO boxes + scores",
            f"{YOLO_FOLDER}/NAME.txt: YOLO lines with confidence",
            "NAME_boxes.png (--overlay)",
        ]
        shape = "COCO JSON boxes"
    return Stage("outputs", "Outputs (dentpy predict)", tuple(details), shape)


def metric_names(spec: Spec) -> list[str]:
    task, output = spec.objective.task, spec.objective.output
    if task == "classification":
        from dentpy.evaluate_classification import CI_METRICS

        return list(CI_METRICS[output])
    if task == "detection":
        return ["ap50", "ap", "ap75", "ar", "precision", "recall", "f1"]
    names = list(spec.metrics.report)
    if output == "instance":
        from dentpy.evaluate_instances import DEFINITIONS

        names += [k for k in DEFINITIONS if k not in ("tooth", "matching", "findings")]
    return names


def metrics_stage(spec: Spec) -> Stage:
    e = spec.evaluation
    details = [
        f"select by {spec.metrics.select_by} (validation)",
        "report: " + ", ".join(metric_names(spec)),
        f"split by patient: {percent(e.val_fraction)} val, {percent(e.test_fraction)} test",
    ]
    if e.baselines:
        details.append("baselines: " + ", ".join(e.baselines))
    if spec.objective.task != "segmentation" and e.bootstrap:
        details.append(f"95% CIs: {e.bootstrap} patient bootstrap resamples")
    if spec.objective.task == "segmentation" and spec.objective.report_volumes:
        details.append("per-case volumes (mm³) vs truth")
    table = "per_image.csv" if spec.objective.task == "detection" else "per_case.csv"
    if spec.objective.output == "instance":
        table += ", per_tooth.csv"
    return Stage(
        "metrics", "Evaluation (dentpy evaluate)", tuple(details), f"{table}, summary.json"
    )
