"""TorchScript export with `torch.jit.trace` + `torch.jit.save`.

torch 2.13 marks `torch.jit.trace` (and TorchScript as a whole) deprecated in favour of
`torch.export`; the file still loads with `torch.jit.load` and runs without Python model
code. The deprecation is recorded in the card so users can plan for ONNX instead.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from dentpy.errors import OutputError

if TYPE_CHECKING:
    from dentpy.export.loaded_run import LoadedRun


def export_torchscript(loaded: LoadedRun, path: Path) -> list[str]:
    """Trace and save the network; returns notes for the card (deprecation warnings)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    example = torch.randn(*loaded.example_shape, generator=generator)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.inference_mode(False), torch.no_grad():
                traced = torch.jit.trace(loaded.model, example, check_trace=False)
            torch.jit.save(traced, str(path))
        except Exception as exc:
            path.unlink(missing_ok=True)
            raise OutputError(
                f"{loaded.run.root.name}: the network could not be traced to TorchScript",
                expected="a network torch.jit.trace can follow",
                found=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}",
                fix="export --format onnx instead",
            ) from None
    notes = sorted(
        {
            f"torch {torch.__version__}: {str(w.message).splitlines()[0]}"
            for w in caught
            if "deprecated" in str(w.message).lower()
        }
    )
    notes.append(
        "traced: shape-dependent Python branches are frozen at the traced input shape "
        f"{list(loaded.example_shape)}; verified on a second shape after export"
    )
    return notes
