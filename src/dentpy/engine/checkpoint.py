"""Checkpoints that survive crashes and never run code.

Layout in `RUN/checkpoints/`:
  ckpt-<iteration>.safetensors   model weights (safetensors: tensors only, no pickle)
  ckpt-<iteration>.state.pt      trainer state (optimizer, schedule, RNG states, counters),
                                 loaded with torch.load(weights_only=True)
  last.json / best.json          manifest: file names, sha256 of each, iteration, the
                                 run's identity (spec and data digests)

Each file is written to a temporary name, fsynced, then renamed; the manifest is written
last in the same way. A crash at any point leaves the previous manifest pointing at a
complete, hash-verified pair. Files no manifest refers to are removed after each save.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dentpy.errors import CheckpointError


@dataclass(frozen=True)
class Checkpoint:
    iteration: int
    weights: dict[str, Any]
    state: dict[str, Any]
    manifest: dict[str, Any]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(
    folder: Path,
    iteration: int,
    weights: dict[str, Any],
    state: dict[str, Any],
    identity: dict[str, str],
    tags: tuple[str, ...] = ("last",),
    extra: dict[str, Any] | None = None,
) -> None:
    """Write weights + state for `iteration`, then point each tag's manifest at them."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    stem = f"ckpt-{iteration:08d}"
    weights_path = folder / f"{stem}.safetensors"
    state_path = folder / f"{stem}.state.pt"
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
    try:
        _write_atomic(weights_path, lambda p: save_file(tensors, str(p)))
        _write_atomic(state_path, lambda p: torch.save(state, p))
    except (OSError, SafetensorError) as exc:
        # The manifest still points at the previous checkpoint; drop this one's halves.
        weights_path.unlink(missing_ok=True)
        state_path.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not write checkpoint {stem} in {folder}",
            expected="room to write the weights and trainer state",
            found=f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}",
            fix="free disk space (or move the run folder), then continue with --resume; "
            "the previous checkpoint is intact",
        ) from None
    manifest = {
        "format": 1,
        "iteration": iteration,
        "weights": weights_path.name,
        "weights_sha256": _sha256(weights_path),
        "state": state_path.name,
        "state_sha256": _sha256(state_path),
        "identity": identity,
        **(extra or {}),
    }
    for tag in tags:
        _write_atomic(
            folder / f"{tag}.json", lambda p: p.write_text(json.dumps(manifest, indent=2))
        )
    _fsync_dir(folder)
    _remove_unreferenced(folder)


def remove_stale_temporaries(folder: Path) -> None:
    """Delete temporary files a killed writer left behind (no manifest refers to them)."""
    for path in folder.glob(".*.tmp"):
        path.unlink(missing_ok=True)


def _remove_unreferenced(folder: Path) -> None:
    keep: set[str] = set()
    for manifest in folder.glob("*.json"):
        try:
            data = json.loads(manifest.read_text())
            keep.update({data["weights"], data["state"]})
        except (OSError, ValueError, KeyError):
            continue
    for path in folder.glob("ckpt-*"):
        if path.name not in keep:
            path.unlink(missing_ok=True)
    remove_stale_temporaries(folder)


def load_checkpoint(
    folder: Path, tag: str = "last", identity: dict[str, str] | None = None
) -> Checkpoint:
    """Load and verify a checkpoint; refuses missing, corrupt, or foreign checkpoints."""
    import torch
    from safetensors.torch import load_file

    manifest_path = folder / f"{tag}.json"
    if not manifest_path.is_file():
        raise CheckpointError(
            f"no '{tag}' checkpoint in {folder}",
            expected=f"{manifest_path.name} written by `dentpy train`",
            found="no manifest (the run never reached its first checkpoint, or this is "
            "not a run folder)",
            fix="start a fresh run without --resume, or point at the right run folder",
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        weights_path = folder / manifest["weights"]
        state_path = folder / manifest["state"]
    except (ValueError, KeyError) as exc:
        raise CheckpointError(
            f"checkpoint manifest {manifest_path.name} is corrupt",
            expected="a JSON manifest with weights/state names and hashes",
            found=type(exc).__name__,
            fix="delete the run folder's checkpoints and train again",
        ) from None
    for path, key in ((weights_path, "weights_sha256"), (state_path, "state_sha256")):
        if not path.is_file() or _sha256(path) != manifest.get(key):
            raise CheckpointError(
                f"checkpoint file {path.name} is missing or corrupt",
                expected=f"sha256 {str(manifest.get(key))[:16]}… (from {manifest_path.name})",
                found="missing file" if not path.is_file() else "different content",
                fix="the checkpoint cannot be trusted; train again or restore the file",
            )
    if identity is not None:
        for key, value in identity.items():
            recorded = manifest.get("identity", {}).get(key)
            if recorded != value:
                raise CheckpointError(
                    f"checkpoint belongs to another {key.replace('_', ' ')}",
                    expected=f"{key} {value}",
                    found=f"{key} {recorded}",
                    fix="resume with the run's own spec and data (the run folder's spec.yaml), "
                    "or start a new run under another name",
                )
    try:
        weights = load_file(str(weights_path))
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {state_path.name} could not be loaded safely",
            expected="tensors and plain values only (no code)",
            found=f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}",
            fix="only load checkpoints written by dentpy; never trust a checkpoint from "
            "an unknown source",
        ) from None
    return Checkpoint(int(manifest["iteration"]), weights, state, manifest)
