"""`dentpy report RUN`: one self-contained HTML page about a trained, evaluated run.

The page is built from what the run folder already holds (spec, fingerprint, training
log, the evaluation of one split) plus a fresh prediction of three example cases. It
embeds every picture as a data: URI and loads nothing from the network, so it can be
mailed or archived as one file. Dataset paths and file names never enter it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from dentpy.errors import OutputError
from dentpy.report import html_page as h
from dentpy.report.run_inputs import RunInputs, load_run_inputs

REPORT_NAME = Path("report") / "report.html"
SectionMaker = Callable[[RunInputs], h.Section]

TASK_TITLES = {
    "segmentation": "3D segmentation",
    "instance": "3D instance segmentation (FDI teeth and pulps)",
    "classification": "classification",
    "detection": "detection",
}


def section_makers(kind: str) -> list[SectionMaker]:
    """The sections of a report, in reading order, for one kind of run."""
    from dentpy.report import sections_common as common

    head: list[SectionMaker] = [
        common.formulation_section,
        common.pipeline_section,
        common.data_section,
        common.training_section,
    ]
    tail: list[SectionMaker] = [common.environment_section]
    if kind in ("segmentation", "instance"):
        from dentpy.report import sections_segmentation as seg

        body: list[SectionMaker] = [
            seg.metrics_section,
            seg.cases_section,
            seg.examples_section,
            seg.volumes_section,
        ]
    elif kind == "classification":
        from dentpy.report import sections_classification as clf

        body = [clf.metrics_section, clf.cases_section, clf.examples_section]
    else:
        from dentpy.report import sections_detection as det

        body = [det.metrics_section, det.cases_section, det.examples_section]
    return head + body + tail


def render_report(run_dir: Path, split: str = "test") -> str:
    """The report's HTML text (nothing written)."""
    inputs = load_run_inputs(Path(run_dir), split)
    sections = [make(inputs) for make in section_makers(inputs.kind)]
    name = inputs.spec.get("name") or inputs.root.name
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    document = h.page(
        f"dentpy report: {name}",
        f"{TASK_TITLES.get(inputs.kind, inputs.kind)} · evaluated on the {split} split · "
        f"written {created}",
        sections,
        "Written by `dentpy report`. Case ids are pseudonyms (case-…); no dataset path, file "
        "name or patient identifier is included. Numbers come from the run folder's "
        f"evaluation/{split} files.",
    )
    for location in inputs.dataset_locations():
        if location and location in document:
            raise OutputError(
                f"the report of {inputs.root.name} would contain the dataset's location",
                expected="no local path in a report meant to be shared",
                found="the dataset path in the rendered page",
                fix="please report this as a dentpy bug; the report was not written",
            )
    return document


def write_report(
    run_dir: str | Path, split: str = "test", out: str | Path | None = None, force: bool = False
) -> Path:
    """Write the report (default RUN/report/report.html); refuses to replace a file unless
    `force`. Returns the path written."""
    run_dir = Path(run_dir)
    target = Path(out) if out is not None else run_dir / REPORT_NAME
    if target.exists() and not force:
        raise OutputError(
            f"{target} already exists",
            expected="a new file name, or --force to replace the report",
            found="an existing file",
            fix=f"pass --out another.html, or `dentpy report {run_dir} --force`",
        )
    document = render_report(run_dir, split)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(document, encoding="utf-8")
        temporary.replace(target)
    except OSError as exc:
        raise OutputError(
            f"could not write the report {target.name}",
            expected="a writable folder",
            found=str(exc),
            fix="choose another --out, or check permissions and free space",
        ) from None
    return target
