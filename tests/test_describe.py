"""`dentpy describe`: the pipeline from raw data to outputs, as text and as an SVG diagram.

Every template is described without data (shapes from the spec, channel counts from the
task) and the network's shapes are checked against what the spec implies; a tiny real run
checks that --run takes classes and spacing from its plan.json and fingerprint.json.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.describe import STAGE_KEYS, Pipeline, Stage, describe_pipeline
from dentpy.init import TEMPLATES
from dentpy.report.diagram import pipeline_svg
from dentpy.spec import Spec, load_spec

runner = CliRunner()
SVG = "{http://www.w3.org/2000/svg}"
STAGE_TITLES = (
    "Input data",
    "Preprocessing",
    "Sampling & augmentation",
    "Network",
    "Training",
    "Decoding",
    "Postprocessing",
    "Outputs",
    "Evaluation",
)
MISSING_DATA = "no-such-dataset"


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def init_spec(template: str, folder: Path) -> Path:
    out = folder / f"{template}.yaml"
    invoke("init", "--template", template, "--data", MISSING_DATA, "--out", str(out))
    return out


def svg_texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return [element.text or "" for element in root.iter(f"{SVG}text")]


def expected_model_shapes(spec: Spec) -> tuple[str, str]:
    """(input, output) shape text the spec implies, worked out independently of
    dentpy.describe: batch from train, spatial size from the patch / image size, output
    channels from the task's definition (None where the dataset decides)."""
    batch = spec.train.batch_size
    output = spec.objective.output
    classes = None if spec.objective.classes == "auto" else list(spec.objective.classes)
    if spec.objective.task == "segmentation":
        spatial = tuple(spec.train.patch_size)
        # Instance classes are the dataset's FDI teeth: unknown without data.
        channels: int | str = "C+1" if output == "instance" else len(classes or []) + 1
        return _tuple((batch, 1, *spatial)), _tuple((batch, channels, *spatial))
    height, width = spec.preprocess.image_size
    source = _tuple((batch, 1, height, width))
    if spec.objective.task == "classification":
        if output == "binary":
            channels = 2  # exactly two classes, one softmax logit each
        elif spec.loss.name == "coral":
            channels = len(classes or []) - 1  # cumulative logits P(grade > k)
        else:
            channels = len(classes or [])
        return source, _tuple((batch, channels))
    # Detection: C heatmaps + 2 sizes + 2 offsets on a grid a quarter of the input.
    return source, _tuple((batch, "C+4", height // 4, width // 4))


def _tuple(values: tuple[object, ...]) -> str:
    return "(" + ", ".join(str(v) for v in values) + ")"


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_every_template_gets_a_valid_self_contained_diagram(template: str, tmp_path: Path) -> None:
    spec_path = init_spec(template, tmp_path)
    first, second = tmp_path / "first.svg", tmp_path / "second.svg"
    output = invoke("describe", str(spec_path), "--diagram", str(first))
    invoke("describe", str(spec_path), "--diagram", str(second))
    svg = first.read_text(encoding="utf-8")
    assert svg == second.read_text(encoding="utf-8"), "the same spec must give the same bytes"

    texts = svg_texts(svg)
    joined = " ".join(texts)  # wrapped lines were split at spaces
    for title in STAGE_TITLES:
        assert any(title in text for text in texts), f"stage {title!r} missing from the SVG"
        assert title in output
    source, result = expected_model_shapes(load_spec(spec_path))
    assert f"{source} → {result}" in joined, (source, result, joined)
    assert f"{source} → {result}" in output
    # Self-contained and shareable: only the SVG namespace URL, no scripts or links, and
    # neither the dataset's path nor its folder name.
    assert svg.count("http") == 1 and 'xmlns="http://www.w3.org/2000/svg"' in svg
    assert "<script" not in svg and "href" not in svg and "@import" not in svg
    assert str(tmp_path) not in svg and MISSING_DATA not in svg
    assert "from the dataset when it exists" in joined
    # Fits a report page and stays readable at 100% zoom.
    root = ET.fromstring(svg)
    assert int(root.get("width", "0")) <= 1100
    sizes = [float(e.get("font-size", "0")) for e in root.iter(f"{SVG}text")]
    assert sizes and min(sizes) >= 12


def test_the_model_stage_holds_real_forward_shapes(tmp_path: Path) -> None:
    spec = load_spec(init_spec("teeth-cbct", tmp_path))  # classes [tooth, pulp]
    pipeline = describe_pipeline(spec)
    assert [stage.key for stage in pipeline.stages] == list(STAGE_KEYS)
    model = pipeline.stage("model")
    assert model.shape == "(2, 1, 96, 96, 96) → (2, 3, 96, 96, 96)"
    assert "3 channels = background + 2 classes" in model.details
    assert pipeline.stage("augment").training_only and pipeline.stage("training").training_only
    assert not pipeline.stage("model").training_only


def test_unusual_text_is_escaped_and_wrapped_inside_the_page() -> None:
    long_word = "x" * 200
    stage = Stage("input", "A <b> & 'c'", ("a < b && c > d", long_word), "(1, 2) → (3, 4)")
    pipeline = Pipeline("title & <more>", "sub", (stage,) * 4, "the spec")
    svg = pipeline_svg(pipeline)
    texts = svg_texts(svg)
    assert "a < b && c > d" in "\n".join(texts)
    # The 200-character word is cut into lines that each fit a box (0.6 em per x at most).
    pieces = [t for t in texts if t and set(t) == {"x"}]
    assert sum(len(t) for t in pieces) == 4 * 200 and len(pieces) > 4


def test_an_existing_diagram_is_not_overwritten_without_force(tmp_path: Path) -> None:
    spec_path = init_spec("caries-binary", tmp_path)
    target = tmp_path / "pipeline.svg"
    target.write_text("keep me")
    refused = runner.invoke(app, ["describe", str(spec_path), "--diagram", str(target)])
    assert refused.exit_code == 2
    assert "already exists" in refused.output and "--force" in refused.output
    assert target.read_text() == "keep me"
    invoke("describe", str(spec_path), "--diagram", str(target), "--force")
    assert target.read_text().startswith("<svg")


def test_a_missing_or_broken_spec_is_a_clear_error(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["describe", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
    assert "spec file not found" in missing.output and "dentpy init" in missing.output
    assert "Traceback" not in missing.output

    typo = tmp_path / "typo.yaml"
    typo.write_text("objective:\n  taks: segmentation\n")
    broken = runner.invoke(app, ["describe", str(typo)])
    assert broken.exit_code == 2
    assert "unknown key 'objective.taks'" in broken.output
    assert "did you mean 'task'?" in broken.output


def test_run_without_a_plan_is_refused(tmp_path: Path) -> None:
    spec_path = init_spec("pulp-cbct", tmp_path)
    result = runner.invoke(app, ["describe", str(spec_path), "--run", str(tmp_path)])
    assert result.exit_code == 2
    assert "no plan.json" in result.output


# ---------------------------------------------------------------------------------------
# A real tiny run: classes, spacing and shapes come from its plan.json and fingerprint.json

TINY = [
    "train.iterations=2",
    "train.validate_every=2",
    "train.patch_size=[32, 32, 32]",
    "model.channels=[8, 16, 32]",
    "train.sw_batch_size=2",
    "objective.classes=auto",
    "evaluation.baselines=[]",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("describe-run")
    previous = os.environ.get("DENTPY_CACHE")
    os.environ["DENTPY_CACHE"] = str(root / "cache")
    try:
        invoke("synth", "cbct", "--out", str(root / "data"), "--cases", "4")
        spec = root / "spec.yaml"
        invoke(
            "init",
            "--template",
            "pulp-cbct",
            "--data",
            "data/Dataset001_SynthCBCT",
            "--out",
            str(spec),
        )
        invoke("train", str(spec), *TINY, "--runs", str(root / "runs"), "--no-progress")
    finally:
        if previous is None:
            os.environ.pop("DENTPY_CACHE", None)
        else:
            os.environ["DENTPY_CACHE"] = previous
    return root / "runs" / "pulp-cbct"


@pytest.mark.slow
def test_with_run_the_classes_and_spacing_come_from_plan_json(
    tiny_run: Path, tmp_path: Path
) -> None:
    plan = json.loads((tiny_run / "plan.json").read_text())
    fingerprint = json.loads((tiny_run / "fingerprint.json").read_text())
    classes = plan["task"]["class_names"]
    assert len(classes) >= 3  # every synthetic label: the spec alone cannot know them
    # A spec without data and with classes: auto; only the run can tell the classes.
    data = yaml.safe_load((tiny_run / "spec.yaml").read_text())
    data["input"]["data"] = MISSING_DATA
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(data))

    alone = describe_pipeline(load_spec(spec_path))
    assert alone.stage("model").shape == "(2, 1, 32, 32, 32) → (2, C+1, 32, 32, 32)"

    svg_path = tmp_path / "run.svg"
    output = invoke("describe", str(spec_path), "--run", str(tiny_run), "--diagram", str(svg_path))
    channels = len(classes) + 1
    assert f"(2, 1, 32, 32, 32) → (2, {channels}, 32, 32, 32)" in output
    spacing = " × ".join(f"{v:g}" for v in plan["preprocess"]["target_spacing_mm"])
    assert f"resample to {spacing} mm (the run's plan)" in output
    shape = tuple(int(v) for v in fingerprint["shape"]["median"])
    assert f"(I, J, K) = {_tuple(shape)}" in output
    texts = "\n".join(svg_texts(svg_path.read_text()))
    assert f"→ (2, {channels}, 32, 32, 32)" in texts
    assert "shapes from the run" in texts

    # The run folder alone works too (its own spec.yaml and plan.json).
    folder = invoke("describe", str(tiny_run))
    assert f"→ (2, {channels}, 32, 32, 32)" in folder
