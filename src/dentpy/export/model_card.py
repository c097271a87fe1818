"""The model card's JSON: what the exported network is, what it expects, how its output is
decoded, what it was trained on and how well it did, and what it is not for.

Built only from the run's plan, spec settings, fingerprint (allow-listed statistics),
training summary and evaluation summary. Dataset paths, file names and patient ids never
enter: the fingerprint is copied key by key from an allow list, and any string that looks
like a path is dropped.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dentpy.export.loaded_run import CLASSIFICATION, INSTANCE, SEGMENTATION

if TYPE_CHECKING:
    from dentpy.export.loaded_run import LoadedRun

CARD_VERSION = 1
# Statistics of the training data that describe it without naming anything in it.
FINGERPRINT_KEYS = (
    "layout", "task", "classes", "labels", "n_cases", "n_test_cases", "n_cases_fingerprinted",
    "assume_spacing_mm", "spacing_mm", "shape", "intensity", "label_fractions", "orientations",
    "size_wh", "pixel_spacing_mm", "n_with_pixel_spacing", "dtypes", "channels",
    "exif_orientations", "class_counts", "box_counts", "n_boxes", "n_images_without_boxes",
    "boxes_per_image", "box_size_wh",
)  # fmt: skip
TRAINING_KEYS = (
    "iterations", "lr", "best_validation_score", "selected_by", "device", "precision",
    "seconds", "n_train_cases", "n_val_cases", "n_train_images", "n_val_images",
    "class_counts_train", "class_imbalance", "n_train_boxes", "score_threshold",
)  # fmt: skip
SYNTH_MARKER = "dentpy synthetic dataset"
NOT_EVALUATED = "not evaluated yet: run `dentpy evaluate RUN`"


def build_card(loaded: LoadedRun, export: dict[str, Any]) -> dict[str, Any]:
    """The card as a JSON-ready dict; `export` holds format, file, sha256, verification."""
    fingerprint = _fingerprint(loaded)
    card: dict[str, Any] = {
        "card_version": CARD_VERSION,
        "run": loaded.run.root.name,
        "task": loaded.task,
        "model": {
            "architecture": loaded.spec.model.name,
            # Classifiers are fixed architectures; `model.channels` does not shape them.
            "channels": None if loaded.task == CLASSIFICATION else list(loaded.spec.model.channels),
            "parameters": sum(p.numel() for p in loaded.model.parameters()),
            "checkpoint": loaded.checkpoint,
            "checkpoint_iteration": loaded.iteration,
        },
        "export": export,
        "classes": _classes(loaded),
        "input": _input(loaded),
        **_processing(loaded),
        "training_data": fingerprint,
        "training": _training(loaded),
        "metrics": _metrics(loaded),
        "intended_use": _intended_use(loaded, fingerprint),
        "software": _software(export),
        "export_date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return _without_paths(card)


def _classes(loaded: LoadedRun) -> list[dict[str, Any]]:
    task = loaded.plan["task"]
    if loaded.task in (SEGMENTATION, INSTANCE):
        from dentpy.data.fdi import is_fdi

        rows: list[dict[str, Any]] = [
            {"index": 0, "name": "background", "label_ids": [0], "fdi": None}
        ]
        for index, (name, ids) in enumerate(
            zip(task["class_names"], task["class_label_ids"], strict=True), start=1
        ):
            fdi = None
            if loaded.task == INSTANCE and len(ids) == 1:
                number = ids[0] - 100 if ids[0] > 100 else ids[0]
                fdi = number if is_fdi(number) else None
            row = {"index": index, "name": name, "label_ids": list(ids), "fdi": fdi}
            if fdi is not None:
                row["structure"] = "pulp" if ids[0] > 100 else "tooth"
            rows.append(row)
        return rows
    rows = [{"index": i, "name": name} for i, name in enumerate(task["classes"])]
    if loaded.task == CLASSIFICATION:
        for row in rows:
            row["positive"] = row["name"] == task.get("positive_class")
    return rows


def _input(loaded: LoadedRun) -> dict[str, Any]:
    spec = loaded.spec
    common = {"modality": spec.input.modality, "channels": 1, "dtype": "float32"}
    if loaded.task in (SEGMENTATION, INSTANCE):
        multiple = loaded.spatial_multiple
        return {
            **common,
            "dimensionality": "3d",
            "tensor": "(N, 1, I, J, K): preprocessed gray values, axes in RAS canonical order",
            "spatial_sizes": f"any multiple of {multiple} per axis when the spatial axes are "
            "dynamic; dentpy feeds windows of the patch size",
            "file_input": "one 3D gray-value volume (NIfTI, MHA, NRRD or a DICOM series)",
        }
    height, width = loaded.plan["preprocess"]["image_size"]
    return {
        **common,
        "dimensionality": "2d",
        "tensor": f"(N, 1, {height}, {width}): preprocessed gray image",
        "file_input": "one grayscale 2D image (PNG, JPEG, TIFF or DICOM; RGB only when its "
        "three channels are equal)",
    }


def _processing(loaded: LoadedRun) -> dict[str, Any]:
    from dentpy.export.model_card_processing import (
        classification_processing,
        detection_processing,
        segmentation_processing,
    )

    if loaded.task in (SEGMENTATION, INSTANCE):
        return segmentation_processing(loaded)
    if loaded.task == CLASSIFICATION:
        return classification_processing(loaded, _classification_threshold(loaded))
    return detection_processing(loaded)


def _classification_threshold(loaded: LoadedRun) -> tuple[float, str]:
    summary = _evaluation(loaded)
    if summary is not None and "threshold" in summary.get("model", {}):
        return float(summary["model"]["threshold"]), (
            f"chosen on the validation split by `dentpy evaluate` "
            f"({summary.get('threshold_policy', 'see evaluation')})"
        )
    return 0.5, "default 0.5: run `dentpy evaluate RUN` to choose it on validation, then export"


def _fingerprint(loaded: LoadedRun) -> dict[str, Any]:
    path = loaded.run.fingerprint
    if not path.is_file():
        return {"status": "no fingerprint.json in the run"}
    data = json.loads(path.read_text())
    return {key: data[key] for key in FINGERPRINT_KEYS if key in data}


def _training(loaded: LoadedRun) -> dict[str, Any]:
    path = loaded.run.root / "train_summary.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    summary = {key: data[key] for key in TRAINING_KEYS if key in data}
    summary.setdefault("selected_by", _selection(loaded))
    summary["pretrained_start"] = bool(data.get("pretrained") or loaded.spec.model.pretrained)
    summary["exported_checkpoint"] = f"{loaded.checkpoint} (iteration {loaded.iteration})" + (
        ": highest validation score" if loaded.checkpoint == "best" else ": final iteration"
    )
    spec = loaded.spec
    summary["settings"] = {
        "loss": spec.loss.name,
        "optimizer": spec.optimizer.name,
        "schedule": spec.schedule.name,
        "batch_size": spec.train.batch_size,
        "seed": spec.train.seed,
        "augment": spec.augment.model_dump(),
    }
    return summary


def _selection(loaded: LoadedRun) -> str:
    if loaded.task in (SEGMENTATION, INSTANCE):
        return "mean validation Dice over classes (network space)"
    return loaded.spec.metrics.select_by


def _evaluation(loaded: LoadedRun) -> dict[str, Any] | None:
    for split in ("test", "val"):
        path = loaded.run.evaluation / split / "summary.json"
        if path.is_file():
            data: dict[str, Any] = json.loads(path.read_text())
            data.setdefault("split", split)
            return data
    return None


def _metrics(loaded: LoadedRun) -> dict[str, Any]:
    from dentpy.export.model_card_metrics import metrics_section

    summary = _evaluation(loaded)
    if summary is None:
        return {"status": NOT_EVALUATED}
    section = metrics_section(loaded.task, summary)
    evaluated = summary.get("checkpoint")
    if evaluated is not None and evaluated != loaded.checkpoint:
        section["warning"] = (
            f"the evaluation scored the '{evaluated}' checkpoint; this export holds "
            f"'{loaded.checkpoint}'"
        )
    return section


def _is_synthetic(loaded: LoadedRun) -> bool | None:
    """True when the training data came from dentpy's synthetic generators (their README,
    dataset.json or XraySynth folder say so); None when the data folder is gone."""
    data = Path(str(loaded.spec.input.data))
    if not data.is_absolute():
        data = (loaded.run.root / data).resolve()
    if not data.exists():
        return None
    for folder in (data, *list(data.parents)[:2]):
        if folder.name == "XraySynth":
            return True
        for name in ("README.txt", "dataset.json"):
            try:
                if SYNTH_MARKER in (folder / name).read_text(encoding="utf-8")[:2000]:
                    return True
            except (OSError, UnicodeDecodeError):
                continue
    return False


def _intended_use(loaded: LoadedRun, fingerprint: dict[str, Any]) -> dict[str, Any]:
    n_cases = fingerprint.get("n_cases", "an unknown number of")
    splits = json.loads(loaded.run.splits.read_text()) if loaded.run.splits.is_file() else {}
    unit = "volumes" if loaded.task in (SEGMENTATION, INSTANCE) else "images"
    synthetic = _is_synthetic(loaded)
    limits = [
        "Research use only. Not a medical device; not validated for diagnosis, treatment "
        "planning or any clinical decision.",
        f"Trained on {len(splits.get('train', []))} {unit} (validation "
        f"{len(splits.get('val', []))}, test {len(splits.get('test', []))}) of one dataset of "
        f"{n_cases} {unit} (see training_data); performance on other scanners, sites, "
        "populations or acquisition settings is unknown.",
    ]
    seen = {k: fingerprint[k] for k in ("spacing_mm", "shape", "size_wh") if k in fingerprint}
    if seen:
        limits.append(
            "Inputs outside the sizes and spacings seen in training (training_data: "
            f"{', '.join(seen)}) are extrapolation."
        )
    if synthetic:
        limits.append(
            "SYNTHETIC TRAINING DATA: this model was trained on dentpy's procedural "
            "generator, not on patient scans. It demonstrates the pipeline; its outputs on "
            "real images are meaningless."
        )
    return {
        "intended_use": f"research {loaded.task} of {loaded.spec.input.modality} images",
        "synthetic_training_data": synthetic,
        "limits": limits,
    }


def _software(export: dict[str, Any]) -> dict[str, Any]:
    import monai
    import torch

    import dentpy

    versions: dict[str, Any] = {
        "dentpy": dentpy.__version__,
        "torch": torch.__version__,
        "monai": monai.__version__,
    }
    if export["format"] == "onnx":
        import onnx
        import onnxruntime

        versions.update(
            onnx=onnx.__version__, onnxruntime=onnxruntime.__version__, opset=export["opset"]
        )
    return versions


def _without_paths(value: Any) -> Any:
    """Drop any string that looks like a filesystem path (defence in depth); a NaN becomes
    null, so the card is strict JSON and no undefined value reads as a number."""
    if isinstance(value, dict):
        return {k: _without_paths(v) for k, v in value.items() if not _is_path(v)}
    if isinstance(value, (list, tuple)):
        return [_without_paths(v) for v in value if not _is_path(v)]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _is_path(value: Any) -> bool:
    if not isinstance(value, str) or " " in value.strip():
        return False
    return value.startswith(("/", "~", "./", "../")) or "\\" in value or ":/" in value
