"""`dentpy predict` for a classification run: one CSV row per image (predicted class or
grade, the probability of every class), and with `--explain` a Grad-CAM picture per image
showing where the network looked.

Binary runs apply the decision threshold that `dentpy evaluate` chose on the validation
split (read from the run's evaluation summary); without an evaluation the threshold is 0.5
and the CSV says so.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from dentpy.engine.run import RunFolder
from dentpy.errors import OutputError


def predict_images(
    run_dir: Path,
    inputs: Sequence[Path],
    out_dir: Path,
    checkpoint: str = "best",
    explain: bool = False,
) -> Path:
    import torch

    from dentpy.data.layouts.images import read as read_images
    from dentpy.data.prepare2d import to_network
    from dentpy.evaluate_classification import load_classifier, positive_index
    from dentpy.inference import refuse_overwrites
    from dentpy.train_classification import predict_probabilities

    # Inputs are named by the user one by one, so a symlink among them may lead anywhere.
    records = [
        replace(r, confined=False) for path in inputs for r in read_images(Path(path)).test_records
    ]
    out_dir = Path(out_dir)
    table = out_dir / "predictions.csv"
    if table.exists():
        raise OutputError(
            f"{table.name} already exists in {out_dir.name}",
            expected="an output folder without an earlier predictions.csv",
            found=table.name,
            fix="choose another --out folder, or move the earlier predictions away",
        )
    # Every output name is checked before the model loads: nothing is ever overwritten.
    planned = [table]
    if explain:
        planned += [out_dir / f"{r.source_name}_cam.png" for r in records]
    refuse_overwrites(planned, [r.image_path for r in records])
    trained = load_classifier(Path(run_dir), checkpoint)
    task = trained.task
    if task.output == "binary":
        refuse_overwrites([out_dir / "threshold.json"], [r.image_path for r in records])
    threshold, source = _threshold(RunFolder(Path(run_dir)))
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for record in records:
        image = record.load().image
        where = f"{record.source_name}"
        network = to_network(image, trained.image_size, trained.clip_percentiles, where)
        probs = predict_probabilities(
            trained.model, task, network[None], trained.device, trained.amp_dtype
        )[0]
        if task.output == "binary":
            positive = positive_index(task)
            chosen = positive if probs[positive] >= threshold else 1 - positive
        else:
            chosen = int(np.argmax(probs))
        rows.append([record.source_name, task.classes[chosen], *(f"{p:.6f}" for p in probs)])
        if explain:
            from dentpy.report.cam import cam_target, grad_cam, save_cam_overlay

            tensor = torch.from_numpy(network[None]).to(trained.device)
            target = cam_target(int(chosen), task.cumulative)
            heatmap = grad_cam(trained.model, tensor, target=target)
            save_cam_overlay(
                out_dir / f"{record.source_name}_cam.png",
                network[0],
                heatmap,
                f"{task.classes[chosen]} ({probs[chosen]:.2f}): where the network looked",
            )
    tmp = table.with_name(f".{table.name}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "predicted", *(f"p_{c}" for c in task.classes)])
        writer.writerows(rows)
    tmp.replace(table)
    if task.output == "binary":
        (out_dir / "threshold.json").write_text(
            json.dumps(
                {"threshold": threshold, "source": source, "positive_class": task.positive_class},
                indent=2,
            )
        )
    return table


def _threshold(run: RunFolder) -> tuple[float, str]:
    """The validation-chosen threshold from the run's evaluation, else 0.5."""
    for split in ("test", "val"):
        summary = run.evaluation / split / "summary.json"
        if summary.is_file():
            data = json.loads(summary.read_text())
            return float(data["model"]["threshold"]), f"chosen on validation (evaluation/{split})"
    return 0.5, "default 0.5: run `dentpy evaluate` first to choose it on validation"
