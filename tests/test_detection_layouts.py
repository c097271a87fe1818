"""COCO, YOLO and Tufts detection layouts: reading, refusing bad input, writing back."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from dentpy.data.case import pseudonym
from dentpy.data.layouts import coco, tufts, yolo
from dentpy.data.samples2d import ImageDataset
from dentpy.errors import InputDataError, OutputError

W, H = 40, 30


def png(path: Path, width: int = W, height: int = H) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = (np.arange(width * height) % 251).astype(np.uint8).reshape(height, width)
    Image.fromarray(array).save(path)
    return path


def boxes_by_name(dataset: ImageDataset) -> dict[str, list[tuple[Any, ...]]]:
    """Image file name -> sorted (xyxy, label, fdi) of its boxes (None when unannotated)."""
    result: dict[str, Any] = {}
    for record in (*dataset.records, *dataset.test_records):
        boxes = record.boxes
        result[record.image_path.name] = (
            None
            if boxes is None
            else sorted(
                (*(round(v, 4) for v in (b.x_min, b.y_min, b.x_max, b.y_max)), b.label, b.fdi)
                for b in boxes
            )
        )
    return result


def raises(call: Any, *parts: str, root: Path | None = None) -> str:
    with pytest.raises(InputDataError) as info:
        call()
    text = str(info.value)
    for part in parts:
        assert part in text, (part, text)
    if root is not None:
        assert str(root) not in text  # never an absolute path
    return text


# --------------------------------------------------------------------------------------
# COCO


def coco_json() -> dict[str, Any]:
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "width": W, "height": H},
            {"id": 2, "file_name": "b.png", "width": W, "height": H},
        ],
        "annotations": [
            {"id": 17, "image_id": 1, "category_id": 2, "bbox": [2, 3, 10, 5], "iscrowd": 0},
            {"id": 18, "image_id": 1, "category_id": 1, "bbox": [20.5, 10, 4, 4]},
        ],
        "categories": [{"id": 2, "name": "caries"}, {"id": 1, "name": "impacted"}],
    }


def coco_dir(tmp_path: Path, data: dict[str, Any] | None = None) -> Path:
    root = tmp_path / "coco"
    png(root / "images" / "a.png")
    png(root / "images" / "b.png")
    (root / "annotations.json").write_text(json.dumps(data or coco_json()))
    return root


def test_coco_reads_boxes_classes_and_negatives(tmp_path: Path) -> None:
    root = coco_dir(tmp_path)
    assert coco.looks_like(root)
    ds = coco.read(root)
    assert ds.layout == "coco" and ds.task == "detection"
    assert ds.classes == ("impacted", "caries")  # category id order
    a, b = ds.records
    assert a.case_id == pseudonym("images/a.png") and a.patient_id == a.case_id
    assert a.source_name == "images/a.png" and a.annotation_file == "annotations.json"
    assert a.expected_size == (W, H)
    first = a.boxes[0]  # type: ignore[index]
    assert (first.x_min, first.y_min, first.x_max, first.y_max) == (2, 3, 12, 8)
    assert first.label == "caries" and first.source == "annotation id 17"
    assert b.boxes == ()  # negative image kept
    assert ds.predefined_splits is None


def _mutate(data: dict[str, Any], how: str) -> None:
    ann = data["annotations"][0]
    if how == "zero size":
        ann["bbox"] = [2, 3, 0, 5]
    elif how == "negative size":
        ann["bbox"] = [2, 3, 10, -1]
    elif how == "unknown category":
        ann["category_id"] = 9
    elif how == "orphan":
        ann["image_id"] = 99
    elif how == "duplicate annotation":
        data["annotations"][1]["id"] = 17
    elif how == "crowd":
        ann["iscrowd"] = 1
    elif how == "bad bbox":
        ann["bbox"] = [1, 2, 3]
    elif how == "nan bbox":
        ann["bbox"] = [1, 2, "x", 4]


@pytest.mark.parametrize(
    "how",
    [
        "zero size",
        "negative size",
        "unknown category",
        "orphan",
        "duplicate annotation",
        "crowd",
        "bad bbox",
        "nan bbox",
    ],
)
def test_coco_refuses_bad_annotations(tmp_path: Path, how: str) -> None:
    data = coco_json()
    _mutate(data, how)
    root = coco_dir(tmp_path, data)
    raises(lambda: coco.read(root), "annotations.json", "annotation id 17", "fix:", root=root)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"id": 1}, ["image id 1", "twice"]),
        ({"file_name": "missing.png"}, ["image id 2", "not found"]),
        ({"width": None}, ["image id 2", "width"]),
        ({"file_name": "a.png"}, ["image id 2", "same file"]),
        ({"file_name": "../outside.png"}, ["image id 2", "outside"]),
        ({"file_name": "/etc/x.png"}, ["image id 2", "outside"]),
        ({"file_name": "C:\\data\\x.png"}, ["image id 2", "outside"]),
        ({"file_name": "notes.txt"}, ["image id 2", "not an image"]),
    ],
)
def test_coco_refuses_bad_images(tmp_path: Path, change: dict[str, Any], words: list[str]) -> None:
    data = coco_json()
    data["images"][1].update(change)
    root = coco_dir(tmp_path, data)
    png(tmp_path / "outside.png")
    raises(lambda: coco.read(root), "annotations.json", *words, root=root)


def dentex_json(levels: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "images": [{"id": 0, "file_name": "train_0.png", "width": W, "height": H}],
        "annotations": [
            {
                "id": 5,
                "image_id": 0,
                "bbox": [1, 1, 5, 6],
                "iscrowd": 0,
                "category_id_1": 1,
                "category_id_2": 5,
                "category_id_3": 1,
            }
        ],
        # The quadrant names are JSON numbers in DENTEX's quadrant_enumeration file.
        "categories_1": [{"id": i, "name": i + 1, "supercategory": i + 1} for i in range(4)],
        "categories_2": [{"id": i, "name": str(i + 1)} for i in range(8)],
        "categories_3": [
            {"id": i, "name": n}
            for i, n in enumerate(["Impacted", "Caries", "Periapical Lesion", "Deep Caries"])
        ],
    }
    for key in ("categories_1", "categories_2", "categories_3")[levels:]:
        del data[key]
        del data["annotations"][0][key.replace("categories", "category_id")]
    return data


@pytest.mark.parametrize(
    ("levels", "label", "fdi", "classes"),
    [
        (3, "Caries", 26, ("Impacted", "Caries", "Periapical Lesion", "Deep Caries")),
        (2, "tooth", 26, ("tooth",)),
        (1, "quadrant 2", None, ("quadrant 1", "quadrant 2", "quadrant 3", "quadrant 4")),
    ],
)
def test_coco_reads_dentex_hierarchy(
    tmp_path: Path, levels: int, label: str, fdi: int | None, classes: tuple[str, ...]
) -> None:
    root = tmp_path / "dentex"
    png(root / "xrays" / "train_0.png")
    (root / "train_quadrant_enumeration.json").write_text(json.dumps(dentex_json(levels)))
    ds = coco.read(root)
    (box,) = ds.records[0].boxes or ()
    assert (box.label, box.fdi, ds.classes) == (label, fdi, classes)
    assert (box.x_min, box.y_min, box.x_max, box.y_max) == (1, 1, 6, 7)
    assert ds.records[0].source_name == "xrays/train_0.png"


def test_coco_dentex_unknown_level_id(tmp_path: Path) -> None:
    data = dentex_json(3)
    data["annotations"][0]["category_id_2"] = 8
    root = tmp_path / "dentex"
    png(root / "train_0.png")
    (root / "train.json").write_text(json.dumps(data))
    raises(lambda: coco.read(root), "train.json", "annotation id 5", "category_id_2")


def test_coco_split_files_give_splits_and_test_records(tmp_path: Path) -> None:
    root = tmp_path / "split"
    for split in ("train", "val", "test"):
        png(root / "images" / f"{split}.png")
        data = {
            "images": [{"id": 1, "file_name": f"{split}.png", "width": W, "height": H}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}],
            "categories": [{"id": 1, "name": "caries"}],
        }
        (root / f"{split}.json").write_text(json.dumps(data))
    ds = coco.read(root)
    assert [r.source_name for r in ds.records] == ["images/train.png", "images/val.png"]
    assert [r.source_name for r in ds.test_records] == ["images/test.png"]
    assert ds.predefined_splits == {
        s: (pseudonym(f"images/{s}.png"),) for s in ("train", "val", "test")
    }
    (root / "other.json").write_text(json.dumps(data))
    raises(lambda: coco.read(root), "several COCO JSON", "other.json")


def test_coco_roboflow_split_folders(tmp_path: Path) -> None:
    root = tmp_path / "rf"
    for folder in ("train", "valid"):
        png(root / folder / "x.jpg.png")
        data = {
            "images": [{"id": 0, "file_name": "x.jpg.png", "width": W, "height": H}],
            "annotations": [{"id": 0, "image_id": 0, "category_id": 1, "bbox": [1, 1, 2, 2]}],
            "categories": [
                {"id": 0, "name": "teeth", "supercategory": "none"},
                {"id": 1, "name": "caries", "supercategory": "teeth"},
            ],
        }
        (root / folder / "_annotations.coco.json").write_text(json.dumps(data))
    assert coco.looks_like(root)
    ds = coco.read(root)
    assert ds.classes == ("caries",)  # Roboflow's placeholder category dropped
    assert set(ds.predefined_splits or {}) == {"train", "val"}


def test_coco_write_round_trip_and_no_overwrite(tmp_path: Path) -> None:
    root = coco_dir(tmp_path)
    ds = coco.read(root)
    out = coco.write(ds, tmp_path / "out")
    assert (out / "annotations.json").is_file()
    assert (out / "images" / "a.png").read_bytes() == (root / "images" / "a.png").read_bytes()
    back = coco.read(out)
    assert back.classes == ds.classes
    assert boxes_by_name(back) == boxes_by_name(ds)
    with pytest.raises(OutputError):
        coco.write(ds, out)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_coco_load_checks_size_and_bounds(tmp_path: Path) -> None:
    sample = coco.read(coco_dir(tmp_path)).records[0].load()
    assert sample.image.size == (W, H) and len(sample.boxes or ()) == 2
    data = coco_json()
    data["images"][0]["width"] = W + 5
    ds = coco.read(coco_dir(tmp_path / "w", data))
    raises(ds.records[0].load, "image size differs", "annotations.json")
    data = coco_json()
    data["annotations"][0]["bbox"] = [30, 3, 20, 5]  # x_max 50 > 40
    ds = coco.read(coco_dir(tmp_path / "b", data))
    raises(ds.records[0].load, "annotation id 17", "outside the image")


# --------------------------------------------------------------------------------------
# YOLO


def yolo_dir(tmp_path: Path, config: dict[str, Any] | None = None) -> Path:
    root = tmp_path / "yolo"
    png(root / "train" / "images" / "a.png")
    png(root / "train" / "images" / "b.png")
    png(root / "valid" / "images" / "c.png")
    (root / "train" / "labels").mkdir(parents=True)
    (root / "valid" / "labels").mkdir(parents=True)
    (root / "train" / "labels" / "a.txt").write_text("1 0.5 0.5 0.25 0.2\n\n0 0.1 0.1 0.1 0.1\n")
    (root / "valid" / "labels" / "c.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    config = config or {
        "path": ".",
        "train": "train/images",
        "val": "valid/images",
        "nc": 2,
        "names": {0: "caries", 1: "impacted"},
    }
    (root / "data.yaml").write_text(yaml.safe_dump(config))
    return root


def test_yolo_reads_normalised_boxes_in_pixels(tmp_path: Path) -> None:
    root = yolo_dir(tmp_path)
    assert yolo.looks_like(root)
    ds = yolo.read(root)
    assert ds.classes == ("caries", "impacted")
    by = {r.source_name: r for r in (*ds.records, *ds.test_records)}
    a = by["train/images/a.png"]
    assert a.expected_size == (W, H) and a.annotation_file == "train/labels/a.txt"
    box = (a.boxes or ())[0]
    assert (box.x_min, box.y_min, box.x_max, box.y_max) == pytest.approx((15, 12, 25, 18))
    assert box.label == "impacted" and box.source == "line 1 of train/labels/a.txt"
    assert (a.boxes or ())[1].source == "line 3 of train/labels/a.txt"
    assert by["train/images/b.png"].boxes == ()  # no .txt: negative image
    assert ds.predefined_splits == {
        "train": (pseudonym("train/images/a.png"), pseudonym("train/images/b.png")),
        "val": (pseudonym("valid/images/c.png"),),
    }
    assert ds.records[0].load().boxes is not None


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("0 0.5 0.5 0.2", ["4 fields"]),
        ("0 0.5 0.5 0.2 0.2 0.3", ["6 fields"]),
        ("0 0.5 abc 0.2 0.2", ["not a number"]),
        ("2 0.5 0.5 0.2 0.2", ["unknown class id"]),
        ("0.5 0.5 0.5 0.2 0.2", ["unknown class id"]),
        ("0 0.5 0.5 1.2 0.2", ["outside 0..1"]),
        ("0 20 15 10 6", ["outside 0..1", "pixel values"]),
        ("0 0.5 0.5 0 0.2", ["zero or negative size"]),
        ("0 0.95 0.5 0.2 0.2", ["outside the image"]),
        ("0 0.1 0.1 0.2 0.1 0.2 0.2", ["segmentation", "boxes only"]),
    ],
)
def test_yolo_refuses_bad_lines(tmp_path: Path, line: str, words: list[str]) -> None:
    root = yolo_dir(tmp_path)
    (root / "train" / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n" + line + "\n")
    raises(lambda: yolo.read(root), "train/labels/a.txt", "line 2", *words, root=root)


def test_yolo_refuses_orphans_and_bad_yaml(tmp_path: Path) -> None:
    root = yolo_dir(tmp_path)
    (root / "train" / "labels" / "zz.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    raises(lambda: yolo.read(root), "train/labels/zz.txt", "without an image", root=root)
    (root / "train" / "labels" / "zz.txt").unlink()
    for config, words in [
        ({"train": "train/images", "nc": 3, "names": ["a", "b"]}, ["nc"]),
        ({"train": "train/images", "names": {0: "a", 2: "b"}}, ["0..N-1"]),
        ({"train": "nowhere/images", "names": ["a", "b"]}, ["'train' folder not found"]),
        ({"train": "../../x", "names": ["a", "b"]}, ["'train' folder not found"]),
    ]:
        (root / "data.yaml").write_text(yaml.safe_dump(config))
        raises(lambda: yolo.read(root), "data.yaml", *words, root=root)


def test_yolo_roboflow_paths_and_exif_size(tmp_path: Path) -> None:
    root = yolo_dir(
        tmp_path,
        {"train": "../train/images", "val": "../valid/images", "nc": 2, "names": ["a", "b"]},
    )
    photo = Image.fromarray(np.zeros((H, W, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: displayed 30 wide, 40 high
    photo.save(root / "valid" / "images" / "r.jpg", exif=exif)
    ds = yolo.read(root)
    by = {r.source_name: r for r in ds.records}
    assert by["valid/images/r.jpg"].expected_size == (H, W)
    assert by["valid/images/r.jpg"].boxes == ()


def test_yolo_write_round_trip_and_no_overwrite(tmp_path: Path) -> None:
    ds = yolo.read(yolo_dir(tmp_path))
    out = yolo.write(ds, tmp_path / "out")
    config = yaml.safe_load((out / "data.yaml").read_text())
    assert config["names"] == ["caries", "impacted"] and config["nc"] == 2
    assert config["val"] == "val/images"
    lines = (out / "train" / "labels" / "a.txt").read_text().splitlines()
    assert lines[0] == "1 0.500000 0.500000 0.250000 0.200000"
    back = yolo.read(out)
    assert back.classes == ds.classes
    assert boxes_by_name(back) == boxes_by_name(ds)
    assert set(back.predefined_splits or {}) == {"train", "val"}
    with pytest.raises(OutputError):
        yolo.write(ds, out)


def test_coco_to_yolo_to_coco_keeps_boxes(tmp_path: Path) -> None:
    ds = coco.read(coco_dir(tmp_path))
    back = coco.read(coco.write(yolo.read(yolo.write(ds, tmp_path / "y")), tmp_path / "c"))
    assert back.classes == ds.classes
    assert boxes_by_name(back) == boxes_by_name(ds)


# --------------------------------------------------------------------------------------
# Tufts


def tufts_entries() -> list[dict[str, Any]]:
    return [
        {
            "External ID": "1.jpg",
            "Label": {
                "objects": [
                    {"title": "1", "bounding box": [3, 2, 8, 12]},
                    {"title": "A", "bounding box": [10, 20, 20, 30]},
                ]
            },
        },
        {"External ID": "2.jpg", "Label": {"objects": []}},
    ]


def tufts_dir(tmp_path: Path, entries: list[dict[str, Any]] | None = None) -> Path:
    root = tmp_path / "tufts"
    for n in (1, 2, 3):
        (root / "Radiographs").mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(np.zeros((H, W), np.uint8))
        image.save(root / "Radiographs" / f"{n}.JPG", format="JPEG")
    (root / "Segmentation").mkdir()
    (root / "Segmentation" / "teeth_bbox.json").write_text(json.dumps(entries or tufts_entries()))
    return root


def test_tufts_reads_universal_numbers_as_fdi(tmp_path: Path) -> None:
    root = tufts_dir(tmp_path)
    assert tufts.looks_like(root) and not coco.looks_like(root)
    ds = tufts.read(root)
    assert ds.classes == ("tooth",)
    one, two = ds.records
    assert one.source_name == "Radiographs/1.JPG"
    upper, baby = one.boxes or ()
    assert (upper.x_min, upper.y_min, upper.x_max, upper.y_max) == (2, 3, 12, 8)
    assert (upper.label, upper.fdi) == ("tooth", 18)
    assert baby.fdi == 55 and "entry #0" in baby.source
    assert two.boxes == ()
    assert [r.source_name for r in ds.test_records] == ["Radiographs/3.JPG"]  # no entry
    assert ds.test_records[0].boxes is None
    assert one.load().image.size == (W, H)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"title": "33"}, ["object #1", "Universal"]),
        ({"bounding box": [10, 20, 10, 30]}, ["object #1", "zero or negative"]),
        ({"bounding box": [10, 20]}, ["object #1", "invalid box"]),
        ({"title": None, "bounding box": None, "x": 1}, ["object #1"]),
    ],
)
def test_tufts_refuses_bad_objects(
    tmp_path: Path, change: dict[str, Any], words: list[str]
) -> None:
    entries = tufts_entries()
    obj = entries[0]["Label"]["objects"][1]
    obj.update(change)
    if "x" in change:
        obj.clear()
    root = tufts_dir(tmp_path, entries)
    raises(lambda: tufts.read(root), "Segmentation/teeth_bbox.json", "entry #0", *words, root=root)


@pytest.mark.parametrize(
    ("external", "words"),
    [("9.jpg", ["radiograph not found"]), ("../1.jpg", ["plain file name"]), ("1.JPG", ["twice"])],
)
def test_tufts_refuses_bad_entries(tmp_path: Path, external: str, words: list[str]) -> None:
    entries = copy.deepcopy(tufts_entries())
    entries[1]["External ID"] = external
    root = tufts_dir(tmp_path, entries)
    raises(lambda: tufts.read(root), "teeth_bbox.json", "entry #1", *words, root=root)


def test_tufts_to_coco_keeps_fdi(tmp_path: Path) -> None:
    ds = tufts.read(tufts_dir(tmp_path))
    back = coco.read(coco.write(ds, tmp_path / "c"))
    assert back.classes == ("tooth",)
    expected = boxes_by_name(ds)
    expected["3.JPG"] = []  # unannotated images become COCO images without boxes
    assert boxes_by_name(back) == expected


# --------------------------------------------------------------------------------------
# Auto-detection and splits through open_any


def test_open_any_detects_each_layout_and_coco_keeps_splits(tmp_path: Path) -> None:
    from dentpy.data.dataset import open_any

    yolo_ds = open_any(yolo_dir(tmp_path / "y"))
    coco_ds = open_any(coco_dir(tmp_path / "c"))
    tufts_ds = open_any(tufts_dir(tmp_path / "t"))
    assert [d.layout for d in (yolo_ds, coco_ds, tufts_ds)] == ["yolo", "coco", "tufts"]
    assert isinstance(yolo_ds, ImageDataset)
    out = coco.write(yolo_ds, tmp_path / "out")
    back = open_any(out)
    assert isinstance(back, ImageDataset) and back.layout == "coco"
    splits = back.predefined_splits or {}
    assert {k: len(v) for k, v in splits.items()} == {"train": 2, "val": 1}
    assert boxes_by_name(back) == boxes_by_name(yolo_ds)


def test_coco_json_path_and_unlabelled_images(tmp_path: Path) -> None:
    data = coco_json()
    del data["annotations"]  # COCO image_info_test: images only
    root = coco_dir(tmp_path, data)
    ds = coco.read(root / "annotations.json")
    assert ds.records == () and len(ds.test_records) == 2
    assert all(r.boxes is None for r in ds.test_records)


def test_yolo_write_without_splits_and_tufts_skip(tmp_path: Path) -> None:
    ds = coco.read(coco_dir(tmp_path))
    out = yolo.write(ds, tmp_path / "y")
    config = yaml.safe_load((out / "data.yaml").read_text())
    assert config["train"] == config["val"] == "train/images"
    back = yolo.read(out)  # val == train: no validation set, dentpy splits itself
    assert back.predefined_splits is None and len(back.records) == 2
    assert not (out / "train" / "labels" / "b.txt").exists()  # negative: no label file
    entries = tufts_entries()
    entries[1]["Label"] = "Skip"  # Labelbox: not annotated
    t = tufts.read(tufts_dir(tmp_path, entries))
    assert [r.source_name for r in t.test_records] == ["Radiographs/2.JPG", "Radiographs/3.JPG"]
