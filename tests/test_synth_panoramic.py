"""Synthetic panoramics and tooth-enumeration boxes: determinism, FDI layout, exact boxes,
COCO/YOLO sets read back, `dentpy data check` clean, bitewing tooth sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.data.dataset import open_any
from dentpy.data.samples2d import ImageDataset, ImageRecord
from dentpy.data.synth.panoramic import FDI_ORDER, SHAPE, generate_panoramic
from dentpy.data.synth.xray import generate_xray, write_xray_dataset

SEED = 11
N_IMAGES = 3


@pytest.fixture(scope="module")
def samples() -> list:
    return [generate_panoramic(SEED, i) for i in range(8)]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("pano")
    return write_xray_dataset(out, images=N_IMAGES, seed=SEED, kind="panoramic")


def _pool(dataset: ImageDataset) -> dict[str, ImageRecord]:
    return {r.image_path.stem: r for r in (*dataset.records, *dataset.test_records)}


def test_deterministic_and_seed_dependent() -> None:
    a, b = generate_panoramic(3, 1), generate_panoramic(3, 1)
    assert a.image.dtype == np.uint16 and a.image.shape == SHAPE
    assert 0 < a.image.max() <= 4095
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert a.teeth == b.teeth and a.lesions == b.lesions
    assert not np.array_equal(a.image, generate_panoramic(3, 2).image)
    assert not np.array_equal(a.image, generate_panoramic(4, 1).image)
    assert set(np.unique(a.mask)) <= {0, 1, 2, 3}


def test_teeth_numbered_and_on_the_right_side(samples: list) -> None:
    width = SHAPE[1]
    seen: set[int] = set()
    third_molars_missing = 0
    for sample in samples:
        fdis = [t.fdi for t in sample.teeth]
        assert len(fdis) == len(set(fdis)) and set(fdis) <= set(FDI_ORDER)
        assert fdis == sorted(fdis, key=FDI_ORDER.index)
        assert len(fdis) >= 26  # only a few teeth missing
        seen |= set(fdis)
        third_molars_missing += 4 - sum(f % 10 == 8 for f in fdis)
        centre = {
            t.fdi: ((t.box[0] + t.box[2]) / 2, (t.box[1] + t.box[3]) / 2) for t in sample.teeth
        }
        lower_y = np.mean([y for f, (_, y) in centre.items() if f // 10 in (3, 4)])
        upper_y = np.mean([y for f, (_, y) in centre.items() if f // 10 in (1, 2)])
        assert upper_y < lower_y
        for fdi, (x, y) in centre.items():
            quadrant, pos = divmod(fdi, 10)
            # Patient's right on the image's left: quadrants 1 and 4 left, 2 and 3 right.
            assert (x < width / 2) == (quadrant in (1, 4)), (fdi, x)
            if quadrant in (1, 2):  # above the lower tooth nearest in x
                below = min(
                    (f for f in centre if f // 10 in (3, 4)), key=lambda f: abs(centre[f][0] - x)
                )
                assert y < centre[below][1], (fdi, below)
            # Teeth further from the midline have higher position numbers.
            for other, (ox, _) in centre.items():
                if other // 10 == quadrant and other % 10 > pos:
                    assert abs(ox - width / 2) > abs(x - width / 2), (fdi, other)
    assert seen == set(FDI_ORDER)
    assert third_molars_missing > 0
    assert sum(len(s.lesions) for s in samples) > 0


def test_boxes_inside_and_tight(samples: list) -> None:
    height, width = SHAPE
    for sample in samples:
        assert len(sample.tooth_masks) == len(sample.teeth)
        for i, (tooth, own) in enumerate(zip(sample.teeth, sample.tooth_masks, strict=True)):
            x0, y0, x1, y1 = tooth.box
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, tooth
            assert own.shape == (y1 - y0, x1 - x0)
            # The tooth's pixels reach all four edges of its box.
            assert own[0].any() and own[-1].any() and own[:, 0].any() and own[:, -1].any()
            # Pixels drawn for this tooth (where no later tooth overlaps) are inside its box.
            ys, xs = np.nonzero(sample.tooth_map == i + 1)
            assert ys.size > 0
            assert ys.min() >= y0 and ys.max() < y1 and xs.min() >= x0 and xs.max() < x1
            assert own[ys - y0, xs - x0].all()
            # The tooth is denser than the dark gaps: its pixels are brighter than the image.
            assert sample.image[y0:y1, x0:x1][own].mean() > np.median(sample.image)
        boxes = {t.fdi: t.box for t in sample.teeth}
        for lesion in sample.lesions:
            lx0, ly0, lx1, ly1 = lesion.box
            tx0, ty0, tx1, ty1 = boxes[lesion.fdi]
            assert tx0 <= lx0 < lx1 <= tx1 and ty0 <= ly0 < ly1 <= ty1
            assert (sample.mask[ly0:ly1, lx0:lx1] == lesion.grade).any()


def test_written_teeth_sets_read_back(written: dict[str, Path]) -> None:
    expected = {f"xray_{i:03d}": generate_panoramic(SEED, i) for i in range(N_IMAGES)}
    for name in ("teeth_coco", "teeth_yolo"):
        dataset = open_any(written[name])
        assert isinstance(dataset, ImageDataset) and dataset.layout == name.split("_")[1]
        assert dataset.classes == tuple(str(f) for f in FDI_ORDER)
        pool = _pool(dataset)
        assert set(pool) == set(expected)
        for stem, sample in expected.items():
            boxes = sorted(pool[stem].boxes or (), key=lambda b: int(b.label))
            assert [b.label for b in boxes] == [str(t.fdi) for t in sample.teeth]
            if name == "teeth_coco":
                assert [b.fdi for b in boxes] == [t.fdi for t in sample.teeth]
            got = np.array([[b.x_min, b.y_min, b.x_max, b.y_max] for b in boxes])
            want = np.array([t.box for t in sample.teeth], np.float64)
            np.testing.assert_allclose(got, want, atol=0.01)
    lesions = open_any(written["detection_coco"])
    assert isinstance(lesions, ImageDataset)
    assert lesions.classes == ("mild", "moderate", "severe")
    pool = _pool(lesions)
    for stem, sample in expected.items():
        assert len(pool[stem].boxes or ()) == len(sample.lesions)


def test_cli_panoramic_and_data_check(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["synth", "xray", "--out", str(tmp_path), "--images", "2", "--kind", "panoramic"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "teeth_coco" in result.output and "teeth_yolo" in result.output
    teeth = tmp_path / "XraySynth" / "teeth_coco"
    check = runner.invoke(app, ["data", "check", str(teeth)], catch_exceptions=False)
    assert check.exit_code == 0, check.output
    assert "no problems" in check.output


def test_bitewing_teeth_sets(tmp_path: Path) -> None:
    paths = write_xray_dataset(tmp_path, images=2, seed=5)
    samples = {f"xray_{i:03d}": generate_xray(5, i, "bitewing") for i in range(2)}
    for name in ("teeth_coco", "teeth_yolo"):
        dataset = open_any(paths[name])
        assert isinstance(dataset, ImageDataset)
        assert dataset.classes == tuple(str(f) for f in FDI_ORDER if f % 10 >= 4)
        pool = _pool(dataset)
        for stem, sample in samples.items():
            boxes = sorted(pool[stem].boxes or (), key=lambda b: (b.x_min, b.y_min))
            teeth = sorted(sample.teeth, key=lambda t: (t.box[0], t.box[1]))
            assert [b.label for b in boxes] == [str(t.fdi) for t in teeth]
            got = np.array([[b.x_min, b.y_min, b.x_max, b.y_max] for b in boxes])
            np.testing.assert_allclose(got, np.array([t.box for t in teeth], float), atol=0.01)
            height, width = sample.image.shape
            for tooth in sample.teeth:
                x0, y0, x1, y1 = tooth.box
                assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
