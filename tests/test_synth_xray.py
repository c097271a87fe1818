"""Synthetic 2D caries X-rays: determinism, layouts read back, imbalance, difficulty."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from dentpy.data.dataset import open_any
from dentpy.data.image2d import read_image2d
from dentpy.data.samples2d import ImageDataset
from dentpy.data.synth.xray import generate_xray, write_xray_dataset
from dentpy.errors import OutputError, SpecError

N_IMAGES = 40


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_xray_dataset(tmp_path_factory.mktemp("xray"), images=N_IMAGES, seed=3)


@pytest.fixture(scope="module")
def samples() -> list:
    return [generate_xray(3, i, "bitewing") for i in range(N_IMAGES)]


def _auc(negatives: list[float], positives: list[float]) -> float:
    """Mann-Whitney AUC by ranks (ties get average rank)."""
    values = np.array(negatives + positives)
    order = values.argsort(kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for v in np.unique(values):
        tie = values == v
        ranks[tie] = ranks[tie].mean()
    n_pos, n_neg = len(positives), len(negatives)
    return float((ranks[n_neg:].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_generate_is_deterministic_and_seed_dependent() -> None:
    a, b = generate_xray(5, 2, "bitewing"), generate_xray(5, 2, "bitewing")
    assert a.image.dtype == np.uint16 and a.image.shape == (256, 384)
    assert a.image.max() <= 4095
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, generate_xray(6, 2, "bitewing").image)
    assert set(np.unique(a.mask)) <= {0, 1, 2, 3}
    upper = [t for t in a.teeth if t.fdi < 30]
    assert 4 <= len(upper) <= 5 and 4 <= len(a.teeth) - len(upper) <= 5


def test_periapical() -> None:
    sample = generate_xray(0, 1, "periapical")
    assert 2 <= len(sample.teeth) <= 4
    assert sample.image.dtype == np.uint16
    with pytest.raises(SpecError):
        generate_xray(0, 0, "panoramic")


def test_written_files_are_byte_identical(tmp_path: Path, dataset: dict[str, Path]) -> None:
    again = write_xray_dataset(tmp_path / "a", images=3, seed=3)
    for rel in ("images/xray_000.png", "masks/xray_001.png"):
        assert (again["root"] / rel).read_bytes() == (dataset["root"] / rel).read_bytes()
    other = write_xray_dataset(tmp_path / "b", images=1, seed=4)
    first = "images/xray_000.png"
    assert (other["root"] / first).read_bytes() != (dataset["root"] / first).read_bytes()


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    write_xray_dataset(tmp_path, images=1)
    with pytest.raises(OutputError):
        write_xray_dataset(tmp_path, images=1)


def test_layouts_read_back(dataset: dict[str, Path]) -> None:
    with open(dataset["surfaces"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    teeth = {(r["image"], r["tooth"]) for r in rows}
    patients = {r["patient"] for r in rows}
    assert len(patients) == N_IMAGES // 2
    assert len(rows) == 3 * len(teeth)

    binary = open_any(dataset["caries_binary"])
    assert isinstance(binary, ImageDataset) and binary.layout == "imagefolder"
    assert binary.classes == ("caries", "sound") and len(binary.records) == len(teeth)
    assert len({r.patient_id for r in binary.records}) == N_IMAGES // 2

    severity = open_any(dataset["caries_severity"])
    assert isinstance(severity, ImageDataset) and severity.layout == "csv"
    assert severity.classes == ("sound", "mild", "moderate", "severe")
    assert len(severity.records) == len(teeth)

    lesions = {(r["image"], r["tooth"], r["surface"]) for r in rows if int(r["grade"]) > 0}
    for name in ("detection_coco", "detection_yolo"):
        det = open_any(dataset[name])
        assert isinstance(det, ImageDataset) and det.layout == name.split("_")[1]
        assert det.classes == ("mild", "moderate", "severe")
        pool = [*det.records, *det.test_records]
        assert len(pool) == N_IMAGES
        assert sum(len(r.boxes or ()) for r in pool) == len(lesions)
        det.load(pool[0])


def test_imbalance(samples: list) -> None:
    worst = np.array([t.worst for s in samples for t in s.teeth])
    counts = np.bincount(worst, minlength=4)
    assert 0.55 <= counts[0] / worst.size <= 0.65
    assert counts[1] > counts[2] > counts[3] > 0
    grades = [g for s in samples for t in s.teeth for g in t.grades.values()]
    assert np.mean(np.array(grades) == 0) > 0.75  # most surfaces sound


def test_grades_match_mask(samples: list) -> None:
    for sample in samples:
        for tooth in sample.teeth:
            x0, y0, x1, y1 = tooth.box
            inside = sample.mask[y0:y1, x0:x1]
            for grade in set(tooth.grades.values()) - {0}:
                assert (inside == grade).any(), (tooth.fdi, tooth.grades)


def test_not_trivial_but_visible(samples: list) -> None:
    sound: list[float] = []
    caries: list[float] = []
    darker = []
    for sample in samples:
        image = sample.image.astype(float)
        for i, tooth in enumerate(sample.teeth, start=1):
            x0, y0, x1, y1 = tooth.box
            (caries if tooth.worst else sound).append(float(image[y0:y1, x0:x1].mean()))
            own = sample.tooth_map == i
            lesion = own & (sample.mask > 0)
            if not lesion.any():
                continue
            ys, xs = np.nonzero(lesion)
            ring = np.zeros_like(own)
            ring[max(ys.min() - 6, 0) : ys.max() + 7, max(xs.min() - 6, 0) : xs.max() + 7] = True
            ring &= own & (sample.mask == 0)
            darker.append(image[lesion].mean() < image[ring].mean())
    auc = _auc(sound, caries)
    assert 0.25 < auc < 0.75, auc
    assert np.mean(darker) > 0.8


def test_crops_are_native_16_bit(dataset: dict[str, Path]) -> None:
    crops = sorted((dataset["caries_severity"] / "crops").glob("*.png"))[:3]
    assert crops and all(read_image2d(p).array.dtype == np.uint16 for p in crops)
    mask = read_image2d(dataset["masks"] / "xray_000.png").array
    assert mask.dtype == np.uint8 and mask.max() <= 3
