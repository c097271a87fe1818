"""Export a trained run's network (ONNX or TorchScript) with a model card, and run the
exported file with dentpy's own pre- and postprocessing (`ExportedModel`).

Only names are re-exported here; torch, onnx and onnxruntime load when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dentpy.export.pipeline import ExportResult, export_run
    from dentpy.export.runner import ExportedModel

__all__ = ["ExportResult", "ExportedModel", "export_run"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import dentpy.export` stays as cheap as `import dentpy`.
    if name in ("export_run", "ExportResult"):
        from dentpy.export import pipeline

        return getattr(pipeline, name)
    if name == "ExportedModel":
        from dentpy.export.runner import ExportedModel

        return ExportedModel
    raise AttributeError(name)
