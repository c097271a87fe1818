"""`dentpy pretrain`: from a spec to a pretraining folder whose encoder.safetensors a
fine-tuning spec names in `model.pretrained`.

The folder holds pretrain_spec.yaml (the resolved spec), encoder.safetensors (weights
only, the output layer left out, architecture signature in its metadata), pretrain.json
(method, iterations, losses, layers, signature, sha256, how many images of which source),
pretrain_loss.csv, and for the 3D method reconstruction.png (masked input |
reconstruction | original). No case ids or paths are written: only counts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from dentpy.errors import SpecError
from dentpy.pretrained import ENCODER_FILE, RECORD_FILE, architecture_signature
from dentpy.spec import Spec


def resolve_method(spec: Spec) -> str:
    task, method = spec.objective.task, spec.pretrain.method
    supported = {"segmentation": "masked", "classification": "contrastive"}
    if task not in supported:
        raise SpecError(
            f"dentpy pretrain does not support objective.task {task}",
            expected="segmentation (masked-volume reconstruction) or classification (contrastive)",
            found=task,
            fix="train without pretraining, or pretrain a segmentation/classification spec",
        )
    if method not in ("auto", supported[task]):
        raise SpecError(
            f"pretrain.method {method} is not available for {task}",
            expected=f"auto or {supported[task]}",
            found=method,
            fix=f"set pretrain.method=auto (uses {supported[task]})",
        )
    return supported[task]


def default_out(spec: Spec) -> Path:
    return Path("runs") / f"{spec.name}-pretrain"


def _check_patch(spec: Spec) -> None:
    from dentpy.models import downsampling_factor

    patch = spec.pretrain.patch_size or spec.train.patch_size
    step = downsampling_factor(spec.model)
    if any(p % step for p in patch):
        raise SpecError(
            f"pretrain.patch_size {tuple(patch)} must be divisible by {step} on every axis",
            expected=f"multiples of {step} for model '{spec.model.name}'",
            found=str(tuple(patch)),
            fix="leave pretrain.patch_size null (uses train.patch_size) or pick multiples",
        )


def pretrain(
    spec: Spec,
    out: Path | None = None,
    show_progress: bool = True,
    cache_dir: Path | None = None,
) -> Path:
    """Pretrain the spec's network on unlabelled images; returns the folder. Launched by
    torchrun with several processes: data-parallel (DDP), each rank its own batches, rank 0
    writes the folder."""
    from dentpy.data.cache import default_cache_dir
    from dentpy.engine import distributed
    from dentpy.planning import require_numbers
    from dentpy.pretrain import data
    from dentpy.pretrained import output_layer_names, save_encoder
    from dentpy.train import configure_runtime

    require_numbers(spec, "dentpy pretrain")
    distributed.join(spec)  # several processes (torchrun): the process group first
    start = time.monotonic()
    method = resolve_method(spec)
    folder = out or default_out(spec)
    if (folder / RECORD_FILE).exists():
        raise SpecError(
            f"{folder} already holds a pretraining run",
            expected="a new folder",
            found=f"{RECORD_FILE} from an earlier `dentpy pretrain`",
            fix=f"pass --out {folder}-2, or delete the folder",
        )
    distributed.barrier()  # every rank has checked the folder before rank 0 writes to it
    main = distributed.is_main()  # rank 0 (or the one process) shows progress and writes
    device, _ = configure_runtime(spec)
    record: dict[str, Any] = {"format": 1, "method": method, "task": spec.objective.task}
    if method == "masked":
        from dentpy.models import build_model
        from dentpy.pretrain.masked3d import pretrain_masked, write_picture

        _check_patch(spec)
        with distributed.main_first():  # rank 0 fills the preprocessing cache, then the rest
            volumes = data.volumes_3d(
                spec, cache_dir or default_cache_dir(), show_progress and main
            )
        result = pretrain_masked(spec, volumes.images, device, show_progress and main)
        network, log, source = result.model, result.log, volumes
        exclude = output_layer_names(lambda k: build_model(spec.model, 1, k))
        record["example_masked_loss"] = round(result.example_loss, 5)
        record["example_predict_mean_loss"] = round(result.example_baseline_loss, 5)
        record["patch_size"] = list(spec.pretrain.patch_size or spec.train.patch_size)
    else:
        from dentpy.models2d import build_classifier
        from dentpy.pretrain.contrastive2d import pretrain_contrastive

        images = data.images_2d(spec)
        contrastive = pretrain_contrastive(spec, images.images[0], device, show_progress and main)
        network, log, source = contrastive.model, contrastive.log, images
        exclude = output_layer_names(lambda k: build_classifier(spec.model.name, k))
        record["chance_loss"] = round(contrastive.chance_loss, 5)

    if not main:
        return folder  # rank 0 writes the folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pretrain_spec.yaml").write_text(spec.to_yaml())
    (folder / "pretrain_loss.csv").write_text(log.to_csv())
    if method == "masked":
        write_picture(result.example, folder / "reconstruction.png")
    saved = save_encoder(network, exclude, architecture_signature(spec), folder / ENCODER_FILE)
    record.update(
        {
            "iterations": len(log.rows),
            "iterations_planned": spec.pretrain.iterations,
            "first_loss": round(log.mean_loss(first=True), 5),
            "final_loss": round(log.mean_loss(first=False), 5),
            "layers": "every tensor but the output layer",
            **saved,
            "data": {
                "train_split_images": source.n_train_split,
                "unlabeled_images": source.n_unlabeled,
                "labels_read": False,
                "preprocess": source.preprocess,
            },
            "settings": spec.pretrain.model_dump(mode="json"),
            "device": str(device),
            "world_size": distributed.world_size(),  # a step saw batch_size x this
            "seconds": round(time.monotonic() - start, 1),
        }
    )
    (folder / RECORD_FILE).write_text(json.dumps(record, indent=2))
    return folder
