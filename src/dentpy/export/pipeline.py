"""`dentpy export`: a run's network as ONNX or TorchScript, verified against PyTorch right
after export, with a model card (JSON + Markdown) beside it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dentpy.engine.run import require_run_folder
from dentpy.errors import OutputError, SpecError
from dentpy.export.runner import CARD_JSON, open_backend, sha256_of

if TYPE_CHECKING:
    from dentpy.export.loaded_run import LoadedRun

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}
CARD_MD = "model_card.md"
# Exported vs PyTorch logits on the same input, both fp32 on the CPU: kernels differ only in
# summation order, which costs a few float32 ulps per layer (measured ~1e-6 on dentpy's
# networks). 1e-4 relative to the logits' scale leaves ample room and still catches a wrong
# graph (a mis-traced branch changes logits by O(1)).
RELATIVE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    model_file: Path
    card_json: Path
    card_md: Path
    card: dict[str, Any]


def export_run(
    run_dir: str | Path,
    fmt: str,
    out: str | Path | None = None,
    checkpoint: str = "best",
    opset: int | None = None,
    force: bool = False,
    exporter: str = "dynamo",
) -> ExportResult:
    from dentpy.export.loaded_run import load_for_export
    from dentpy.export.model_card import build_card
    from dentpy.export.model_card_md import render_markdown

    _check_options(fmt, opset, exporter)
    run = require_run_folder(Path(run_dir))
    folder = Path(out) if out is not None else run.root / "export" / fmt
    targets = [folder / FORMATS[fmt], folder / CARD_JSON, folder / CARD_MD]
    existing = [path.name for path in targets if path.exists() or path.is_symlink()]
    if existing and not force:
        raise OutputError(
            f"{folder.name}: an earlier export is in the way ({', '.join(existing)})",
            expected="an output folder without model files or model cards",
            found=", ".join(existing),
            fix="pass --force to replace them, or choose another --out folder",
        )
    loaded = load_for_export(run.root, checkpoint)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    # Everything is written next to the targets first, so a failed export (or one refused
    # by the verification) leaves an earlier export untouched.
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=folder))
    try:
        model_path = staging / FORMATS[fmt]
        export = _export_and_verify(loaded, fmt, model_path, opset, exporter)
        card = build_card(loaded, export)
        (staging / CARD_JSON).write_text(json.dumps(card, indent=2, allow_nan=False) + "\n")
        (staging / CARD_MD).write_text(render_markdown(card))
        for target in targets:
            os.replace(staging / target.name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(folder.iterdir()):
            folder.rmdir()
    return ExportResult(folder, targets[0], targets[1], targets[2], card)


def _check_options(fmt: str, opset: int | None, exporter: str) -> None:
    from dentpy.export.onnx_export import EXPORTERS

    if fmt not in FORMATS:
        raise SpecError(
            f"unknown export format '{fmt}'",
            expected=" or ".join(FORMATS),
            found=fmt,
            fix="pass --format onnx or --format torchscript",
        )
    if opset is not None and (fmt != "onnx" or not 7 <= opset <= 30):
        raise SpecError(
            "--opset applies to ONNX exports, between 7 and 30",
            expected="--format onnx with an opset such as 18",
            found=f"--format {fmt} --opset {opset}",
            fix="drop --opset, or use --format onnx with a supported opset",
        )
    if exporter not in EXPORTERS:
        raise SpecError(
            f"unknown ONNX exporter '{exporter}'",
            expected=" or ".join(EXPORTERS),
            found=exporter,
        )


def _export_and_verify(
    loaded: LoadedRun, fmt: str, path: Path, opset: int | None, exporter: str
) -> dict[str, Any]:
    notes: list[str]
    info: dict[str, Any] = {"format": fmt, "file": path.name}
    if fmt == "onnx":
        from dentpy.export.onnx_export import export_onnx

        result = export_onnx(loaded, path, opset, exporter)
        notes = list(result.notes)
        measured = _measure(loaded, fmt, path, result.spatial_dynamic)
        if result.spatial_dynamic and isinstance(measured, str):
            # Fully convolutional in principle, but this graph did not generalise: fix the
            # window size (dentpy's sliding window only ever feeds that size anyway).
            notes.append(f"dynamic spatial axes failed verification ({measured}); fixed")
            result = export_onnx(loaded, path, opset, result.exporter, spatial_dynamic=False)
            notes += [n for n in result.notes if n not in notes]
            measured = _measure(loaded, fmt, path, False)
        spatial = result.spatial_dynamic
        label = "dynamo (torch.export)" if result.exporter == "dynamo" else "legacy (TorchScript)"
        info.update(exporter=f"torch.onnx.export, {label} exporter", opset=result.opset)
    else:
        from dentpy.export.torchscript_export import export_torchscript

        notes = export_torchscript(loaded, path)
        spatial = loaded.spatial_dynamic
        measured = _measure(loaded, fmt, path, spatial)
        info.update(exporter="torch.jit.trace + torch.jit.save", opset=None)
    if isinstance(measured, str):
        raise OutputError(
            f"{loaded.run.root.name}: the exported {fmt} model disagrees with PyTorch",
            expected="the same logits as PyTorch on random inputs (relative tolerance "
            f"{RELATIVE_TOLERANCE:g} of the logit scale)",
            found=measured,
            fix="try the other --format (or --exporter legacy for ONNX); nothing was written",
        )
    diff, scale = measured
    shapes = _verification_shapes(loaded, spatial)
    spatial_names = ["i", "j", "k"] if loaded.spatial_dynamic and spatial else None
    shape = _symbolic_shape(loaded, spatial_names)
    info.update(
        sha256=sha256_of(path),
        size_bytes=path.stat().st_size,
        device="cpu",
        dtype="float32",
        input={"name": "image", "shape": shape},
        output={"name": "logits", "shape": _output_shape(loaded, shape)},
        dynamic_axes={"batch": 0, **({n: 2 + a for a, n in enumerate(spatial_names or [])})},
        spatial_axes="dynamic" if spatial_names else "fixed",
        verification={
            "max_abs_diff": diff,
            "tolerance": RELATIVE_TOLERANCE * max(1.0, scale),
            "max_abs_logit": scale,
            "inputs": "seeded standard-normal float32 tensors of shapes "
            + ", ".join(str(list(s)) for s in shapes),
        },
        notes=notes,
    )
    return info


def _measure(loaded: LoadedRun, fmt: str, path: Path, spatial: bool) -> tuple[float, float] | str:
    """(max abs logit difference, logit scale), or why the exported model failed."""
    try:
        shapes = _verification_shapes(loaded, spatial)
        diff, scale = _max_abs_diff(loaded, open_backend(fmt, path), shapes)
    except Exception as exc:  # the runtime refusing the graph is what is being tested
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]}"
    tolerance = RELATIVE_TOLERANCE * max(1.0, scale)
    if not diff <= tolerance:  # also catches NaN
        return f"max |exported - PyTorch| = {diff:.3g} > tolerance {tolerance:.3g}"
    return diff, scale


def _verification_shapes(loaded: LoadedRun, spatial: bool) -> list[tuple[int, ...]]:
    """The traced shape, and one that differs in batch size (and spatial size when those
    axes are dynamic), so a graph frozen at the example shape is caught."""
    first = loaded.example_shape
    spatial_part = first[2:]
    if spatial and loaded.spatial_dynamic:
        spatial_part = tuple(
            s + loaded.spatial_multiple * (1 + a % 2) for a, s in enumerate(first[2:])
        )
    return [first, (1, first[1], *spatial_part)]


def _max_abs_diff(
    loaded: LoadedRun, backend: Any, shapes: list[tuple[int, ...]]
) -> tuple[float, float]:
    import torch

    generator = torch.Generator().manual_seed(1)
    diff, scale = 0.0, 0.0
    for shape in shapes:
        batch = torch.randn(*shape, generator=generator)
        with torch.inference_mode():
            reference = loaded.model(batch).float().numpy()
        exported = backend(batch.numpy())
        if exported.shape != reference.shape:
            return float("inf"), float(np.abs(reference).max())
        diff = max(diff, float(np.abs(exported - reference).max()))
        scale = max(scale, float(np.abs(reference).max()))
    return diff, scale


def _symbolic_shape(loaded: LoadedRun, spatial_names: list[str] | None) -> list[Any]:
    rest = list(spatial_names) if spatial_names else list(loaded.example_shape[2:])
    return ["batch", 1, *rest]


def _output_shape(loaded: LoadedRun, input_shape: list[Any]) -> list[Any]:
    import torch

    with torch.inference_mode():
        example = loaded.model(torch.zeros(1, *loaded.example_shape[1:]))
    channels = int(example.shape[1])
    if loaded.spatial_dynamic:
        return ["batch", channels, *input_shape[2:]]
    return ["batch", channels, *(int(s) for s in example.shape[2:])]
