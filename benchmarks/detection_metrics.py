"""COCO detection metrics: dentpy vs pycocotools' COCOeval on the same random boxes, in the
same run. Prints median times, their ratio and the largest difference in AP/AP50/AP75.

    python benchmarks/detection_metrics.py [--images 1000] [--boxes 20] [--repeats 5]

Needs pycocotools (the dev extra installs it).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

import numpy as np


def _data(images: int, boxes: int, classes: int, seed: int) -> tuple[list, list]:
    from dentpy.metrics.detection import ImageBoxes

    rng = np.random.default_rng(seed)
    truth, predicted = [], []
    for i in range(images):
        xy = rng.uniform(0, 400, (boxes, 2))
        wh = rng.uniform(8, 60, (boxes, 2))
        true = np.concatenate([xy, xy + wh], axis=1)
        labels = rng.integers(0, classes, boxes)
        keep = rng.random(boxes) > 0.1  # some missed
        jitter = rng.normal(0, 4, (boxes, 4))
        pred = np.concatenate([(true + jitter)[keep], np.concatenate([xy, xy + wh], 1)[:3] + 50])
        pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
        pred_labels = np.concatenate([labels[keep], rng.integers(0, classes, 3)])
        truth.append(ImageBoxes(str(i), true, labels))
        predicted.append(ImageBoxes(str(i), pred, pred_labels, rng.random(len(pred))))
    return truth, predicted


def _coco(truth: list, predicted: list, classes: int) -> dict[str, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(b: np.ndarray) -> list[float]:
        return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]

    gt = {
        "images": [{"id": i} for i in range(len(truth))],
        "categories": [{"id": c + 1} for c in range(classes)],
        "annotations": [
            {"id": k, "image_id": i, "category_id": int(lab) + 1, "bbox": xywh(b),
             "area": float((b[2] - b[0]) * (b[3] - b[1])), "iscrowd": 0}
            for i, t in enumerate(truth)
            for k, (b, lab) in enumerate(zip(t.boxes, t.labels, strict=True), start=i * 1000 + 1)
        ],
    }  # fmt: skip
    results = [
        {"image_id": i, "category_id": int(lab) + 1, "bbox": xywh(b), "score": float(s)}
        for i, p in enumerate(predicted)
        for b, lab, s in zip(p.boxes, p.labels, p.scores, strict=True)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {"ap": evaluation.stats[0], "ap50": evaluation.stats[1], "ap75": evaluation.stats[2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--boxes", type=int, default=20)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from dentpy.metrics.detection import evaluate_detections

    truth, predicted = _data(args.images, args.boxes, args.classes, seed=0)
    names = [str(c) for c in range(args.classes)]
    ours, theirs = [], []
    for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
        start = time.perf_counter()
        mine = evaluate_detections(truth, predicted, names)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference = _coco(truth, predicted, args.classes)
        theirs.append(time.perf_counter() - start)
    difference = max(abs(float(mine[k]) - reference[k]) for k in ("ap", "ap50", "ap75"))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(
        f"{args.images} images x {args.boxes} boxes, {args.classes} classes, {args.repeats} repeats"
    )
    print(f"dentpy      median {a:.3f} s")
    print(f"pycocotools median {b:.3f} s")
    print(f"ratio {b / a:.1f}x; largest AP/AP50/AP75 difference {difference:.1e}")


if __name__ == "__main__":
    main()
