"""`dentpy describe` (registered on the main app by dentpy.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Define the command(s) of this module on `app`."""

    @app.command(
        epilog="Example: `dentpy describe spec.yaml --diagram pipeline.svg` (or "
        "`dentpy describe runs/pulp-cbct` for a trained run)"
    )
    def describe(
        spec: Annotated[
            Path,
            typer.Argument(
                metavar="SPEC",
                help="problem spec (YAML), or a run folder (its spec.yaml and plan.json)",
            ),
        ],
        run: Annotated[
            Path | None,
            typer.Option(help="a trained run folder: shapes and classes from its plan.json"),
        ] = None,
        diagram: Annotated[
            Path | None,
            typer.Option(help="also write the pipeline as an SVG diagram to this file"),
        ] = None,
        force: Annotated[bool, typer.Option(help="replace an existing --diagram file")] = False,
    ) -> None:
        """Print the problem formulation and how raw data becomes output (preprocessing,
        augmentation, network with tensor shapes, decoding, outputs, metrics)."""
        from dentpy.errors import DentpyError

        try:
            _describe(spec, run, diagram, force)
        except DentpyError as exc:
            # Same message and exit status as dentpy.cli.main, also under CliRunner.
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None


def _describe(spec_path: Path, run: Path | None, diagram: Path | None, force: bool) -> None:
    from dentpy.describe import describe_pipeline, describe_problem, describe_text
    from dentpy.spec import load_spec

    if diagram is not None:
        _refuse_existing(diagram, force)
    if spec_path.is_dir() and (spec_path / "spec.yaml").is_file():
        run = spec_path if run is None else run
        spec_path = spec_path / "spec.yaml"
    spec = load_spec(spec_path)
    pipeline = describe_pipeline(spec, run)
    typer.echo(f"Problem: {spec.name}")
    width = max(len(section) for section, _ in describe_problem(spec))
    for section, summary in describe_problem(spec):
        typer.echo(f"  {section.ljust(width)}  {summary}")
    typer.echo("")
    typer.echo(describe_text(pipeline))
    if diagram is not None:
        from dentpy.report.diagram import pipeline_svg

        _write(diagram, pipeline_svg(pipeline), force)
        typer.echo(f"\nwrote {diagram}")


def _refuse_existing(path: Path, force: bool) -> None:
    from dentpy.errors import OutputError

    if path.exists() and not force:
        raise OutputError(
            f"{path} already exists",
            expected="a new file name for the diagram",
            found="an existing file (dentpy never overwrites a file silently)",
            fix="choose another --diagram, or pass --force to replace it",
        )
    if path.exists() and not path.is_file():
        raise OutputError(
            f"{path} is not a file",
            expected="a file name ending in .svg",
            found="a folder or other non-file at that path",
            fix="choose another --diagram",
        )


def _write(path: Path, text: str, force: bool) -> None:
    from dentpy.errors import OutputError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # "x" refuses a file that appeared since the check; --force replaces it.
        with path.open("w" if force else "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        _refuse_existing(path, force)
    except OSError as exc:
        raise OutputError(
            f"{path.name}: the diagram could not be written",
            expected="a writable folder",
            found=f"{type(exc).__name__}: {exc.strerror}",
            fix="choose another --diagram location",
        ) from None
