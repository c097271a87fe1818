"""`dentpy predict` for a detection run: boxes in each image's own pixels, written as COCO
JSON (one file for all images), YOLO text (one file per image) and, with `--overlay`, a
PNG per image with the boxes drawn.

Boxes kept: confidence at or above the threshold chosen on validation when the run was
trained (or the spec's fixed `postprocess.score_threshold`), after class-aware
non-maximum suppression at `postprocess.nms_iou`, at most `postprocess.max_detections`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

COCO_FILE = "predictions_coco.json"
YOLO_FOLDER = "yolo"


def predict_boxes(
    run_dir: Path,
    inputs: Sequence[Path],
    out_dir: Path,
    checkpoint: str = "best",
    overlay: bool = False,
) -> list[Path]:
    from dentpy.data.layouts.images import read as read_images
    from dentpy.data.prepare_boxes import letterbox_image
    from dentpy.evaluate_detection import load_detector
    from dentpy.inference import refuse_overwrites
    from dentpy.train_detection import network_detections

    # Inputs are named by the user one by one, so a symlink among them may lead anywhere.
    records = [
        replace(r, confined=False) for path in inputs for r in read_images(Path(path)).test_records
    ]
    out_dir = Path(out_dir)
    planned = [out_dir / COCO_FILE]
    planned += [out_dir / YOLO_FOLDER / f"{r.source_name}.txt" for r in records]
    if overlay:
        planned += [out_dir / f"{r.source_name}_boxes.png" for r in records]
    # Every output name is checked before the model loads: nothing is ever overwritten.
    refuse_overwrites(planned, [r.image_path for r in records])
    trained = load_detector(Path(run_dir), checkpoint)
    classes = list(trained.task.classes)
    threshold = trained.score_threshold
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    written = []
    (out_dir / YOLO_FOLDER).mkdir(parents=True, exist_ok=True)
    for image_id, record in enumerate(records, start=1):
        sample = record.load()
        network, mapping = letterbox_image(
            sample.image, trained.image_size, trained.clip_percentiles, record.source_name
        )
        ((boxes, scores, labels),) = network_detections(
            trained.model, network[None], trained.device, trained.amp_dtype, trained.spec
        )
        keep = scores >= threshold
        boxes = mapping.boxes_to_image(boxes[keep])
        # A box may reach into the letterbox padding; the image ends where its pixels end.
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, sample.image.width)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, sample.image.height)
        scores, labels = scores[keep], labels[keep]
        width, height = sample.image.width, sample.image.height
        images.append(
            {"id": image_id, "file_name": record.image_path.name, "width": width, "height": height}
        )
        lines = []
        for box, score, label in zip(boxes, scores, labels, strict=True):
            x0, y0, x1, y1 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                    "area": round((x1 - x0) * (y1 - y0), 2),
                    "score": round(float(score), 5),
                    "iscrowd": 0,
                }
            )
            lines.append(
                f"{int(label)} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f} {float(score):.5f}"
            )
        text_path = out_dir / YOLO_FOLDER / f"{record.source_name}.txt"
        text_path.write_text("".join(f"{line}\n" for line in lines))
        written.append(text_path)
        if overlay:
            written.append(
                _overlay(
                    sample.image.array,
                    boxes,
                    scores,
                    labels,
                    classes,
                    threshold,
                    out_dir / f"{record.source_name}_boxes.png",
                )
            )
    document = {
        "info": {
            "description": "dentpy predictions",
            "score_threshold": threshold,
            "yolo_lines": "class x_center y_center width height confidence (normalised)",
        },
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(classes)],
    }
    coco_path = out_dir / COCO_FILE
    with coco_path.open("x", encoding="utf-8") as handle:  # never replaces a file
        json.dump(document, handle, indent=2)
    return [coco_path, *written]


def _overlay(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    threshold: float,
    path: Path,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    gray = image[..., 0] if image.ndim == 3 else image
    height, width = gray.shape
    figure, axis = plt.subplots(figsize=(min(12.0, width / 50), min(8.0, height / 50) + 0.4))
    low, high = np.percentile(gray, (1, 99.5))
    axis.imshow(gray, cmap="gray", vmin=low, vmax=high)
    for box, score, label in zip(boxes, scores, labels, strict=True):
        x0, y0, x1, y1 = (float(v) for v in box)
        axis.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="red", lw=1.2))
        axis.text(
            x0, y0, f"{classes[int(label)]} {score:.2f}", color="red", fontsize=7, va="bottom"
        )
    axis.set_axis_off()
    axis.set_title(f"{len(boxes)} boxes with confidence ≥ {threshold:.2f}", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
