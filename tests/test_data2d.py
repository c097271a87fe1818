"""2D datasets through the user-facing commands: layout detection, `data check` (report,
pictures, exit code), `data split` and `data convert` between COCO, YOLO and ImageFolder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dentpy.cli import LAYOUT_HELP, app
from dentpy.data.dataset import LAYOUTS, open_any, open_dataset
from dentpy.data.samples2d import ImageDataset
from dentpy.errors import InputDataError, SpecError

runner = CliRunner()


def _png(path: Path, width: int = 40, height: int = 30, seed: int = 0, bits: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if bits == 16:
        Image.fromarray(rng.integers(0, 4000, (height, width), dtype=np.uint16)).save(path)
    else:
        Image.fromarray(rng.integers(0, 255, (height, width), dtype=np.uint8)).save(path)


def _coco(
    root: Path, boxes: dict[str, list[list[float]]], sizes: dict[str, tuple[int, int]]
) -> Path:
    images, annotations = [], []
    for image_id, name in enumerate(sorted(sizes), start=1):
        width, height = sizes[name]
        _png(root / "images" / name, width, height, seed=image_id, bits=16)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for box in boxes.get(name, []):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "caries"}, {"id": 2, "name": "filling"}],
    }
    (root / "annotations.json").write_text(json.dumps(data))
    return root


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    sizes = {f"img{i}.png": (40, 30) for i in range(4)}
    boxes = {"img0.png": [[2, 3, 10, 5]], "img1.png": [[5, 5, 20, 20], [0, 0, 4, 4]]}
    return _coco(tmp_path / "bitewings", boxes, sizes)


@pytest.fixture
def imagefolder_root(tmp_path: Path) -> Path:
    root = tmp_path / "caries_crops"
    for label in ("sound", "caries"):
        for i in range(3):
            _png(root / label / f"{label}{i}.png", 12, 12, seed=hash(label) % 100 + i)
    return root


def test_layout_names_agree_everywhere() -> None:
    from typing import get_args

    from dentpy.spec import Input

    help_names = [
        n.strip() for part in LAYOUT_HELP.split("|") for n in part.split(":")[-1].split(",")
    ]
    assert sorted(help_names) == sorted(("auto", *LAYOUTS))
    assert sorted(get_args(Input.model_fields["layout"].annotation)) == sorted(("auto", *LAYOUTS))


def test_2d_layouts_are_detected_and_opened(coco_root: Path, imagefolder_root: Path) -> None:
    coco = open_any(coco_root)
    assert isinstance(coco, ImageDataset)
    assert (coco.layout, coco.task) == ("coco", "detection")
    folder = open_any(imagefolder_root)
    assert isinstance(folder, ImageDataset)
    assert (folder.layout, folder.task, sorted(folder.classes)) == (
        "imagefolder",
        "classification",
        ["caries", "sound"],
    )
    single = open_any(coco_root / "images" / "img0.png")
    assert isinstance(single, ImageDataset) and single.layout == "images"


def test_open_dataset_refuses_2d_data_with_a_clear_message(coco_root: Path) -> None:
    with pytest.raises(InputDataError) as error:
        open_dataset(coco_root)
    text = str(error.value)
    assert "2D detection dataset (coco layout)" in text
    assert "3D layout" in text


def test_data_check_reports_fingerprint_pictures_and_no_problems(
    coco_root: Path, tmp_path: Path
) -> None:
    pictures = tmp_path / "pictures"
    result = runner.invoke(
        app,
        [
            "data",
            "check",
            str(coco_root),
            "--pictures",
            str(pictures),
            "--json",
            str(tmp_path / "report.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "no problems found" in result.output
    report = json.loads((tmp_path / "report.json").read_text())
    fingerprint = report["fingerprint"]
    assert fingerprint["box_counts"] == {"caries": 3}
    assert fingerprint["n_images_without_boxes"] == 2
    assert fingerprint["dtypes"] == {"uint16": 4}
    assert fingerprint["size_wh"]["median"] == [40.0, 30.0]
    for name in ("montage.png", "class_balance.png", "intensity_histogram.png", "box_sizes.png"):
        assert (pictures / name).stat().st_size > 1000, name
    # No image file name in the report: names may identify patients.
    assert "img0" not in json.dumps(report)


def test_data_check_lists_every_problem_and_exits_non_zero(coco_root: Path) -> None:
    data = json.loads((coco_root / "annotations.json").read_text())
    data["annotations"][0]["bbox"] = [30, 3, 20, 5]  # x_max 50 > width 40
    data["images"][2]["width"] = 41  # declared size differs from the pixels
    (coco_root / "annotations.json").write_text(json.dumps(data))
    (coco_root / "images" / "img3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = runner.invoke(app, ["data", "check", str(coco_root)])
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "3 problem(s)" in output
    assert "is outside the image" in output and "annotation id 1" in output
    assert "image size differs from its annotation file" in output
    assert "images/img3.png" in output


def test_duplicate_image_content_is_a_problem(imagefolder_root: Path) -> None:
    source = imagefolder_root / "sound" / "sound0.png"
    (imagefolder_root / "caries" / "copy.png").write_bytes(source.read_bytes())
    result = runner.invoke(app, ["data", "check", str(imagefolder_root)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "the same file content" in output
    assert "sound/sound0.png" in output and "caries/copy.png" in output


def test_data_split_writes_and_then_honours_a_split(imagefolder_root: Path) -> None:
    result = runner.invoke(
        app, ["data", "split", str(imagefolder_root), "--val", "0.2", "--test", "0.3"]
    )
    assert result.exit_code == 0, result.output
    splits = json.loads((imagefolder_root / "splits.json").read_text())
    assert sum(len(v) for v in splits.values()) == 6
    assert all("/" in name for names in splits.values() for name in names)
    reopened = open_any(imagefolder_root)
    assert reopened.predefined_splits is not None
    assert sorted(reopened.predefined_splits) == ["test", "train", "val"]
    again = runner.invoke(app, ["data", "split", str(imagefolder_root)])
    assert again.exit_code == 0 and "checked" in again.output


def test_convert_coco_to_yolo_and_back_keeps_boxes_and_bytes(
    coco_root: Path, tmp_path: Path
) -> None:
    yolo_dir, back = tmp_path / "as_yolo", tmp_path / "back_to_coco"
    result = runner.invoke(app, ["data", "convert", str(coco_root), str(yolo_dir), "--to", "yolo"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["data", "convert", str(yolo_dir), str(back), "--to", "coco"])
    assert result.exit_code == 0, result.output

    def boxes(dataset: ImageDataset) -> dict[str, list[tuple[float, ...]]]:
        return {
            Path(r.source_name).name: sorted(
                (
                    b.label,
                    round(b.x_min, 3),
                    round(b.y_min, 3),
                    round(b.x_max, 3),
                    round(b.y_max, 3),
                )
                for b in r.boxes or ()
            )
            for r in (*dataset.records, *dataset.test_records)
        }

    original, final = open_any(coco_root), open_any(back)
    assert isinstance(original, ImageDataset) and isinstance(final, ImageDataset)
    assert boxes(final) == boxes(original)
    copied = next(back.rglob("img1.png"))
    assert copied.read_bytes() == (coco_root / "images" / "img1.png").read_bytes()


def test_convert_refuses_an_existing_destination_and_a_wrong_target(
    coco_root: Path, imagefolder_root: Path, tmp_path: Path
) -> None:
    exists = tmp_path / "exists"
    exists.mkdir()
    (exists / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["data", "convert", str(coco_root), str(exists), "--to", "coco"])
    assert result.exit_code != 0
    assert (exists / "keep.txt").read_text() == "mine"
    wrong = runner.invoke(
        app, ["data", "convert", str(imagefolder_root), str(tmp_path / "x"), "--to", "yolo"]
    )
    assert isinstance(wrong.exception, SpecError)
    assert "cannot convert a 2D classification dataset to 'yolo'" in str(wrong.exception)


def test_convert_merges_classes_only_through_an_explicit_label_map(
    imagefolder_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "merged"
    result = runner.invoke(
        app,
        [
            "data",
            "convert",
            str(imagefolder_root),
            str(out),
            "--to",
            "imagefolder",
            "--label-map",
            "caries=lesion",
        ],
    )
    assert result.exit_code == 0, result.output
    merged = open_any(out)
    assert isinstance(merged, ImageDataset)
    assert sorted(merged.classes) == ["lesion", "sound"]
    unknown = runner.invoke(
        app,
        [
            "data",
            "convert",
            str(imagefolder_root),
            str(tmp_path / "y"),
            "--to",
            "imagefolder",
            "--label-map",
            "cares=lesion",
        ],
    )
    assert isinstance(unknown.exception, SpecError)
    assert "did you mean 'caries'" in str(unknown.exception)
