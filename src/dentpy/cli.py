"""The `dentpy` command line: parse, build the typed objects, call one stage, print.

Heavy libraries (torch, MONAI, nibabel) are imported inside the commands, so
`dentpy --help` answers instantly.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from dentpy import cli_compare, cli_describe, cli_export, cli_plan, cli_report, cli_track
from dentpy.errors import DentpyError

app = typer.Typer(
    name="dentpy",
    help="Dental imaging from problem formulation to a trained, evaluated, usable model.\n\n"
    "Start with `dentpy demo`, or: dentpy init -> dentpy train -> dentpy evaluate -> "
    "dentpy predict -> dentpy volume.",
    epilog="Example: `dentpy demo` (synthetic data, ~5 min on a laptop CPU)",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
synth_app = typer.Typer(
    help="Write synthetic dental datasets (offline, deterministic).",
    epilog="Example: `dentpy synth cbct --out data --cases 12`",
    no_args_is_help=True,
)
app.add_typer(synth_app, name="synth")
data_app = typer.Typer(
    help="Work with a dataset: check it, split it, convert it.",
    epilog="Example: `dentpy data split data/Dataset001_SynthCBCT --val 0.2 --test 0.2`",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")
# Kept in step with dentpy.data.dataset.LAYOUTS (a test checks); spelled out so that
# `--help` does not import the data package.
LAYOUT_HELP = (
    "auto | 3D: nnunet, msd, pulpy, toothfairy, files | "
    "2D: coco, yolo, tufts, imagefolder, csv, images"
)


def _version(value: bool) -> None:
    if value:
        from dentpy import __version__

        typer.echo(f"dentpy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    """Dental imaging from problem formulation to a trained, evaluated, usable model."""


def sync_trackers(run_dir: Path) -> None:
    """Log the run to the MLflow / W&B trackers its spec lists (tracking.backends). A
    tracker failure after a long training only warns: the run folder is complete."""
    from dentpy.tracking import configured_backends, summary_lines, sync_run

    if not configured_backends(run_dir):
        return
    try:
        for line in summary_lines(sync_run(run_dir), run_dir.name):
            typer.echo(line)
    except DentpyError as exc:
        typer.secho(
            f"warning: tracking skipped: {exc}\n  retry: dentpy track {run_dir}",
            fg=typer.colors.YELLOW,
            err=True,
        )


def _console() -> Any:
    from rich.console import Console

    # Piped output (logs, CI) has no width; 120 columns keep the metric tables whole.
    return Console() if sys.stdout.isatty() else Console(width=120)


@app.command(epilog="Example: `dentpy init --template pulp-cbct --data data/Dataset001_SynthCBCT`")
def init(
    template: Annotated[
        str | None,
        typer.Option(
            help="pulp-cbct | ian-cbct | teeth-cbct | teeth-fdi-cbct | pulp-instances-cbct | "
            "caries-binary | caries-severity | caries-boxes | teeth-boxes; omit to answer "
            "questions"
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="where to write the spec")] = Path("spec.yaml"),
    data: Annotated[str, typer.Option(help="dataset folder (relative to the spec)")] = "data",
    name: Annotated[str | None, typer.Option(help="run name (default: the template)")] = None,
    force: Annotated[bool, typer.Option(help="replace an existing spec file")] = False,
) -> None:
    """Write a commented problem spec (objective, input, metrics, paradigm, constraints,
    evaluation, then model, loss, optimizer, schedule)."""
    from dentpy.init import QUESTIONS, render, write_spec

    iterations = None
    if template is None:
        answers = [default for _, default in QUESTIONS]
        if sys.stdin.isatty():
            answers = [typer.prompt(question, default=default) for question, default in QUESTIONS]
        else:
            typer.echo("stdin is not a terminal: using defaults (pulp, data, 2000 iterations)")
        target, data, iterations_text = answers
        template = {
            "pulp": "pulp-cbct",
            "ian": "ian-cbct",
            "teeth": "teeth-cbct",
            "fdi": "teeth-fdi-cbct",
            "pulps": "pulp-instances-cbct",
            "caries": "caries-binary",
            "grade": "caries-severity",
        }.get(target.strip().lower(), target)
        iterations = int(iterations_text)
    text = render(template, name or template, data, iterations)
    written = write_spec(out, text, force=force)
    typer.echo(f"wrote {written}  (next: dentpy train {written})")


@synth_app.command(
    "cbct",
    epilog="Example: `dentpy synth cbct --out data --cases 12 --profile tiny --seed 0`",
)
def synth_cbct(
    out: Annotated[Path, typer.Option(help="output folder")],
    cases: Annotated[int, typer.Option(help="number of labelled (training) cases")] = 8,
    profile: Annotated[
        str, typer.Option(help="tiny (1 mm, seconds) | ci | full (0.3 mm)")
    ] = "tiny",
    seed: Annotated[int, typer.Option(help="same seed, same bytes")] = 0,
    layout: Annotated[str, typer.Option(help="nnunet | pulpy | toothfairy")] = "nnunet",
    test_cases: Annotated[int, typer.Option(help="extra held-out cases (imagesTs)")] = 0,
    labels: Annotated[
        str,
        typer.Option(
            help="semantic (mandible, canals, tooth, pulp) | toothfairy3 (ToothFairy3 ids: "
            "teeth by FDI number, pulps 100 + FDI; nnunet and pulpy layouts)"
        ),
    ] = "semantic",
) -> None:
    """Synthetic CBCT of the lower jaw: mandible, teeth (enamel, dentin, pulp), left and right
    IAN canals, with CBCT artefacts; labels agree with the image by construction."""
    from dentpy.data.synth import write_dataset

    root = write_dataset(
        out,
        cases,
        profile=profile,
        seed=seed,
        layout=layout,
        test_cases=test_cases,
        labels=labels,
    )
    typer.echo(f"wrote {cases + test_cases} synthetic cases ({profile}, seed {seed}) to {root}")


@synth_app.command(
    "xray", epilog="Example: `dentpy synth xray --out data --images 200 --kind bitewing`"
)
def synth_xray(
    out: Annotated[Path, typer.Option(help="parent folder; writes OUT/XraySynth")] = Path("data"),
    images: Annotated[int, typer.Option(help="radiographs (two per patient)")] = 60,
    seed: Annotated[int, typer.Option(help="same seed, same bytes")] = 0,
    kind: Annotated[str, typer.Option(help="bitewing | periapical | panoramic")] = "bitewing",
) -> None:
    """Write synthetic caries radiographs (ICCMS-graded lesions, fillings, burnout) with
    tooth crops for classification (ImageFolder, CSV), lesion masks, COCO/YOLO lesion boxes
    and COCO/YOLO tooth boxes numbered by FDI."""
    from dentpy.data.synth.xray import write_xray_dataset

    written = write_xray_dataset(out, images=images, seed=seed, kind=kind)
    typer.echo(f"wrote {images} {kind} radiographs to {written['root']}")
    keys = ("caries_binary", "caries_severity", "detection_coco", "detection_yolo")
    for key in (*keys, "teeth_coco", "teeth_yolo"):
        typer.echo(f"  {key:16s} {written[key]}")


@data_app.command(
    "check",
    epilog="Example: `dentpy data check data/Dataset001_SynthCBCT --pictures check-pictures`",
)
def data_check(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="dataset folder, volume or image file (with --suspicious: the run's "
            "dataset if it moved; default: the run spec's input.data)"
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write the full report as JSON")
    ] = None,
    pictures: Annotated[
        Path | None, typer.Option(help="folder for overlay, class-balance and histogram PNGs")
    ] = None,
    layout: Annotated[str, typer.Option(help=LAYOUT_HELP)] = "auto",
    assume_spacing: Annotated[
        tuple[float, float, float] | None,
        typer.Option(help="voxel size in mm to use instead of the files' (e.g. 0.3 0.3 0.3)"),
    ] = None,
    suspicious: Annotated[
        Path | None,
        typer.Option(
            help="a trained run folder: rank its training/validation cases by how much their "
            "labels disagree with the model (writes RUN/suspicious_labels.csv)"
        ),
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="--suspicious: rows to print")] = 20,
    show_files: Annotated[
        bool, typer.Option(help="--suspicious: add each case's file to the printed table")
    ] = False,
) -> None:
    """Load every case as training would, list every problem (naming case and file), and
    print the dataset's fingerprint. Exits with status 1 when a problem is found.
    With --suspicious RUN: list the cases whose labels a trained model disputes most."""
    from rich.progress import Progress

    from dentpy.data.check import check_dataset
    from dentpy.data.dataset import open_any

    if suspicious is not None:
        _suspicious(suspicious, path, top, show_files)
        return
    if path is None:
        raise typer.BadParameter("give a dataset PATH (or --suspicious RUN)")
    dataset = open_any(path, layout, assume_spacing)
    total = len(dataset.records) + len(dataset.test_records)
    with Progress(transient=True, disable=not sys.stdout.isatty()) as progress:
        task = progress.add_task("checking cases", total=total)
        report = check_dataset(dataset, pictures, on_case=lambda: progress.advance(task))
    console = _console()
    print_fingerprint(console, report.to_dict())
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2))
        console.print(f"report: {json_out}")
    if pictures is not None:
        console.print(f"pictures: {pictures} ({len(report.pictures)} PNG files)")
    if report.ok:
        console.print(f"[green]no problems found[/green] in {report.n_cases} cases")
        return
    console.print(f"[red]{len(report.problems)} problem(s)[/red] in {report.n_cases} cases:")
    for problem in report.problems:
        console.print(problem.message, markup=False)
    raise typer.Exit(1)


def _suspicious(run: Path, data: Path | None, top: int, show_files: bool) -> None:
    from rich.progress import Progress

    from dentpy.suspicious import CSV_NAME, IN_SAMPLE_NOTE, n_cases, render, suspicious_labels

    with Progress(transient=True, disable=not sys.stdout.isatty()) as progress:
        task = progress.add_task("scoring cases", total=n_cases(run))
        report = suspicious_labels(run, data, top, on_case=lambda: progress.advance(task))
    console = _console()
    console.print(render(report, top, show_files))
    console.print(f"note: {IN_SAMPLE_NOTE}", markup=False)
    if report.median_score < 0.5:
        console.print(
            f"warning: median {report.score_name} {report.median_score:.2f}: the model itself "
            "is weak, so most cases look suspicious; train longer before trusting the ranking"
        )
    console.print(f"all {len(report.rows)} rows and definitions: {run / CSV_NAME} (+ .json)")
    if not show_files:
        console.print("cases are pseudonyms; add --show-files to see each case's file here")


def print_fingerprint(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    fingerprint = report["fingerprint"]
    table = Table(title=f"{report['dataset']} ({report['layout']} layout)", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("sound cases", f"{fingerprint.get('n_cases', 0)} labelled, "
                  f"{fingerprint.get('n_test_cases', 0)} test/unlabelled")  # fmt: skip
    for key in ("spacing_mm", "shape"):
        stats = fingerprint.get(key)
        if stats:
            table.add_row(key, " / ".join(
                f"{k} {tuple(round(v, 3) for v in stats[k])}" for k in ("min", "median", "max")
            ))  # fmt: skip
    _add_2d_rows(table, fingerprint)
    intensity = fingerprint.get("intensity", {})
    if "percentiles" in intensity:
        values = ", ".join(f"p{k} {v:.0f}" for k, v in intensity["percentiles"].items())
        table.add_row(f"intensity ({intensity.get('region', 'all pixels')})", values)
    for name, share in (fingerprint.get("label_fractions") or {}).items():
        table.add_row(f"label {name}", f"{100 * share:.4f} % of voxels")
    if fingerprint.get("orientations"):
        table.add_row(
            "orientations", ", ".join(f"{k}: {v}" for k, v in fingerprint["orientations"].items())
        )
    console.print(table)


def _add_2d_rows(table: Any, fingerprint: dict[str, Any]) -> None:
    """Rows only 2D fingerprints have: image sizes, storage, class and box counts."""
    size = fingerprint.get("size_wh")
    if size:
        table.add_row("size (w x h px)", " / ".join(
            f"{k} {int(size[k][0])} x {int(size[k][1])}" for k in ("min", "median", "max")
        ))  # fmt: skip
    if fingerprint.get("dtypes"):
        stored = ", ".join(f"{k}: {v}" for k, v in fingerprint["dtypes"].items())
        table.add_row("stored as", stored + f"; channels {fingerprint.get('channels')}")
    if "n_with_pixel_spacing" in fingerprint:
        table.add_row("pixel spacing", f"{fingerprint['n_with_pixel_spacing']} images state one")
    rotated = {k: v for k, v in (fingerprint.get("exif_orientations") or {}).items() if k != "1"}
    if rotated:
        table.add_row("EXIF-rotated", f"{sum(rotated.values())} images (applied on read)")
    for name, count in (fingerprint.get("class_counts") or {}).items():
        table.add_row(f"class {name}", f"{count} images")
    for name, count in (fingerprint.get("box_counts") or {}).items():
        table.add_row(f"boxes {name}", str(count))
    if "n_images_without_boxes" in fingerprint:
        table.add_row("images without boxes", str(fingerprint["n_images_without_boxes"]))


@data_app.command(
    "convert",
    epilog="Example: `dentpy data convert pulpy_data Dataset002_Pulp --to nnunet "
    "--label-map 255=1`",
)
def data_convert(
    source: Annotated[Path, typer.Argument(help="dataset folder to read")],
    destination: Annotated[Path, typer.Argument(help="new folder to write (must not exist)")],
    to: Annotated[
        str, typer.Option(help="nnunet | pulpy (3D); coco | yolo | imagefolder (2D)")
    ] = "nnunet",
    label_map: Annotated[
        list[str] | None,
        typer.Option(
            help="old=new label remapping (repeatable): ids or names for 3D (255=1, pulp=1), "
            "class names for 2D ('Deep Caries=caries')"
        ),
    ] = None,
    layout: Annotated[str, typer.Option(help="layout of the source (default: detect)")] = "auto",
    assume_spacing: Annotated[
        tuple[float, float, float] | None,
        typer.Option(help="voxel size in mm to write instead of the files' own"),
    ] = None,
) -> None:
    """Rewrite a dataset in another layout: 3D as NIfTI with each case's own geometry, 2D
    with images copied byte for byte and boxes in the target's convention. Labels change
    only through --label-map; nothing is overwritten."""
    from dentpy.data.convert import convert_dataset, parse_label_map
    from dentpy.data.convert2d import convert_images
    from dentpy.data.dataset import open_any
    from dentpy.data.samples2d import ImageDataset

    dataset = open_any(source, layout, assume_spacing)
    if isinstance(dataset, ImageDataset):
        written = convert_images(dataset, destination, to, label_map)
    else:
        mapping = parse_label_map(label_map or [], dataset.labels)
        written = convert_dataset(dataset, destination, to, mapping)
    n = len(dataset.records) + len(dataset.test_records)
    typer.echo(f"wrote {n} cases ({dataset.layout} -> {to}) to {written}")


@data_app.command(
    "split",
    epilog="Example: `dentpy data split data/Dataset001_SynthCBCT --val 0.2 --test 0.2 --folds 5`",
)
def data_split(
    path: Annotated[Path, typer.Argument(help="dataset folder")],
    val: Annotated[float, typer.Option(help="share of patients for validation")] = 0.2,
    test: Annotated[float, typer.Option(help="share of patients for the test split")] = 0.2,
    folds: Annotated[int | None, typer.Option(help="also write K folds (folds.json)")] = None,
    seed: Annotated[int, typer.Option(help="same seed, same split")] = 0,
    layout: Annotated[str, typer.Option(help=LAYOUT_HELP)] = "auto",
) -> None:
    """Write a patient-level splits.json into the dataset (training then uses it), or, if
    the dataset has one, check it: no patient may sit in two splits."""
    from dentpy.data.dataset import open_any
    from dentpy.data.split_files import split_dataset

    report = split_dataset(open_any(path, layout), val, test, seed, folds)
    verb = "checked the dataset's splits.json" if report.source == "checked" else "wrote"
    typer.echo(f"{verb}: no patient is in two splits")
    for name, count in report.counts.items():
        typer.echo(f"  {name:5s} {count:4d} cases, {report.patients[name]:4d} patients")
    for file in report.files:
        typer.echo(f"  {file}")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": False},
    epilog="Examples: `dentpy train spec.yaml` · `dentpy train spec.yaml optimizer.lr=3e-4 "
    "train.iterations=500` · `dentpy train spec.yaml --resume` · "
    "`dentpy train spec.yaml --nproc-per-node 4` (4 GPUs, DDP; docs/distributed.md)",
)
def train(
    spec: Annotated[Path, typer.Argument(help="spec YAML (or a run folder to resume)")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key=value overrides, e.g. optimizer.lr=3e-4")
    ] = None,
    name: Annotated[str | None, typer.Option(help="run name (default: the spec's name)")] = None,
    runs: Annotated[Path, typer.Option(help="folder holding run folders")] = Path("runs"),
    resume: Annotated[bool, typer.Option(help="continue the run exactly where it stopped")] = False,
    progress: Annotated[bool, typer.Option(help="show the progress bar")] = True,
    nproc_per_node: Annotated[
        int,
        typer.Option(
            min=1,
            help="processes (GPUs) on this machine; above 1: data-parallel (DDP) under "
            "torchrun, train.batch_size per process (docs/distributed.md)",
        ),
    ] = 1,
) -> None:
    """Train the model a spec describes; writes a run folder (spec, fingerprint, splits,
    plan, training log, TensorBoard, checkpoints)."""
    from dentpy.engine import distributed
    from dentpy.spec import load_spec
    from dentpy.train import train as run_training

    spec_path = spec / "spec.yaml" if spec.is_dir() else spec
    all_overrides = list(overrides or [])
    if name:
        all_overrides.append(f"name={name}")
    loaded = load_spec(spec_path, all_overrides)
    if nproc_per_node > 1 and not distributed.under_torchrun():
        _run_in_processes(
            ["train", str(spec), *(overrides or []), "--runs", str(runs)]
            + (["--name", name] if name else [])
            + (["--resume"] if resume else [])
            + ([] if progress else ["--no-progress"]),
            nproc_per_node,
        )
    run_dir = spec if spec.is_dir() else runs / loaded.name
    main = distributed.launched_rank() == 0
    out = run_training(loaded, run_dir=run_dir, resume=resume, show_progress=progress and main)
    _end_ranks(lambda: _report_training(out))  # rank 0 alone reports and syncs the trackers


def _run_in_processes(arguments: list[str], processes: int) -> NoReturn:
    """`dentpy ARGUMENTS` again in `processes` processes under torchrun; exits with its code."""
    from dentpy.engine import distributed

    code = distributed.relaunch(arguments, processes)
    if code:
        typer.secho(f"error: `dentpy {arguments[0]}` in {processes} processes failed", err=True)
    raise typer.Exit(code)


def _end_ranks(report: Callable[[], None]) -> None:
    """After a command's work: leave the process group, rank 0 (or the one process) runs
    `report`, and a rank of several ends through `distributed.end_process`."""
    from dentpy.engine import distributed

    several = distributed.active()
    distributed.leave()
    if distributed.launched_rank() == 0:
        report()
    if several:
        distributed.end_process()


def _report_training(out: Path) -> None:
    """What `dentpy train` prints when a run ends, and the trackers' sync."""
    from dentpy.train import pacing_line, peak_memory_line

    summary = json.loads((out / "train_summary.json").read_text())
    typer.echo(
        f"run folder: {out}\n  best validation {summary.get('selected_by', 'Dice')} "
        f"{summary['best_validation_score']:.3f} "
        f"after {summary['iterations']} iterations ({summary['seconds']} s on "
        f"{summary['device']})\n  next: dentpy evaluate {out}"
    )
    plan_file = out / "plan.json"
    plan = json.loads(plan_file.read_text()) if plan_file.is_file() else {}
    for line in (pacing_line(summary), peak_memory_line(summary, plan)):
        if line:
            typer.echo(f"  {line}")
    if summary.get("pretrained"):
        pre = summary["pretrained"]
        typer.echo(
            f"  started from pretrained {pre['file']} (sha256 {pre['sha256'][:12]}): "
            f"{pre['tensors_loaded']} tensors loaded, {len(pre['tensors_skipped'])} skipped"
        )
    sync_trackers(out)


@app.command(
    "lr-find",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": False},
    epilog="Examples: `dentpy lr-find spec.yaml` · `dentpy lr-find spec.yaml optimizer.name=adam "
    "--iterations 200 --min-lr 1e-6 --max-lr 1 --out lr-find` · then `dentpy train spec.yaml "
    "optimizer.lr=3e-4`, or let `optimizer.lr=auto` run it inside `dentpy train`",
)
def lr_find(
    spec: Annotated[Path, typer.Argument(help="spec YAML")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key=value overrides, e.g. optimizer.name=adam")
    ] = None,
    out: Annotated[Path, typer.Option(help="folder for lr_find.png and lr_find.json")] = Path(
        "lr-find"
    ),
    iterations: Annotated[
        int | None,
        typer.Option(min=10, help="steps of the test (default: optimizer.lr_find_iterations)"),
    ] = None,
    min_lr: Annotated[
        float | None, typer.Option(help="first LR (default: optimizer.lr_find_min_lr)")
    ] = None,
    max_lr: Annotated[
        float | None, typer.Option(help="last LR (default: optimizer.lr_find_max_lr)")
    ] = None,
) -> None:
    """Learning-rate range test: a short run on the spec's training batches with the LR
    rising exponentially; plots the smoothed loss against the LR and suggests an LR (the
    loss minimum's LR / 10). Writes only lr_find.png and lr_find.json; no run folder, no
    weights kept."""
    from dentpy.errors import SpecError
    from dentpy.lr_find import lr_find_for_spec
    from dentpy.spec import load_spec

    loaded = load_spec(spec, list(overrides or []))
    low = min_lr or loaded.optimizer.lr_find_min_lr
    high = max_lr or loaded.optimizer.lr_find_max_lr
    if not 0 < low < high:
        raise SpecError(
            "the LR range is empty",
            expected="0 < --min-lr < --max-lr",
            found=f"--min-lr {low:g}, --max-lr {high:g}",
            fix="e.g. --min-lr 1e-7 --max-lr 1",
        )
    result = lr_find_for_spec(loaded, out, iterations, low, high)
    ended = "the loss diverged" if result.stopped_early else "the LR range ended"
    typer.echo(
        f"suggested lr: {result.suggestion:.3g} ({result.rule})\n"
        f"  tested {len(result.lrs)} LRs from {result.lrs[0]:.3g} to {result.lrs[-1]:.3g}, "
        f"stopped because {ended}\n"
        f"  wrote {out / 'lr_find.png'} and {out / 'lr_find.json'}\n"
        f"  next: dentpy train {spec} optimizer.lr={result.suggestion:.3g}"
    )
    if not result.loss_fell:
        typer.echo(
            "  warning: the loss never fell (its minimum is at the start of the sweep), so "
            "this suggestion means little: try more --iterations or a lower --min-lr"
        )


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": False},
    epilog="Examples: `dentpy pretrain spec.yaml pretrain.iterations=300` · then "
    "`dentpy train spec.yaml model.pretrained=runs/pulp-cbct-pretrain`",
)
def pretrain(
    spec: Annotated[Path, typer.Argument(help="spec YAML (its data, model and pretrain sections)")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="key=value overrides, e.g. pretrain.iterations=300"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="output folder (default: runs/NAME-pretrain)")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show the progress bar")] = True,
    nproc_per_node: Annotated[
        int,
        typer.Option(
            min=1,
            help="processes (GPUs) on this machine; above 1: data-parallel (DDP) under "
            "torchrun, pretrain.batch_size per process (docs/distributed.md)",
        ),
    ] = 1,
) -> None:
    """Self-supervised pretraining on images only (training split + input.unlabeled; labels,
    validation and test cases are never used): masked-volume reconstruction for 3D
    segmentation, contrastive (SimCLR) for 2D classification. Writes encoder.safetensors
    for `model.pretrained`."""
    from dentpy.engine import distributed
    from dentpy.pretrain.run import pretrain as run_pretrain
    from dentpy.spec import load_spec

    loaded = load_spec(spec, list(overrides or []))
    if nproc_per_node > 1 and not distributed.under_torchrun():
        _run_in_processes(
            ["pretrain", str(spec), *(overrides or [])]
            + (["--out", str(out)] if out else [])
            + ([] if progress else ["--no-progress"]),
            nproc_per_node,
        )
    folder = run_pretrain(loaded, out, show_progress=progress)
    _end_ranks(lambda: _report_pretraining(folder, spec))


def _report_pretraining(folder: Path, spec: Path) -> None:
    """What `dentpy pretrain` prints when it ends."""
    record = json.loads((folder / "pretrain.json").read_text())
    typer.echo(
        f"pretraining folder: {folder}\n  {record['method']}: loss {record['first_loss']:.4f} "
        f"-> {record['final_loss']:.4f} over {record['iterations']} iterations "
        f"({record['seconds']} s on {record['device']})\n"
        f"  next: dentpy train {spec} model.pretrained={folder}"
    )


@app.command(epilog="Example: `dentpy evaluate runs/pulp-cbct --split test`")
def evaluate(
    run: Annotated[Path, typer.Argument(help="run folder")],
    split: Annotated[str, typer.Option(help="test | val | train")] = "test",
    checkpoint: Annotated[str, typer.Option(help="best (chosen on val) | last")] = "best",
) -> None:
    """Segmentation: Dice, IoU, HD95 (mm), precision, recall, specificity and volumes per
    case and class, next to a threshold baseline. Classification: ROC-AUC, sensitivity,
    specificity, kappa... with patient-bootstrap 95% CIs, next to majority and
    intensity-feature baselines. Detection: COCO AP@[.50:.95], AP50, AP75 per class, and
    precision/recall/F1 at the confidence chosen on validation, next to blob boxes."""
    from dentpy.evaluate_classification import is_classification_run
    from dentpy.evaluate_detection import is_detection_run

    if is_detection_run(run):
        from dentpy.evaluate_detection import evaluate_detection, render_detection_summary

        result = evaluate_detection(run, split=split, checkpoint=checkpoint)
        console = _console()
        console.print(render_detection_summary(result))
        console.print(f"per-image table, summary and pictures: {run / 'evaluation' / split}")
        sync_trackers(run)
        return
    if is_classification_run(run):
        from dentpy.evaluate_classification import (
            evaluate_classification,
            render_classification_summary,
        )

        result = evaluate_classification(run, split=split, checkpoint=checkpoint)
        console = _console()
        console.print(render_classification_summary(result))
        if result["output"] == "binary":
            console.print(result["threshold_policy"])
        console.print(result["confidence_intervals"])
        console.print(f"per-image table, summary and pictures: {run / 'evaluation' / split}")
        sync_trackers(run)
        return
    from dentpy.evaluate import EMPTY_MASK_POLICY, HD95_DEFINITION, evaluate_run, render_summary

    summary = evaluate_run(run, split=split, checkpoint=checkpoint)
    console = _console()
    if "instances" in summary:
        from dentpy.evaluate_instances import render_instance_summary

        # One row per tooth would be 16-64 rows: teeth are summarised per family instead,
        # and listed one by one in per_tooth.csv.
        numbered = set(summary["instances"]["classes"])
        others = [row for row in summary["model"] if row["class"] not in numbered]
        if others:
            console.print(render_summary({**summary, "model": others}))
        console.print(render_instance_summary(summary["instances"]))
    else:
        console.print(render_summary(summary))
    console.print(HD95_DEFINITION)
    console.print(EMPTY_MASK_POLICY)
    console.print(f"per-case tables and summary: {run / 'evaluation' / split}")
    sync_trackers(run)


@app.command(epilog="Example: `dentpy predict runs/pulp-cbct scan.nii.gz --out predictions`")
def predict(
    run: Annotated[Path, typer.Argument(help="run folder")],
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="volumes (NIfTI/MHA/NRRD), DICOM series folders, 2D images (PNG/JPEG/TIFF/"
            "DICOM), or folders of them"
        ),
    ],
    out: Annotated[Path, typer.Option(help="output folder")] = Path("predictions"),
    keep_largest: Annotated[
        list[str] | None,
        typer.Option(
            help="class to reduce to its largest connected component (repeatable); "
            "default: the spec's postprocess.keep_largest"
        ),
    ] = None,
    checkpoint: Annotated[str, typer.Option(help="best | last")] = "best",
    overlay: Annotated[bool, typer.Option(help="also write NAME_overlay.png")] = False,
    explain: Annotated[
        bool, typer.Option(help="classification: also write a Grad-CAM NAME_cam.png")
    ] = False,
    report: Annotated[
        bool,
        typer.Option(
            help="tooth-numbering runs: also write NAME_teeth.csv and NAME_teeth.json (per "
            "FDI tooth: volume, pulp volume, pulp/tooth ratio, apex-to-canal mm, findings)"
        ),
    ] = False,
) -> None:
    """Segmentation: segment new scans; each output is NIfTI with exactly the input's shape
    and affine. Classification: predictions.csv with the class and every probability.
    Detection: predictions_coco.json and yolo/NAME.txt with boxes in each image's pixels."""
    from dentpy.evaluate_classification import is_classification_run
    from dentpy.evaluate_detection import is_detection_run

    if is_detection_run(run):
        from dentpy.predict_detection import predict_boxes

        paths = predict_boxes(run, inputs, out, checkpoint=checkpoint, overlay=overlay)
        typer.echo(f"wrote {paths[0]} and {len(paths) - 1} per-image file(s) in {out}")
        return

    if is_classification_run(run):
        from dentpy.predict_classification import predict_images

        table = predict_images(run, inputs, out, checkpoint=checkpoint, explain=explain)
        typer.echo(f"wrote {table}" + ("  (+ <image>_cam.png per image)" if explain else ""))
        return
    from dentpy.inference import predict_files

    written = predict_files(
        run,
        inputs,
        out,
        keep_largest=keep_largest,
        checkpoint=checkpoint,
        overlay=overlay,
        report=report,
    )
    extras = [*(["_overlay.png"] if overlay else []), *(["_teeth.csv/.json"] if report else [])]
    for path in written:
        typer.echo(f"wrote {path}" + (f"  (+ {', '.join(extras)})" if extras else ""))


@app.command(epilog="Example: `dentpy volume predictions/scan_seg.nii.gz --instances`")
def volume(
    mask: Annotated[Path, typer.Argument(help="label map (NIfTI/MHA/NRRD)")],
    instances: Annotated[
        bool,
        typer.Option(
            help="one row per connected component; on a map with FDI tooth ids (11-48, "
            "51-85, pulps 100 + FDI) one row per tooth instead: tooth and pulp mm³, "
            "pulp/tooth ratio, root apex to IAN distance"
        ),
    ] = False,
    ian_label: Annotated[
        list[int] | None,
        typer.Option(
            "--ian-label",
            metavar="ID",
            help="label id of an inferior alveolar canal (repeatable), used only for the "
            "per-tooth table of a map with FDI teeth; default: 3 and 4 (ToothFairy2/3)",
        ),
    ] = None,
    csv_path: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            help="also write the per-tooth table (needs --instances and FDI teeth) as CSV; "
            "never overwrites",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Volume per label in voxels and mm³ from the file's own spacing; per tooth (FDI)
    with --instances on a tooth map."""
    from dataclasses import asdict

    from rich.table import Table

    if csv_path is not None:
        if not instances:
            raise typer.BadParameter(
                "--csv writes the per-tooth table; add --instances", param_hint="--csv"
            )
        from dentpy.measure_teeth import refuse_existing_output

        # Checked before measuring too, so a slow measurement never ends in a refused write.
        refuse_existing_output(csv_path)
    if not instances:
        from dentpy.measure import volumes_of_file

        rows = volumes_of_file(mask, instances=instances)
    else:
        from dentpy.data.io import read_label
        from dentpy.measure import volumes_of_map
        from dentpy.measure_teeth import (
            has_fdi_labels,
            tooth_measures,
            tooth_table,
            write_tooth_csv,
        )

        # Read once: the same map gives either the per-tooth table or per-component rows.
        label_map = read_label(mask)
        if has_fdi_labels(label_map.array):
            ian_ids = (3, 4) if ian_label is None else tuple(ian_label)
            try:
                teeth = tooth_measures(label_map.array, label_map.affine, ian_ids)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint="--ian-label") from None
            if csv_path is not None:
                write_tooth_csv(csv_path, teeth)
            if as_json:
                typer.echo(json.dumps([asdict(t) for t in teeth], indent=2))
                return
            _console().print(tooth_table(teeth, f"teeth of {mask.name}"))
            if csv_path is not None:
                typer.echo(f"wrote {csv_path}")
            return
        if csv_path is not None:
            raise typer.BadParameter(
                f"{mask.name} holds no FDI tooth ids (11-48, 51-85) or pulp ids (100 + FDI), "
                "so there is no per-tooth table to write",
                param_hint="--csv",
            )
        rows = volumes_of_map(label_map, instances=True)
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    table = Table(title=f"volumes of {mask.name}")
    columns = ["label", *(["instance"] if instances else []), "voxels", "volume mm³"]
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        values = [str(row.label), *([str(row.instance)] if instances else [])]
        table.add_row(*values, str(row.voxels), f"{row.volume_mm3:.2f}")
    _console().print(table)


@app.command(epilog="Example: `dentpy demo --out dentpy-demo --minutes 8`")
def demo(
    out: Annotated[Path, typer.Option(help="folder for data, run and outputs")] = Path(
        "dentpy-demo"
    ),
    minutes: Annotated[float, typer.Option(help="cap on training time")] = 8.0,
    cases: Annotated[int, typer.Option(help="synthetic training cases")] = 24,
    seed: Annotated[int, typer.Option(help="synthetic data and training seed")] = 0,
) -> None:
    """Synthesise a small CBCT dataset, train pulp + IAN segmentation for a few minutes on
    the CPU, evaluate against a threshold baseline, predict a new scan, measure volumes."""
    from dentpy.demo import run_demo

    run_demo(out, minutes=minutes, cases=cases, seed=seed, console=_console())


# Evaluation, reporting, export and tracking commands live in their own modules.
for _module in (cli_plan, cli_compare, cli_describe, cli_report, cli_export, cli_track):
    _module.register(app)


def main() -> None:
    try:
        app()
    except DentpyError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
