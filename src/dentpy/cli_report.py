"""`dentpy report` (registered on the main app by dentpy.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Define the command(s) of this module on `app`."""

    @app.command(
        epilog="Example: `dentpy report runs/pulp-cbct` (after `dentpy evaluate runs/pulp-cbct`)"
    )
    def report(
        run: Annotated[Path, typer.Argument(help="run folder, trained and evaluated")],
        split: Annotated[str, typer.Option(help="the evaluated split to report: test | val")] = (
            "test"
        ),
        out: Annotated[
            Path | None,
            typer.Option(help="HTML file to write (default: RUN/report/report.html)"),
        ] = None,
        force: Annotated[bool, typer.Option(help="replace an existing report")] = False,
    ) -> None:
        """One self-contained HTML page about a run, for a reviewer or clinician: the problem
        formulation, the pipeline diagram, the data, training curves, metrics with 95% CIs
        next to the baselines, per-case distributions, best/median/worst examples, volumes
        and the environment. Pictures are embedded; the page loads nothing from the network
        and holds no dataset path or file name."""
        from dentpy.report.report_run import write_report

        written = write_report(run, split=split, out=out, force=force)
        size = written.stat().st_size
        typer.echo(f"report: {written} ({size / 1e6:.2f} MB); open it in any browser")
