"""ONNX export with `torch.onnx.export`.

The dynamo exporter (`torch.export` based, the default since torch 2.9) is tried first; if
it fails the legacy TorchScript-based exporter (deprecated in torch 2.9+, slated for
removal) is used and the card says why. Weights are stored inside the one `.onnx` file
(no external-data file), so the card's sha256 covers the whole model.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dentpy.errors import OutputError

if TYPE_CHECKING:
    from dentpy.export.loaded_run import LoadedRun

EXPORTERS = ("dynamo", "legacy")
INPUT_NAME, OUTPUT_NAME = "image", "logits"
LEGACY_OPSET = 18  # the legacy exporter's own default is older; 18 runs on any recent ORT


@dataclass
class OnnxExport:
    exporter: str  # "dynamo" or "legacy"
    opset: int
    spatial_dynamic: bool
    notes: list[str] = field(default_factory=list)


def export_onnx(
    loaded: LoadedRun,
    path: Path,
    opset: int | None,
    exporter: str = "dynamo",
    spatial_dynamic: bool = True,
) -> OnnxExport:
    """Write `path`; the batch axis is always dynamic, 3D spatial axes when asked and
    possible. `exporter` "dynamo" falls back to "legacy" when it fails."""
    spatial_dynamic = spatial_dynamic and loaded.spatial_dynamic
    notes: list[str] = []
    if exporter == "dynamo":
        try:
            _dynamo(loaded, path, opset, spatial_dynamic)
        except Exception as exc:  # any exporter failure: try the legacy exporter instead
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            notes.append(f"dynamo exporter failed ({type(exc).__name__}: {first}); used legacy")
            exporter = "legacy"
    if exporter == "legacy":
        notes.append(
            "legacy TorchScript-based ONNX exporter (deprecated by PyTorch; kept while it works)"
        )
        try:
            _legacy(loaded, path, opset, spatial_dynamic)
        except Exception as exc:
            path.unlink(missing_ok=True)
            raise OutputError(
                f"{loaded.run.root.name}: the network could not be exported to ONNX",
                expected="a network torch.onnx.export can trace (dynamo or legacy exporter)",
                found=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}",
                fix="export --format torchscript instead, or report the model name",
            ) from None
    return OnnxExport(exporter, _opset_of(path), spatial_dynamic, notes)


def _example(loaded: LoadedRun) -> object:
    import torch

    generator = torch.Generator().manual_seed(0)
    return torch.randn(*loaded.example_shape, generator=generator)


def _dynamo(loaded: LoadedRun, path: Path, opset: int | None, spatial_dynamic: bool) -> None:
    import torch

    axes: dict[int, object] = {0: torch.export.Dim("batch", min=1, max=4096)}
    if spatial_dynamic:
        axes.update({axis: torch.export.Dim.AUTO for axis in range(2, len(loaded.example_shape))})
    # The exporter prints its progress on stdout and logs that torchvision (which dentpy
    # never uses) is missing; the CLI prints its own summary.
    with _quiet(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            loaded.model,
            (_example(loaded),),
            str(path),
            dynamo=True,
            external_data=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=(axes,),
            verbose=False,
        )


def _legacy(loaded: LoadedRun, path: Path, opset: int | None, spatial_dynamic: bool) -> None:
    import torch

    names = {0: "batch"}
    if spatial_dynamic:
        names.update({2: "i", 3: "j", 4: "k"})
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            loaded.model,
            (_example(loaded),),
            str(path),
            dynamo=False,
            opset_version=opset or LEGACY_OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: names, OUTPUT_NAME: names},
        )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import logging

    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _opset_of(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(model)
    return next(int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))
