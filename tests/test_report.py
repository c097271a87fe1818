"""`dentpy report`: one self-contained HTML page per run, for every task.

Structure without a browser: the sections of each task, no network reference, no script,
no dataset path or file name, the numbers equal to the evaluation's, the refusals; and the
pure helpers (escaping, case picking, intervals) on closed-form inputs. The reports are
written once per session from the shared tiny runs (tests/run_fixtures.py) and reused by
tests/test_report_browser.py.
"""

from __future__ import annotations

import base64
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.errors import CheckpointError, OutputError

slow = pytest.mark.slow

COMMON = (
    "formulation",
    "pipeline",
    "data",
    "training",
    "metrics",
    "cases",
    "examples",
    "environment",
)
EXPECTED_SECTIONS = {
    "segmentation": (*COMMON, "volumes"),
    "instance": (*COMMON, "volumes"),
    "binary": COMMON,
    "severity": COMMON,
    "detection": COMMON,
}


_WRITTEN: dict[str, dict[str, Path]] = {}


class _Collector(HTMLParser):
    """Tags, ids, and every src / href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.links: list[str] = []
        self.sources: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name == "id" and value:
                self.ids.append(value)
            if name == "href" and value is not None:
                self.links.append(value)
            if name in ("src", "xlink:href", "srcset", "data", "poster") and value is not None:
                self.sources.append(value)


def parse(text: str) -> _Collector:
    collector = _Collector()
    collector.feed(text)
    return collector


@pytest.fixture(scope="session")
def report_runs(
    segmentation_runs: tuple[Path, Path],
    instance_run: Path,
    classification_runs: tuple[Path, Path],
    detection_run: Path,
) -> dict[str, Path]:
    return {
        "segmentation": segmentation_runs[0],
        "instance": instance_run,
        "binary": classification_runs[0],
        "severity": classification_runs[1],
        "detection": detection_run,
    }


@pytest.fixture(scope="session")
def report_files(
    report_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """kind -> report.html, written through the CLI (outside the shared run folders).

    test_report_browser.py imports this fixture too; pytest would then build it once per
    module, so the written files are kept here and reused."""
    key = str(report_runs["segmentation"])
    if key in _WRITTEN:
        return _WRITTEN[key]
    out = tmp_path_factory.mktemp("reports")
    files = {}
    for kind, run in report_runs.items():
        target = out / f"{kind}.html"
        result = CliRunner().invoke(
            app, ["report", str(run), "--out", str(target)], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        assert str(target) in result.output and "MB" in result.output
        files[kind] = target
    _WRITTEN[key] = files
    return files


@slow
def test_every_task_has_its_sections_and_a_table_of_contents(
    report_files: dict[str, Path],
) -> None:
    for kind, path in report_files.items():
        page = parse(path.read_text(encoding="utf-8"))
        for anchor in EXPECTED_SECTIONS[kind]:
            assert anchor in page.ids, (kind, anchor)
            assert f"#{anchor}" in page.links, (kind, anchor)
        if kind in ("binary", "severity", "detection"):
            assert "volumes" not in page.ids
        assert "svg" in page.tags, kind  # the pipeline diagram, inline


@slow
def test_report_is_self_contained_and_small(report_files: dict[str, Path]) -> None:
    for kind, path in report_files.items():
        text = path.read_text(encoding="utf-8")
        page = parse(text)
        assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
        for link in page.links:
            assert link.startswith("#"), (kind, link)
        assert page.sources, kind
        for source in page.sources:
            assert source.startswith("data:image/png;base64,"), (kind, source[:40])
            png = base64.b64decode(source.split(",", 1)[1])
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "https://" not in text
        assert path.stat().st_size < 5_000_000, (kind, path.stat().st_size)


@slow
def test_no_dataset_path_or_file_name_appears(
    report_runs: dict[str, Path], report_files: dict[str, Path]
) -> None:
    for kind, run in report_runs.items():
        text = report_files[kind].read_text(encoding="utf-8")
        data = Path(yaml.safe_load((run / "spec.yaml").read_text())["input"]["data"])
        assert data.is_dir(), data
        assert str(data) not in text and str(data.resolve()) not in text
        assert data.name not in text
        assert "(withheld: a local path)" in text
        names = {p.name for p in data.rglob("*") if p.is_file()}
        # Stems of numbered files (xray_001, case_0003...): words like "dataset" are fine.
        stems = {
            p.stem
            for p in data.rglob("*")
            if p.is_file() and len(p.stem) >= 6 and any(c.isdigit() for c in p.stem)
        }
        leaked = [n for n in names | stems if n in text]
        assert not leaked, (kind, leaked[:5])


@slow
def test_segmentation_numbers_and_definitions_match_the_evaluation(
    report_runs: dict[str, Path], report_files: dict[str, Path]
) -> None:
    run = report_runs["segmentation"]
    summary = json.loads((run / "evaluation" / "test" / "summary.json").read_text())
    text = report_files["segmentation"].read_text(encoding="utf-8")
    for row in summary["model"]:
        assert f"{row['dice_mean']:.3f} ± {row['dice_sd']:.3f}" in text
        interval = summary["ci95"][row["class"]]["dice"]
        assert f"[{interval['low']:.3f}, {interval['high']:.3f}]" in text
    for row in summary["baselines"]["threshold"]["summary"]:
        assert f"{row['dice_mean']:.3f} ± {row['dice_sd']:.3f}" in text
    assert "threshold baseline" in text
    assert "2TP / (2TP + FP + FN); both masks empty -&gt; 1" in text  # escaped definition
    assert "HD95 = max of the two directed" in text and "Empty masks" in text
    assert "predicted − true (mm³)" not in text  # plot labels live in the PNG, not the page
    assert "true (mm³)" in text and "Volume = voxel count" in text


@slow
def test_instance_report_shows_teeth_and_pulp_families(report_files: dict[str, Path]) -> None:
    text = report_files["instance"].read_text(encoding="utf-8")
    assert "misnumbered" in text and "panoptic quality" in text
    assert ">teeth<" in text and ">pulp<" in text
    assert "No intensity baseline exists for tooth numbering" in text


@slow
def test_classification_shows_cis_baselines_and_evaluate_pictures(
    report_runs: dict[str, Path], report_files: dict[str, Path]
) -> None:
    for kind in ("binary", "severity"):
        run = report_runs[kind]
        summary = json.loads((run / "evaluation" / "test" / "summary.json").read_text())
        text = report_files[kind].read_text(encoding="utf-8")
        for name in summary["baselines"]:
            assert f"{name} baseline" in text
        for key, interval in summary["model"]["ci95"].items():
            if interval["low"] is not None:
                assert f"[{interval['low']:.3f}, {interval['high']:.3f}]" in text, (kind, key)
        embedded = (run / "evaluation" / "test" / "confusion.png").read_bytes()
        assert base64.b64encode(embedded).decode() in text
        assert "Grad-CAM" in text
    binary = report_files["binary"].read_text(encoding="utf-8")
    assert "decision threshold" in binary and "roc_auc" in binary
    assert "quadratic_weighted_kappa" in report_files["severity"].read_text(encoding="utf-8")


@slow
def test_detection_shows_ap_next_to_blob_boxes(
    report_runs: dict[str, Path], report_files: dict[str, Path]
) -> None:
    run = report_runs["detection"]
    summary = json.loads((run / "evaluation" / "test" / "summary.json").read_text())
    text = report_files["detection"].read_text(encoding="utf-8")
    assert "blob_boxes baseline" in text and "AP@[.50:.95]" in text
    assert f"{summary['model']['ap50']:.3f}" in text
    assert f"at the confidence threshold {summary['score_threshold']:.3f}" in text
    assert "COCO AP: mean over IoU thresholds" in text


@slow
def test_report_refuses_an_unevaluated_split(report_runs: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["report", str(report_runs["binary"]), "--split", "val", "--out", str(tmp_path / "r.html")],
    )
    assert isinstance(result.exception, CheckpointError)
    assert f"dentpy evaluate {report_runs['binary']} --split val" in str(result.exception)
    assert not (tmp_path / "r.html").exists()


@slow
def test_report_refuses_to_overwrite_without_force(
    report_runs: dict[str, Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(report_runs["detection"], run)
    default = run / "report" / "report.html"
    default.parent.mkdir()
    default.write_text("keep me")
    result = CliRunner().invoke(app, ["report", str(run)])
    assert isinstance(result.exception, OutputError) and "--force" in str(result.exception)
    assert default.read_text() == "keep me"
    result = CliRunner().invoke(app, ["report", str(run), "--force"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert default.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_not_a_run_folder_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert isinstance(result.exception, CheckpointError)
    assert "not a dentpy run folder" in str(result.exception)


def test_html_escapes_text_and_refuses_an_active_svg() -> None:
    from dentpy.report import html_page as h

    table = h.table(["<b>"], [["<script>alert(1)</script>", ("a&b", "<i>")]], "x<y")
    assert "<script>" not in table and "&lt;script&gt;" in table
    assert "a&amp;b<br>&lt;i&gt;" in table and "x&lt;y" in table
    section = h.Section("metrics", 'say "hi" <now>').render()
    assert 'id="metrics"' in section and "say &quot;hi&quot; &lt;now&gt;" in section
    assert h.raw_svg('<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>').count("<svg") == 1
    for bad in (
        "<svg><script>alert(1)</script></svg>",
        '<svg><rect onclick="x()"/></svg>',
        '<svg><image href="https://example.org/a.png"/></svg>',
        "<div>not svg</div>",
    ):
        with pytest.raises(ValueError):
            h.raw_svg(bad)


def test_best_median_and_worst_case_are_picked_by_score() -> None:
    from dentpy.report.sections_segmentation import best_median_worst, case_scores

    rows = [
        {"case_id": "case-a", "class": "x", "dice": "0.9"},
        {"case_id": "case-a", "class": "y", "dice": "0.5"},  # mean 0.7
        {"case_id": "case-b", "class": "x", "dice": "0.2"},
        {"case_id": "case-b", "class": "y", "dice": "0.0"},  # mean 0.1
        {"case_id": "case-c", "class": "x", "dice": "1.0"},
        {"case_id": "case-c", "class": "y", "dice": "0.8"},  # mean 0.9
    ]
    scores = case_scores(rows)
    assert [c for c, _ in scores] == ["case-c", "case-a", "case-b"]
    assert scores[1][1] == pytest.approx(0.7)
    picked = best_median_worst(scores)
    assert [(r, c) for r, c, _ in picked] == [
        ("best", "case-c"),
        ("median", "case-a"),
        ("worst", "case-b"),
    ]
    assert [r for r, _, _ in best_median_worst(scores[:1])] == ["best, median, worst"]
    assert [(r, c) for r, c, _ in best_median_worst(scores[:2])] == [
        ("best", "case-c"),
        ("median, worst", "case-a"),
    ]


def test_classification_examples_confident_borderline_and_wrong() -> None:
    from dentpy.report.sections_classification import pick_examples

    def row(true: str, predicted: str, p: float) -> dict[str, str]:
        return {"true": true, "predicted": predicted, "p_caries": str(p), "p_sound": str(1 - p)}

    rows = [
        row("caries", "caries", 0.80),
        row("caries", "caries", 0.99),  # most confident correct
        row("sound", "caries", 0.52),  # closest to the threshold 0.5: borderline
        row("caries", "sound", 0.05),  # wrong with confidence 0.95
        row("sound", "caries", 0.70),  # wrong with confidence 0.70
    ]
    picks = pick_examples(rows, ["caries", "sound"], "caries", 0.5)
    assert picks == [("most confident correct", 1), ("borderline", 2), ("most confident wrong", 3)]
    # Multiclass: borderline = smallest margin between the two most probable classes.
    rows3 = [
        {"true": "a", "predicted": "a", "p_a": "0.9", "p_b": "0.05", "p_c": "0.05"},
        {"true": "b", "predicted": "b", "p_a": "0.3", "p_b": "0.36", "p_c": "0.34"},
        {"true": "c", "predicted": "a", "p_a": "0.6", "p_b": "0.1", "p_c": "0.3"},
    ]
    assert pick_examples(rows3, ["a", "b", "c"], None, 0.5) == [
        ("most confident correct", 0),
        ("borderline", 1),
        ("most confident wrong", 2),
    ]


def test_operating_point_interval_of_identical_images_is_the_point() -> None:
    from dentpy.report.sections_detection import operating_point_cis

    rows = [{"tp": "3", "fp": "1", "fn": "2"}] * 6  # F1 = 6 / 9 in every resample
    cis = operating_point_cis(rows, n_boot=50)
    assert cis["f1"]["low"] == pytest.approx(6 / 9) and cis["f1"]["high"] == pytest.approx(6 / 9)
    assert cis["precision"]["low"] == pytest.approx(0.75)
    empty = operating_point_cis([{"tp": "0", "fp": "0", "fn": "2"}] * 3, n_boot=20)
    assert empty["precision"]["low"] is None  # undefined everywhere: no interval invented
    assert empty["recall"]["high"] == 0.0


def test_spec_paths_are_withheld() -> None:
    from dentpy.report.sections_common import redacted_spec

    spec = {
        "input": {"data": "/secret/Patients/Dataset001", "unlabeled": "rel/dir", "layout": "auto"},
        "model": {"pretrained": "~/weights/model.safetensors", "name": "unet"},
    }
    clean = redacted_spec(spec)
    assert "secret" not in json.dumps(clean) and "weights" not in json.dumps(clean)
    assert clean["input"]["layout"] == "auto" and clean["model"]["name"] == "unet"
    assert spec["input"]["data"] == "/secret/Patients/Dataset001"  # the input is untouched


@slow
def test_a_moved_dataset_leaves_a_note_and_no_path(
    report_runs: dict[str, Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(report_runs["detection"], run)
    spec = yaml.safe_load((run / "spec.yaml").read_text())
    spec["input"]["data"] = str(tmp_path / "Secret_Patient_Folder")  # no longer there
    (run / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        app, ["report", str(run), "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert "No example pictures: the run&#x27;s dataset could not be read" in text
    assert "Secret_Patient_Folder" not in text
    assert 'id="metrics"' in text and "blob_boxes baseline" in text
