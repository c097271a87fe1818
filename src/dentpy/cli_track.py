"""`dentpy track` (registered on the main app by dentpy.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Define the command(s) of this module on `app`."""

    @app.command(
        epilog="Example: `dentpy track runs/pulp-cbct --to mlflow` then "
        "`mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`",
    )
    def track(
        run: Annotated[Path, typer.Argument(help="run folder written by `dentpy train`")],
        to: Annotated[
            list[str] | None,
            typer.Option(
                "--to",
                help="mlflow | wandb (repeat for both); default: the spec's "
                "tracking.backends minus tensorboard",
            ),
        ] = None,
        mlflow_uri: Annotated[
            str | None,
            typer.Option(help="MLflow tracking URI (default: sqlite store RUNS/mlflow.db)"),
        ] = None,
        experiment: Annotated[
            str | None,
            typer.Option(help="MLflow experiment / W&B group (default: the run's name)"),
        ] = None,
        wandb_dir: Annotated[
            Path | None,
            typer.Option(help="folder for offline W&B runs (default: the runs folder)"),
        ] = None,
    ) -> None:
        """Log a run to MLflow and/or Weights & Biases (offline): params (the spec without
        paths), training curves, evaluation results, report and best model. Safe to repeat:
        the same tracker run is resumed and only new training rows are added."""
        from dentpy.errors import InputDataError
        from dentpy.registry import did_you_mean
        from dentpy.tracking.base import SYNCED_BACKENDS, TrackingError
        from dentpy.tracking.sync import configured_backends, summary_lines, sync_run

        if not (run / "spec.yaml").is_file():
            raise InputDataError(
                f"{run.name or run}: not a dentpy run folder",
                expected="a folder written by `dentpy train` (with spec.yaml)",
                found="no spec.yaml" if run.is_dir() else "no such folder",
                fix="pass the run folder, e.g. runs/pulp-cbct",
            )
        for name in to or []:
            if name not in SYNCED_BACKENDS:
                raise TrackingError(
                    f"unknown tracker '{name}'",
                    expected=f"one of: {', '.join(SYNCED_BACKENDS)} (TensorBoard is written "
                    "by training itself, in RUN/tensorboard)",
                    found=name,
                    fix=did_you_mean(name, list(SYNCED_BACKENDS)),
                )
        backends = list(to) if to else configured_backends(run)
        if not backends:
            raise TrackingError(
                f"{run.name}: no tracker to log to",
                expected="--to mlflow / --to wandb, or tracking.backends in the spec",
                found="tracking.backends lists only tensorboard (or nothing)",
                fix=f"dentpy track {run} --to mlflow",
            )
        results = sync_run(
            run, backends, mlflow_uri=mlflow_uri, experiment=experiment, wandb_dir=wandb_dir
        )
        for line in summary_lines(results, run.name):
            typer.echo(line)
