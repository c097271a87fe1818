"""`dentpy export`: ONNX and TorchScript files that predict what dentpy predicts, a model
card that holds the run's own preprocessing values and evaluation CIs (and no dataset
paths), and refusals (overwrite, not a run, an export that disagrees with PyTorch).

Runs come from the session fixtures of tests/run_fixtures.py; exports go to temporary
folders so those runs stay untouched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.errors import CheckpointError, OutputError

# torch.jit.load warns that TorchScript is deprecated; the cards record it (tested below).
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")]
runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def card_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "model_card.json").read_text())


@pytest.fixture(scope="module")
def segmentation_exports(
    segmentation_runs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """seg-a exported with the default ONNX exporter (dynamo) and as TorchScript."""
    run = segmentation_runs[0]
    root = tmp_path_factory.mktemp("seg-export")
    invoke("export", str(run), "--format", "onnx", "--out", str(root / "onnx"))
    invoke("export", str(run), "--format", "torchscript", "--out", str(root / "ts"))
    return {"onnx": root / "onnx", "torchscript": root / "ts"}


@pytest.fixture(scope="module")
def classification_exports(
    classification_runs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The binary run through the legacy ONNX exporter (the seg test covers dynamo) and
    TorchScript; the ordinal (CORAL) run through TorchScript."""
    binary, severity = classification_runs
    root = tmp_path_factory.mktemp("cls-export")
    invoke("export", str(binary), "--exporter", "legacy", "--out", str(root / "onnx"))
    invoke("export", str(binary), "--format", "torchscript", "--out", str(root / "ts"))
    invoke("export", str(severity), "--format", "torchscript", "--out", str(root / "ordinal"))
    return {"onnx": root / "onnx", "torchscript": root / "ts", "ordinal": root / "ordinal"}


def _test_volume(run: Path) -> Path:
    data = run.parent.parent / "data" / "Dataset001_SynthCBCT" / "imagesTs"
    return sorted(data.glob("*.nii.gz"))[0]


def test_exported_segmentation_predicts_what_dentpy_predicts(
    segmentation_runs: tuple[Path, Path], segmentation_exports: dict[str, Path]
) -> None:
    from dentpy.data.io import read_image
    from dentpy.engine.run import load_trained
    from dentpy.export import ExportedModel
    from dentpy.inference import predict_volume, sliding_window_probabilities
    from dentpy.preprocess import prepare_image

    run = segmentation_runs[0]
    image = read_image(_test_volume(run))
    trained = load_trained(run)
    patch, sw = trained.spec.train.patch_size, trained.spec.train.sw_batch_size
    network, _ = prepare_image(image, trained.plan)
    reference = sliding_window_probabilities(trained.model, network, patch, trained.device, sw)
    labels = predict_volume(trained.model, image, trained.plan, patch, trained.device, sw)
    for fmt, folder in segmentation_exports.items():
        result = ExportedModel.load(folder).predict_case(image, postprocess=False)
        assert result.probabilities.shape == tuple(reference.shape), fmt
        # Both sides blend the same windows; only the network kernels differ (~1e-6).
        assert np.abs(result.probabilities - reference.numpy()).max() <= 1e-4, fmt
        assert result.class_map.array.shape == image.array.shape
        assert np.array_equal(result.class_map.affine, image.affine)
        agreement = float((result.class_map.array == labels.array).mean())
        assert agreement >= 0.9999, (fmt, agreement)


def test_segmentation_card_holds_the_runs_preprocessing_and_cis(
    segmentation_runs: tuple[Path, Path], segmentation_exports: dict[str, Path]
) -> None:
    from dentpy.export.runner import sha256_of

    run = segmentation_runs[0]
    plan = json.loads((run / "plan.json").read_text())
    summary = json.loads((run / "evaluation" / "test" / "summary.json").read_text())
    card = card_of(segmentation_exports["onnx"])
    assert card["task"] == "segmentation" and card["run"] == "seg-a"
    prep = card["preprocessing"]
    assert prep["target_spacing_mm"] == plan["preprocess"]["target_spacing_mm"]
    assert prep["clip_percentiles"] == plan["preprocess"]["clip_percentiles"]
    assert prep["patch_size"] == [32, 32, 32]
    window = prep["sliding_window"]
    assert (window["roi_size"], window["sw_batch_size"]) == ([32, 32, 32], 2)
    assert (window["overlap"], window["mode"]) == (0.5, "gaussian")
    assert [(c["name"], c["label_ids"]) for c in card["classes"]] == [
        ("background", [0]),
        ("left_ian", [2]),
        ("right_ian", [3]),
    ]
    assert summary["ci95"], "the evaluation should hold CIs"
    for row in summary["model"]:
        name = row["class"]
        dice = card["metrics"]["per_class"][name]["metrics"]["dice"]
        assert dice["mean"] == row["dice_mean"]
        assert dice["ci95"]["low"] == summary["ci95"][name]["dice"]["low"]
        assert dice["ci95"]["high"] == summary["ci95"][name]["dice"]["high"]
    export = card["export"]
    assert export["sha256"] == sha256_of(segmentation_exports["onnx"] / "model.onnx")
    assert "dynamo" in export["exporter"] and isinstance(export["opset"], int)
    assert export["spatial_axes"] == "dynamic"
    assert export["verification"]["max_abs_diff"] <= export["verification"]["tolerance"] < 1e-2
    assert card["training"]["iterations"] == 4
    assert card["intended_use"]["synthetic_training_data"] is True
    markdown = (segmentation_exports["onnx"] / "model_card.md").read_text()
    assert "not a medical device" in markdown.lower() and "SYNTHETIC" in markdown
    script_card = card_of(segmentation_exports["torchscript"])
    assert any("deprecated" in note for note in script_card["export"]["notes"])


def test_cards_hold_no_dataset_paths_or_file_names(
    segmentation_runs: tuple[Path, Path],
    segmentation_exports: dict[str, Path],
    classification_exports: dict[str, Path],
    xray_data: Path,
) -> None:
    cbct = _test_volume(segmentation_runs[0]).parent.parent
    names = {p.name.split(".")[0] for p in cbct.rglob("*.nii.gz")}
    names |= {p.stem for p in (xray_data / "caries_binary").rglob("*.png")}
    assert len(names) > 20
    folders = [*segmentation_exports.values(), *classification_exports.values()]
    for folder in folders:
        for text in (
            (folder / "model_card.json").read_text(),
            (folder / "model_card.md").read_text(),
        ):
            for forbidden in (str(cbct), str(xray_data), "Dataset001_SynthCBCT", "XraySynth"):
                assert forbidden not in text, (folder.name, forbidden)
            leaked = [name for name in names if name in text]
            assert not leaked, (folder.name, leaked[:3])


def _classifier_reference(run: Path, images: list[Path]) -> tuple[np.ndarray, Any]:
    from dentpy.data.image2d_io import read_any
    from dentpy.data.prepare2d import to_network
    from dentpy.evaluate_classification import load_classifier
    from dentpy.train_classification import predict_probabilities

    trained = load_classifier(run)
    batch = np.stack(
        [
            to_network(read_any(p, mask=False), trained.image_size, trained.clip_percentiles, "x")
            for p in images
        ]
    )
    probs = predict_probabilities(trained.model, trained.task, batch, trained.device, None)
    return probs, trained.task


def test_exported_classifiers_predict_what_dentpy_predicts(
    classification_runs: tuple[Path, Path],
    classification_exports: dict[str, Path],
    xray_data: Path,
) -> None:
    from dentpy.export import ExportedModel

    binary, severity = classification_runs
    images = sorted((xray_data / "caries_binary").rglob("*.png"))[:6]
    reference, task = _classifier_reference(binary, images)
    summary = json.loads((binary / "evaluation" / "test" / "summary.json").read_text())
    threshold = summary["model"]["threshold"]
    positive = task.positive_index
    for fmt in ("onnx", "torchscript"):
        model = ExportedModel.load(classification_exports[fmt])
        for path, expected in zip(images, reference, strict=True):
            result = model.predict_image(path)
            assert np.abs(result.probabilities - expected).max() <= 1e-5, fmt
            chosen = positive if expected[positive] >= threshold else 1 - positive
            assert result.predicted == task.classes[chosen]
            assert result.threshold == threshold
    ordinal_images = sorted((xray_data / "caries_severity").rglob("*.png"))[:4]
    reference, task = _classifier_reference(severity, ordinal_images)
    assert task.cumulative  # CORAL: C-1 outputs decoded by the card's rule
    model = ExportedModel.load(classification_exports["ordinal"])
    for path, expected in zip(ordinal_images, reference, strict=True):
        result = model.predict_image(path)
        assert np.abs(result.probabilities - expected).max() <= 1e-5
        assert result.predicted == task.classes[int(np.argmax(expected))]


def test_classification_card_holds_metrics_with_cis_and_the_threshold(
    classification_runs: tuple[Path, Path], classification_exports: dict[str, Path]
) -> None:
    binary = classification_runs[0]
    summary = json.loads((binary / "evaluation" / "test" / "summary.json").read_text())
    plan = json.loads((binary / "plan.json").read_text())
    card = card_of(classification_exports["onnx"])
    assert card["task"] == "classification"
    assert "legacy" in card["export"]["exporter"]
    assert card["metrics"]["metrics"] == summary["model"]["metrics"]
    assert card["metrics"]["ci95"] == summary["model"]["ci95"]
    assert card["metrics"]["ci95"]["roc_auc"]["n_boot"] == 50
    assert card["decoding"]["threshold"] == summary["model"]["threshold"]
    assert card["preprocessing"]["image_size"] == plan["preprocess"]["image_size"] == [32, 32]
    assert card["preprocessing"]["clip_percentiles"] == plan["preprocess"]["clip_percentiles"]
    assert [c["name"] for c in card["classes"]] == plan["task"]["classes"]
    assert [c["name"] for c in card["classes"] if c["positive"]] == ["caries"]
    assert card["input"]["tensor"].startswith("(N, 1, 32, 32)")


def test_export_refuses_to_overwrite_without_force(
    classification_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    run = tmp_path / "caries-binary"
    shutil.copytree(classification_runs[0], run)
    invoke("export", str(run), "--format", "torchscript")
    folder = run / "export" / "torchscript"  # the default --out
    model = folder / "model.pt"
    before = model.read_bytes()
    card_before = (folder / "model_card.json").read_text()
    with pytest.raises(OutputError, match="--force"):
        runner.invoke(app, ["export", str(run), "--format", "torchscript"], catch_exceptions=False)
    assert model.read_bytes() == before
    assert (folder / "model_card.json").read_text() == card_before
    invoke("export", str(run), "--format", "torchscript", "--force")
    assert card_of(folder)["export_date"] >= json.loads(card_before)["export_date"]
    assert not list(folder.glob(".export-*")), "staging folders are removed"


def test_a_folder_that_is_not_a_run_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a run")
    result = subprocess.run(
        [sys.executable, "-m", "dentpy.cli", "export", str(tmp_path), "--format", "onnx"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    assert "is not a dentpy run folder" in result.stderr
    assert "spec.yaml" in result.stderr
    assert not (tmp_path / "export").exists()


def test_an_export_that_disagrees_with_pytorch_is_refused(
    classification_runs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dentpy.export.pipeline as export_module

    real = export_module.open_backend

    def off_by_a_little(fmt: str, path: Path) -> Any:
        backend = real(fmt, path)
        return lambda batch: backend(batch) + 0.01  # far above the 1e-4 tolerance

    monkeypatch.setattr(export_module, "open_backend", off_by_a_little)
    out = tmp_path / "bad"
    with pytest.raises(OutputError, match="disagrees with PyTorch"):
        export_module.export_run(classification_runs[0], "torchscript", out)
    assert not (out / "model.pt").exists() and not (out / "model_card.json").exists()


def test_a_changed_model_file_is_refused_on_load(
    classification_exports: dict[str, Path], tmp_path: Path
) -> None:
    from dentpy.export import ExportedModel

    folder = tmp_path / "copy"
    shutil.copytree(classification_exports["torchscript"], folder)
    with (folder / "model.pt").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(CheckpointError, match="changed after export"):
        ExportedModel.load(folder)


def test_detection_exports_the_raw_head_and_decodes_like_dentpy(
    detection_run: Path, xray_data: Path, tmp_path: Path
) -> None:
    from dataclasses import replace

    from dentpy.data.image2d_io import read_any
    from dentpy.data.prepare_boxes import letterbox_image
    from dentpy.evaluate_detection import load_detector
    from dentpy.export import ExportedModel
    from dentpy.train_detection import network_detections

    invoke("export", str(detection_run), "--format", "torchscript", "--out", str(tmp_path))
    card = card_of(tmp_path)
    trained = load_detector(detection_run)
    n = len(trained.task.classes)
    assert card["task"] == "detection"
    assert card["export"]["output"]["shape"] == ["batch", n + 4, 128 // 4, 192 // 4]
    decoding = card["decoding"]
    assert decoding["score_threshold"] == trained.score_threshold
    assert decoding["nms_iou"] == trained.spec.postprocess.nms_iou
    assert decoding["max_detections"] == trained.spec.postprocess.max_detections
    # A 4-iteration detector rarely clears its own threshold: decode everything instead,
    # so the comparison has boxes to compare.
    loaded = ExportedModel.load(tmp_path)
    everything = replace(loaded, card={**card, "decoding": {**decoding, "score_threshold": 0.0}})
    path = sorted((xray_data / "teeth_coco").rglob("*.png"))[0]
    image = read_any(path, mask=False)
    network, mapping = letterbox_image(image, trained.image_size, trained.clip_percentiles, "x")
    ((boxes, scores, labels),) = network_detections(
        trained.model, network[None], trained.device, None, trained.spec
    )
    result = everything.predict_boxes(path)
    assert len(result.boxes) == len(boxes) > 0
    expected = mapping.boxes_to_image(boxes)
    expected[:, [0, 2]] = np.clip(expected[:, [0, 2]], 0, image.width)
    expected[:, [1, 3]] = np.clip(expected[:, [1, 3]], 0, image.height)
    assert np.abs(result.boxes - expected).max() <= 1e-3
    assert np.abs(result.scores - scores).max() <= 1e-5
    assert result.labels == [trained.task.classes[int(i)] for i in labels]


def test_instance_card_numbers_teeth_and_pulps_by_fdi(instance_run: Path, tmp_path: Path) -> None:
    invoke("export", str(instance_run), "--format", "torchscript", "--out", str(tmp_path))
    card = card_of(tmp_path)
    assert card["task"] == "instance segmentation"
    plan = json.loads((instance_run / "plan.json").read_text())["task"]
    rows = card["classes"][1:]
    assert [r["label_ids"] for r in rows] == plan["class_label_ids"]
    teeth = [r for r in rows if r.get("structure") == "tooth"]
    pulps = [r for r in rows if r.get("structure") == "pulp"]
    assert teeth and pulps
    assert all(r["fdi"] == r["label_ids"][0] for r in teeth)
    assert all(r["fdi"] + 100 == r["label_ids"][0] for r in pulps)
    assert card["postprocessing"]["instances"] is not None
    assert card["metrics"]["instances"]["teeth"]["n_reference"] >= 1


def test_an_unevaluated_run_says_so_and_uses_the_default_threshold(
    classification_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    from dentpy.errors import SpecError

    run = tmp_path / "caries-binary"
    shutil.copytree(classification_runs[0], run, ignore=shutil.ignore_patterns("evaluation"))
    with pytest.raises(SpecError, match="--opset applies to ONNX"):
        runner.invoke(
            app,
            ["export", str(run), "--format", "torchscript", "--opset", "17"],
            catch_exceptions=False,
        )
    invoke("export", str(run), "--format", "torchscript", "--out", str(tmp_path / "ts"))
    card = card_of(tmp_path / "ts")
    assert card["metrics"] == {"status": "not evaluated yet: run `dentpy evaluate RUN`"}
    assert card["decoding"]["threshold"] == 0.5
    assert "dentpy evaluate" in card["decoding"]["threshold_source"]
    assert "not evaluated yet" in (tmp_path / "ts" / "model_card.md").read_text()
