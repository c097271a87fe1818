"""Pretrained encoders: what `dentpy pretrain` saves and `model.pretrained` loads.

The saved tensors are the whole network except its output layer (the layer whose shape
depends on the number of outputs: segmentation classes, classifier classes, or the
pretext task's single reconstruction channel / projection width). Loading copies every
tensor whose name and shape match the fine-tuned model; the architecture signature (model
name, levels, input channels) is checked first, so a checkpoint from another network is
refused with a clear message instead of silently loading a handful of tensors.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dentpy.errors import CheckpointError

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Spec

ENCODER_FILE = "encoder.safetensors"
RECORD_FILE = "pretrain.json"
# At least this share of the checkpoint's tensors must load, else the fine-tune is refused.
MIN_MATCHED_FRACTION = 0.5

log = logging.getLogger(__name__)


def architecture_signature(spec: Spec) -> dict[str, Any]:
    """What must agree between pretraining and fine-tuning for the weights to fit."""
    if spec.objective.task == "segmentation":
        signature: dict[str, Any] = {
            "spatial_dims": 3,
            "model": spec.model.name,
            "in_channels": 1,
            "channels": list(spec.model.channels),
        }
        if spec.model.name == "unet":
            signature["num_res_units"] = spec.model.num_res_units
        return signature
    # 2D classifiers have fixed widths: the name is the architecture.
    return {"spatial_dims": 2, "model": spec.model.name, "in_channels": 1}


def output_layer_names(build: Callable[[int], torch.nn.Module]) -> list[str]:
    """Tensors whose shape depends on the number of outputs (found by building the
    network for 2 and for 3 outputs), i.e. the output layer of any architecture."""
    small, large = build(2).state_dict(), build(3).state_dict()
    return sorted(k for k in small if k not in large or small[k].shape != large[k].shape)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_encoder(
    model: torch.nn.Module, exclude: list[str], signature: dict[str, Any], path: Path
) -> dict[str, Any]:
    """Write the model's tensors but `exclude` (safetensors, signature in its metadata);
    returns what pretrain.json records about them."""
    from safetensors.torch import save_file

    tensors = {
        name: value.detach().to("cpu").contiguous()
        for name, value in model.state_dict().items()
        if name not in exclude
    }
    save_file(tensors, str(path), metadata={"signature": json.dumps(signature, sort_keys=True)})
    return {
        "weights": path.name,
        "weights_sha256": sha256_of(path),
        "tensors": len(tensors),
        "excluded_output_layer": list(exclude),
        "signature": signature,
    }


def _locate(setting: str) -> tuple[Path, Path | None]:
    path = Path(setting).expanduser()
    weights = path / ENCODER_FILE if path.is_dir() else path
    if not weights.is_file():
        raise CheckpointError(
            f"model.pretrained: no pretrained encoder at {weights.name}",
            expected=f"a `dentpy pretrain` run folder (holding {ENCODER_FILE}) or the file",
            found="nothing at that path",
            fix="run `dentpy pretrain spec.yaml` first, or correct model.pretrained "
            "(relative paths are read from the spec file's folder)",
        )
    record = weights.parent / RECORD_FILE
    return weights, record if record.is_file() else None


def load_pretrained(model: torch.nn.Module, spec: Spec) -> dict[str, Any] | None:
    """Copy `model.pretrained`'s matching tensors into `model` (None when not set).

    Returns what train_summary.json records: the file's name (not its folder, which
    might name a patient) and sha256, and how many tensors loaded or were skipped."""
    if spec.model.pretrained is None:
        return None
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    weights, record_path = _locate(spec.model.pretrained)
    sha256 = sha256_of(weights)
    record: dict[str, Any] = {}
    if record_path is not None:
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = {}
        if record.get("weights") == weights.name and record.get("weights_sha256") != sha256:
            raise CheckpointError(
                f"model.pretrained: {weights.name} is corrupt or was replaced",
                expected=f"sha256 {str(record.get('weights_sha256'))[:16]}… (from {RECORD_FILE})",
                found=f"sha256 {sha256[:16]}…",
                fix="run `dentpy pretrain` again, or restore the file",
            )
    try:
        with safe_open(str(weights), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(weights))
        found_signature = json.loads(metadata["signature"])
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"model.pretrained: {weights.name} is not a dentpy pretrained encoder",
            expected=f"{ENCODER_FILE} written by `dentpy pretrain` (safetensors with a signature)",
            found=f"{type(exc).__name__}",
            fix="point model.pretrained at a `dentpy pretrain` run folder",
        ) from None
    expected_signature = architecture_signature(spec)
    if found_signature != expected_signature:
        raise CheckpointError(
            f"model.pretrained: {weights.name} was pretrained for another architecture",
            expected=_describe(expected_signature),
            found=_describe(found_signature),
            fix="set the model section (name, channels, num_res_units) to what was pretrained, "
            "or run `dentpy pretrain` with this spec",
        )
    state = model.state_dict()
    matched = {k: v for k, v in tensors.items() if k in state and state[k].shape == v.shape}
    skipped = sorted(set(tensors) - set(matched))
    if not matched or len(matched) < MIN_MATCHED_FRACTION * len(tensors):
        raise CheckpointError(
            f"model.pretrained: only {len(matched)} of {weights.name}'s {len(tensors)} tensors "
            "fit the model",
            expected=f"at least {MIN_MATCHED_FRACTION:.0%} of the tensors with the same names "
            "and shapes",
            found=f"skipped e.g. {', '.join(skipped[:5])}",
            fix="pretrain with the same model section as the fine-tuning spec",
        )
    model.load_state_dict(matched, strict=False)
    not_loaded = sorted(set(state) - set(matched))
    log.info(
        "pretrained encoder %s: loaded %d tensors, skipped %d (%s); kept the model's own "
        "initialisation for %d (%s)",
        weights.name,
        len(matched),
        len(skipped),
        ", ".join(skipped) or "none",
        len(not_loaded),
        ", ".join(not_loaded) or "none",
    )
    return {
        "file": weights.name,
        "sha256": sha256,
        "method": record.get("method"),
        "pretrain_iterations": record.get("iterations"),
        "tensors_loaded": len(matched),
        "tensors_skipped": skipped,
        "tensors_not_in_checkpoint": not_loaded,
    }


def _describe(signature: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(signature.items()))
