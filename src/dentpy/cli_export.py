"""`dentpy export` (registered on the main app by dentpy.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Define the command(s) of this module on `app`."""

    @app.command(
        epilog="Example: `dentpy export runs/pulp-cbct --format onnx` writes "
        "runs/pulp-cbct/export/onnx/model.onnx, model_card.json and model_card.md"
    )
    def export(
        run: Annotated[Path, typer.Argument(help="run folder (written by dentpy train)")],
        format: Annotated[str, typer.Option("--format", help="onnx | torchscript")] = "onnx",
        out: Annotated[
            Path | None, typer.Option(help="output folder (default: RUN/export/FORMAT)")
        ] = None,
        checkpoint: Annotated[str, typer.Option(help="best (chosen on val) | last")] = "best",
        opset: Annotated[
            int | None, typer.Option(help="ONNX opset (default: the exporter's own)")
        ] = None,
        exporter: Annotated[
            str,
            typer.Option(help="ONNX exporter: dynamo (falls back to legacy if it fails) | legacy"),
        ] = "dynamo",
        force: Annotated[bool, typer.Option(help="replace an earlier export")] = False,
    ) -> None:
        """Export the network (CPU, fp32, eval mode) as ONNX or TorchScript, check it against
        PyTorch on random inputs, and write a model card: classes, preprocessing, decoding,
        training data fingerprint, metrics with 95% CIs, intended use and limits."""
        from dentpy.cli import _console
        from dentpy.export.pipeline import export_run

        result = export_run(
            run, format, out, checkpoint=checkpoint, opset=opset, force=force, exporter=exporter
        )
        export = result.card["export"]
        console = _console()
        console.print(
            f"exported {result.card['run']} ({result.card['task']}) as {format}: "
            f"{result.model_file}"
        )
        console.print(
            f"verified: max |exported - PyTorch| = {export['verification']['max_abs_diff']:.2g}"
            f" (tolerance {export['verification']['tolerance']:.2g}); {export['exporter']}"
        )
        console.print(f"model card: {result.card_json.name}, {result.card_md.name}")
        for note in export["notes"]:
            console.print(f"note: {note}")
