"""Classification layouts (ImageFolder, CSV labels), the plain images layout, and writing
ImageFolder datasets. Fixtures are tiny PNGs written at test time; no pixels are read by the
layouts themselves."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dentpy.data.case import pseudonym
from dentpy.data.layouts import csv_labels, imagefolder, images
from dentpy.data.samples2d import ImageDataset
from dentpy.errors import InputDataError, OutputError


def _png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _folder(root: Path, spec: dict[str, int], seed: int = 0) -> Path:
    """`spec`: relative class folder -> number of images."""
    for i, (folder, count) in enumerate(sorted(spec.items())):
        for j in range(count):
            _png(root / folder / f"img{j}.png", seed + 10 * i + j)
    return root


def _error(call: object, *args: object) -> str:
    with pytest.raises(InputDataError) as caught:
        call(*args)  # type: ignore[operator]
    text = str(caught.value)
    assert "/tmp" not in text and str(Path.cwd()) not in text, text
    return text


def _labels(dataset: ImageDataset) -> dict[str, str | None]:
    return {r.source_name: r.class_label for r in (*dataset.records, *dataset.test_records)}


# ---------------------------------------------------------------- ImageFolder


def test_flat_imagefolder(tmp_path: Path) -> None:
    root = _folder(tmp_path / "crops", {"sound": 2, "caries": 3, "Abscess": 1})
    (root / "README.md").write_text("side file, ignored")
    (root / "sound" / ".DS_Store").write_text("hidden, ignored")
    assert imagefolder.looks_like(root)
    dataset = imagefolder.read(root)
    assert (dataset.layout, dataset.task) == ("imagefolder", "classification")
    assert dataset.classes == ("Abscess", "caries", "sound")  # sorted, as torchvision
    assert dataset.labels == {"Abscess": 0, "caries": 1, "sound": 2}
    assert len(dataset.records) == 6 and dataset.test_records == ()
    assert dataset.predefined_splits is None
    record = next(r for r in dataset.records if r.source_name == "caries/img1.png")
    assert record.class_label == "caries"
    assert record.case_id == record.patient_id == pseudonym("caries/img1.png")


def test_split_imagefolder(tmp_path: Path) -> None:
    root = _folder(
        tmp_path / "d",
        {
            "train/a": 2,
            "train/b": 2,
            "validation/a": 1,
            "validation/b": 1,
            "test/a": 1,
            "test/b": 1,
        },
    )
    assert imagefolder.looks_like(root)
    dataset = imagefolder.read(root)
    assert dataset.classes == ("a", "b")
    assert len(dataset.records) == 6 and len(dataset.test_records) == 2
    assert {r.class_label for r in dataset.test_records} == {"a", "b"}  # test keeps labels
    splits = dataset.predefined_splits
    assert splits is not None and sorted(splits) == ["test", "train", "val"]
    assert splits["val"] == (pseudonym("validation/a/img0.png"), pseudonym("validation/b/img0.png"))
    assert set(splits["test"]) == {r.case_id for r in dataset.test_records}


def test_imagefolder_patients_csv_and_leakage(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"train/a": 1, "train/b": 1, "val/a": 1, "val/b": 1})
    names = ["train/a/img0.png", "train/b/img0.png", "val/a/img0.png", "val/b/img0.png"]
    rows = ["image,patient", *(f"{n},Jane Doe {i // 2}" for i, n in enumerate(names))]
    (root / "patients.csv").write_text("\n".join(rows) + "\n")
    dataset = imagefolder.read(root)
    by_name = {r.source_name: r.patient_id for r in dataset.records}
    assert by_name["train/a/img0.png"] == by_name["train/b/img0.png"] == pseudonym("Jane Doe 0")
    # One patient in train and val: refused, naming the pseudonym and the files, not the name.
    rows[3] = "val/a/img0.png,Jane Doe 0"
    (root / "patients.csv").write_text("\n".join(rows) + "\n")
    text = _error(imagefolder.read, root)
    assert pseudonym("Jane Doe 0") in text and "val/a/img0.png" in text
    assert "Jane" not in text
    # patients.csv must cover every image.
    (root / "patients.csv").write_text("\n".join(rows[:3]) + "\n")
    text = _error(imagefolder.read, root)
    assert "patients.csv" in text and "val/b/img0.png" in text


def test_imagefolder_errors_name_the_files(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"a": 1, "b": 1})
    (root / "c").mkdir()
    text = _error(imagefolder.read, root)
    assert "c/" in text and "no images" in text
    (root / "c").rmdir()

    (root / "b" / "notes.txt").write_text("x")
    text = _error(imagefolder.read, root)
    assert "b/notes.txt" in text and "not 2D images" in text
    (root / "b" / "notes.txt").unlink()

    _png(root / "loose.png")
    text = _error(imagefolder.read, root)
    assert "loose.png" in text and "directly" in text
    (root / "loose.png").unlink()

    single = _folder(tmp_path / "one", {"a": 2})
    assert not imagefolder.looks_like(single)
    assert "only one class" in _error(imagefolder.read, single)


def test_imagefolder_split_with_missing_class(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"train/a": 1, "train/b": 1, "train/c": 1, "val/a": 1})
    text = _error(imagefolder.read, root)
    assert "val/" in text and "b, c" in text


# ---------------------------------------------------------------- CSV labels


def _csv_root(tmp_path: Path, rows: list[str], n: int = 4, name: str = "labels.csv") -> Path:
    root = tmp_path / "csvdata"
    for i in range(n):
        _png(root / "img" / f"x{i}.png", i)
    (root / name).write_text("\n".join(rows) + "\n")
    return root


def test_csv_happy_path(tmp_path: Path) -> None:
    root = _csv_root(
        tmp_path, ["Image,Label", "img/x0.png,caries", "img/x1.png,sound", "./img/x2.png,caries"]
    )
    assert csv_labels.looks_like(root) and not imagefolder.looks_like(root)
    dataset = csv_labels.read(root)
    assert (dataset.layout, dataset.task) == ("csv", "classification")
    assert dataset.classes == ("caries", "sound")
    # img/x3.png is not listed: ignored (the CSV is the dataset).
    assert _labels(dataset) == {
        "img/x0.png": "caries",
        "img/x1.png": "sound",
        "img/x2.png": "caries",
    }
    assert dataset.predefined_splits is None
    assert all(r.patient_id == r.case_id for r in dataset.records)


def test_csv_with_patient_and_split(tmp_path: Path) -> None:
    rows = [
        "image,label,patient,split",
        "img/x0.png,1,P1,train",
        "img/x1.png,0,P1,train",
        "img/x2.png,1,P2,valid",
        "img/x3.png,0,P3,test",
    ]
    root = _csv_root(tmp_path, rows, name="my_labels.csv")  # the only CSV with the header
    assert csv_labels.looks_like(root)
    dataset = csv_labels.read(root)
    assert dataset.classes == ("0", "1")
    assert len(dataset.records) == 3 and len(dataset.test_records) == 1
    assert dataset.test_records[0].class_label == "0"
    assert dataset.predefined_splits == {
        "train": (pseudonym("img/x0.png"), pseudonym("img/x1.png")),
        "val": (pseudonym("img/x2.png"),),
        "test": (pseudonym("img/x3.png"),),
    }
    assert dataset.records[0].patient_id == dataset.records[1].patient_id == pseudonym("P1")
    # One patient in two splits.
    rows[3] = "img/x2.png,1,P1,val"
    (root / "my_labels.csv").write_text("\n".join(rows) + "\n")
    text = _error(csv_labels.read, root)
    assert "my_labels.csv" in text and pseudonym("P1") in text and "img/x2.png" in text
    assert "P1," not in text and "P1 " not in text


def test_csv_integer_grades_sort_numerically(tmp_path: Path) -> None:
    grades = ["10", "9", "2", "0"]
    rows = ["image,label", *(f"img/x{i}.png,{g}" for i, g in enumerate(grades))]
    dataset = csv_labels.read(_csv_root(tmp_path, rows))
    assert dataset.classes == ("0", "2", "9", "10")


def test_csv_classes_txt_sets_order_and_refuses_unknown(tmp_path: Path) -> None:
    rows = ["image,label", "img/x0.png,sound", "img/x1.png,caries"]
    root = _csv_root(tmp_path, rows)
    (root / "classes.txt").write_text("sound\ncaries\nabscess\n")
    assert csv_labels.read(root).classes == ("sound", "caries", "abscess")
    (root / "labels.csv").write_text("\n".join([*rows, "img/x2.png,cavity"]) + "\n")
    text = _error(csv_labels.read, root)
    assert "labels.csv line 4" in text and "cavity" in text and "classes.txt" in text


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (["file,label", "img/x0.png,a"], ["labels.csv line 1", "image missing"]),
        (
            ["image,label", "img/x0.png,a", "img/x1.png,b", "img/x0.png,b"],
            ["labels.csv line 4", "listed twice", "line 2"],
        ),
        (["image,label", "img/x0.png,a", "img/nope.png,b"], ["labels.csv line 3", "not found"]),
        (["image,label", "img/x0.png,a", "img/x1.png,"], ["labels.csv line 3", "empty label"]),
        (["image,label", "img/x0.png,a", "../x1.png,b"], ["labels.csv line 3", "leaves"]),
        (["image,label", "/etc/passwd.png,a"], ["labels.csv line 2", "absolute path"]),
        (["image,label", "img/x0.png,a", "img/x1.png,a"], ["labels.csv", "only one class"]),
        (["image,label,split", "img/x0.png,a,dev"], ["labels.csv line 2", "unknown split"]),
    ],
)
def test_csv_errors_name_file_and_line(
    tmp_path: Path, rows: list[str], expected: list[str]
) -> None:
    text = _error(csv_labels.read, _csv_root(tmp_path, rows))
    for part in expected:
        assert part in text, text


def test_csv_ambiguous_files(tmp_path: Path) -> None:
    root = _csv_root(tmp_path, ["image,label", "img/x0.png,a"], name="a.csv")
    (root / "b.csv").write_text("image,label\nimg/x1.png,b\n")
    text = _error(csv_labels.read, root)
    assert "a.csv" in text and "b.csv" in text and "labels.csv" in text


# ---------------------------------------------------------------- plain images


def test_plain_images_folder_and_single_file(tmp_path: Path) -> None:
    root = tmp_path / "xrays"
    _png(root / "pano1.png")
    _png(root / "pano2.png")
    (root / "outputs").mkdir()
    _png(root / "outputs" / "ignored.png")
    assert images.looks_like(root)
    dataset = images.read(root)
    assert (dataset.layout, dataset.task, dataset.classes) == ("images", "images", ())
    assert dataset.records == ()
    assert sorted(r.source_name for r in dataset.test_records) == ["pano1", "pano2"]
    assert all(r.class_label is None and not r.has_label for r in dataset.test_records)
    single = images.read(root / "pano1.png")
    assert len(single.test_records) == 1 and single.root == root


def test_plain_images_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no 2D image files" in _error(images.read, empty)
    root = tmp_path / "twice"
    _png(root / "a.png")
    _png(root / "a.jpg")
    text = _error(images.read, root)
    assert "a.png" in text and "a.jpg" in text
    (tmp_path / "notes.txt").write_text("x")
    assert "notes.txt" in _error(images.read, tmp_path / "notes.txt")


# ---------------------------------------------------------------- write


def test_write_imagefolder_round_trip(tmp_path: Path) -> None:
    root = _folder(
        tmp_path / "d",
        {"train/a": 2, "train/b": 1, "val/a": 1, "val/b": 1, "test/a": 1, "test/b": 1},
    )
    (root / "patients.csv").write_text(
        "image,patient\n"
        + "".join(
            f"{p.relative_to(root).as_posix()},P{i}\n"
            for i, p in enumerate(sorted(root.rglob("*.png")))
        )
    )
    source = imagefolder.read(root)
    out = imagefolder.write(source, tmp_path / "out")
    back = imagefolder.read(out)
    assert back.classes == source.classes
    assert _labels(back) == _labels(source)
    assert back.predefined_splits == source.predefined_splits
    original = root / "train" / "a" / "img1.png"
    assert (out / "train" / "a" / "img1.png").read_bytes() == original.read_bytes()
    # patients.csv carries pseudonyms only.
    patients = (out / "patients.csv").read_text()
    assert "P1" not in patients.replace(pseudonym("P1"), "") and pseudonym("P1") in patients
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # An existing destination is refused and left alone.
    with pytest.raises(OutputError):
        imagefolder.write(source, out)
    assert sorted(p.name for p in out.iterdir()) == ["patients.csv", "test", "train", "val"]


def test_write_from_csv_to_imagefolder(tmp_path: Path) -> None:
    root = tmp_path / "csvdata"
    _png(root / "one" / "x.png", 1)
    _png(root / "two" / "x.png", 2)
    _png(root / "y.png", 3)
    (root / "labels.csv").write_text("image,label\none/x.png,2\ntwo/x.png,2\ny.png,10\n")
    source = csv_labels.read(root)
    out = imagefolder.write(source, tmp_path / "out")
    assert not (out / "patients.csv").exists()
    back = imagefolder.read(out)
    assert set(back.classes) == set(source.classes)
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert names[0] == "10/y.png" and names[1].startswith("2/") and "2/x.png" in names
    # Same images (by content) with the same labels.
    by_bytes = {r.image_path.read_bytes(): r.class_label for r in source.records}
    assert {r.image_path.read_bytes(): r.class_label for r in back.records} == by_bytes
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_write_refuses_what_read_would_refuse(tmp_path: Path) -> None:
    rows = [
        "image,label,split",
        "img/x0.png,a,train",
        "img/x1.png,b,train",
        "img/x2.png,a,test",  # no b in test: split folders would differ in classes
    ]
    source = csv_labels.read(_csv_root(tmp_path, rows))
    with pytest.raises(OutputError) as caught:
        imagefolder.write(source, tmp_path / "out")
    assert "'test'" in str(caught.value) and "no b" in str(caught.value)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    unlabelled = images.read(tmp_path / "csvdata" / "img")
    with pytest.raises(OutputError):
        imagefolder.write(unlabelled, tmp_path / "out")


def test_write_prefixes_clashing_file_names(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"caries": 1, "lesion": 1, "sound": 1})
    source = imagefolder.read(root)
    merged = ImageDataset(
        root=source.root,
        layout=source.layout,
        task=source.task,
        classes=("lesion", "sound"),
        records=tuple(
            r if r.class_label == "sound" else replace(r, class_label="lesion")
            for r in source.records
        ),
    )
    out = imagefolder.write(merged, tmp_path / "out")
    names = sorted(p.name for p in (out / "lesion").iterdir())
    assert len(names) == 2 and "img0.png" in names
    other = next(n for n in names if n != "img0.png")
    assert other.endswith("_img0.png") and len(other) == len("12345678_img0.png")
    assert imagefolder.read(out).classes == ("lesion", "sound")


def test_imagefolder_mixed_split_and_class_folders(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"train/a": 1, "train/b": 1, "extra": 1})
    text = _error(imagefolder.read, root)
    assert "train/" in text and "train, val or test" in text


def test_csv_wrong_field_count_and_header_only(tmp_path: Path) -> None:
    root = _csv_root(tmp_path, ["image,label", "img/x0.png,a", "img/x1.png,b,extra"])
    assert "labels.csv line 3" in _error(csv_labels.read, root)
    (root / "labels.csv").write_text("image,label\n")
    assert "lists no images" in _error(csv_labels.read, root)
