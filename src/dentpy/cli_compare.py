"""`dentpy compare` and `dentpy benchmark` (registered on the main app by dentpy.cli)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer


def _console() -> Any:
    from rich.console import Console

    # Same rule as dentpy.cli: piped output gets a fixed width so tables stay whole.
    return Console() if sys.stdout.isatty() else Console(width=140)


def _fail(exc: Exception) -> typer.Exit:
    # Print here and exit 2 ourselves, so that the exit code is the same whether the app
    # runs through dentpy.cli.main or is invoked directly (tests, embedding).
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Define `compare` and `benchmark` on `app`."""

    @app.command(epilog="Example: `dentpy compare runs/pulp-cbct runs/pulp-cbct-long --split test`")
    def compare(
        runs: Annotated[
            list[Path], typer.Argument(help="run folders; the first is the reference (A)")
        ],
        split: Annotated[str, typer.Option(help="evaluated split: test | val | train")] = "test",
        out: Annotated[
            Path | None,
            typer.Option(help="output folder (default comparisons/NAME_A-vs-NAME_B)"),
        ] = None,
        n_boot: Annotated[int, typer.Option(help="bootstrap resamples for the CIs")] = 2000,
        seed: Annotated[int, typer.Option(help="bootstrap seed")] = 0,
        force: Annotated[bool, typer.Option(help="overwrite existing outputs")] = False,
    ) -> None:
        """Compare evaluated runs case by case against the first run: mean difference
        B - A with a patient-level bootstrap 95% CI, Wilcoxon signed-rank p (and
        Holm-adjusted), win/tie/loss counts. Writes compare.json, compare.csv and
        compare.md. Runs must be evaluated on the same split and cases."""
        from dentpy.compare.compare import compare_runs
        from dentpy.compare.compare_output import (
            default_out,
            grouped_notes,
            prepare_out,
            render_tables,
            write_outputs,
        )
        from dentpy.errors import DentpyError

        try:
            result = compare_runs(list(runs), split=split, n_boot=n_boot, seed=seed)
            folder = out if out is not None else default_out(result["runs"])
            prepare_out(folder, force)
            write_outputs(result, folder)
        except DentpyError as exc:
            raise _fail(exc) from None
        console = _console()
        for table, comparison in zip(render_tables(result), result["comparisons"], strict=True):
            console.print(table)
            for note in grouped_notes(comparison["rows"]):
                console.print(f"  note: {note}", markup=False)
        console.print(f"{result['multiple_testing']}. Definitions in compare.json / compare.md.")
        console.print(f"written: {folder}/compare.json, compare.csv, compare.md")

    @app.command(epilog="Example: `dentpy benchmark runs/pulp-cbct runs/pulp-cbct-long`")
    def benchmark(
        runs: Annotated[list[Path], typer.Argument(help="evaluated run folders, same task")],
        split: Annotated[str, typer.Option(help="evaluated split: test | val | train")] = "test",
        out: Annotated[
            Path | None,
            typer.Option(help="output folder (default leaderboards/FIRST-RUN-vs-N-SPLIT)"),
        ] = None,
        force: Annotated[bool, typer.Option(help="overwrite existing outputs")] = False,
    ) -> None:
        """Leaderboard of evaluated runs and their built-in baselines (threshold, majority,
        blob boxes...) on one split, sorted by the task's primary metric (segmentation:
        macro Dice; binary classification: ROC-AUC; ordinal: quadratic weighted kappa;
        multiclass: balanced accuracy; detection: COCO AP). Writes leaderboard.md, .csv
        and a self-contained .html."""
        from dentpy.compare.compare_output import prepare_out
        from dentpy.compare.leaderboard import build_leaderboard
        from dentpy.compare.leaderboard_output import (
            OUTPUT_FILES,
            render_table,
            write_leaderboard,
        )
        from dentpy.errors import DentpyError

        try:
            board = build_leaderboard(list(runs), split=split)
            default = f"{runs[0].name}-vs-{len(runs) - 1}-{split}" if len(runs) > 1 else ""
            folder = out or Path("leaderboards") / (default or f"{runs[0].name}-{split}")
            prepare_out(folder, force, OUTPUT_FILES)
            write_leaderboard(board, folder)
        except DentpyError as exc:
            raise _fail(exc) from None
        console = _console()
        console.print(render_table(board))
        console.print(f"written: {folder}/" + ", ".join(OUTPUT_FILES))
