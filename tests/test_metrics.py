"""Segmentation metrics: closed forms, MONAI 1.6.1 as oracle, and the empty-mask policy."""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import asdict, fields

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from dentpy.metrics import (
    EMPTY_RULES,
    METRIC_DEFINITIONS,
    BinaryMetrics,
    binary_metrics,
    case_metrics,
    hd95_mm,
    image_diagonal_mm,
    summarize,
    surface_distances_mm,
    surface_voxels,
)


def blob(shape: tuple[int, ...], seed: int, sigma: float = 3.0, fill: float = 0.3) -> np.ndarray:
    """Smooth random shape: Gaussian-filtered noise, top `fill` fraction kept."""
    noise = gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma)
    return noise > np.quantile(noise, 1.0 - fill)


def ball(shape: tuple[int, ...], spacing: tuple[float, ...], radius_mm: float) -> np.ndarray:
    """Voxels whose centre lies within radius_mm of the array centre."""
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing, strict=True)]
    grids = np.meshgrid(*axes, indexing="ij")
    return sum(g**2 for g in grids) <= radius_mm**2


def monai_hd95(pred: np.ndarray, true: np.ndarray, spacing: tuple[float, ...]) -> float:
    from monai.metrics import compute_hausdorff_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = compute_hausdorff_distance(
            torch.from_numpy(pred)[None, None],
            torch.from_numpy(true)[None, None],
            include_background=True,
            percentile=95,
            directed=False,
            spacing=list(spacing),
        )
    return float(value.item())


def monai_dice(pred: np.ndarray, true: np.ndarray) -> float:
    from monai.metrics import compute_dice

    value = compute_dice(
        torch.from_numpy(pred)[None, None].float(),
        torch.from_numpy(true)[None, None].float(),
        include_background=True,
    )
    return float(value.item())


def close(a: float, b: float) -> bool:
    # MONAI returns float32, whose resolution is ~1e-7 relative; 1e-6 relative is the
    # tightest honest comparison for distances of tens of mm.
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)


# -- closed forms ---------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3])
def test_shifted_cube_closed_form(axis: int, k: int) -> None:
    spacing = (0.5, 0.7, 1.3)
    true = np.zeros((30, 30, 30), dtype=bool)
    true[8:18, 8:18, 8:18] = True
    pred = np.roll(true, k, axis=axis)
    m = binary_metrics(pred, true, spacing)
    overlap = 10 * 10 * (10 - k)
    assert m.dice == pytest.approx(2 * overlap / 2000, abs=1e-12)
    assert m.iou == pytest.approx(overlap / (2000 - overlap), abs=1e-12)
    assert m.precision == m.recall == pytest.approx(overlap / 1000, abs=1e-12)
    assert m.specificity == pytest.approx(1 - (1000 - overlap) / (30**3 - 1000), abs=1e-12)
    # Every surface voxel moves by k along `axis`, so no distance exceeds k * spacing, and
    # the leading face (20% of the surface) is at exactly that distance.
    assert m.hd95_mm == pytest.approx(k * spacing[axis], abs=1e-12)  # KD-tree path: exact
    # The dense distance-transform path works in float32: ~1e-7 relative.
    assert hd95_mm(pred, true, spacing, method="edt") == pytest.approx(k * spacing[axis], rel=1e-6)
    assert m.empty_rule == "none"
    assert m.volume_pred_mm3 == pytest.approx(1000 * 0.5 * 0.7 * 1.3)
    assert m.abs_volume_error_mm3 == pytest.approx(0.0, abs=1e-9)


def test_concentric_spheres_hd95_is_radius_difference() -> None:
    spacing = (0.4, 0.4, 0.5)
    shape = (50, 50, 40)
    inner, outer = ball(shape, spacing, 4.0), ball(shape, spacing, 6.5)
    assert hd95_mm(inner, outer, spacing) == pytest.approx(2.5, abs=max(spacing))
    assert close(hd95_mm(inner, outer, spacing), monai_hd95(inner, outer, spacing))


def test_identical_masks() -> None:
    mask = blob((20, 22, 18), seed=3)
    m = binary_metrics(mask, mask, (1.0, 1.0, 2.0))
    assert (m.dice, m.iou, m.precision, m.recall, m.specificity) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert m.hd95_mm == 0.0


def test_surface_voxels_match_monai_edges() -> None:
    from scipy.ndimage import binary_erosion

    for seed in range(3):
        mask = blob((24, 20, 16), seed=seed)  # touches the array border: border is outside
        assert np.array_equal(surface_voxels(mask), mask ^ binary_erosion(mask))


# -- MONAI as oracle ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "shape, spacing",
    [((64, 80), (0.3, 0.7)), ((40, 48, 36), (0.3, 0.45, 0.8))],
)
def test_hd95_and_dice_match_monai(seed: int, shape: tuple[int, ...], spacing: tuple) -> None:
    true = blob(shape, seed)
    pred = blob(shape, seed + 100, sigma=2.5, fill=0.25) | np.roll(true, 2, axis=0)
    expected = monai_hd95(pred, true, spacing)
    for method in ("auto", "kdtree", "edt"):
        assert close(hd95_mm(pred, true, spacing, method=method), expected), method
    assert close(binary_metrics(pred, true, spacing).dice, monai_dice(pred, true))


@pytest.mark.parametrize("seed", range(3))
def test_directed_distances_match_monai(seed: int) -> None:
    from monai.metrics.utils import get_edge_surface_distance

    spacing = (0.3, 0.3, 0.6)
    a, b = blob((30, 34, 26), seed), blob((30, 34, 26), seed + 50, sigma=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, (expected,), _ = get_edge_surface_distance(
            torch.from_numpy(a), torch.from_numpy(b), spacing=spacing
        )
    for method in ("kdtree", "edt"):
        mine = np.sort(surface_distances_mm(a, b, spacing, method=method))
        np.testing.assert_allclose(mine, np.sort(expected.numpy()), rtol=1e-6, atol=1e-6)


def test_percentile_100_is_hausdorff_and_tiny_masks() -> None:
    spacing = (0.5, 0.25)
    a = np.zeros((9, 9), dtype=bool)
    b = np.zeros((9, 9), dtype=bool)
    a[1, 1] = True
    b[6, 5] = True
    assert hd95_mm(a, b, spacing, percentile=100) == pytest.approx(math.hypot(2.5, 1.0))
    assert close(hd95_mm(a, b, spacing), monai_hd95(a, b, spacing))


# -- empty masks ----------------------------------------------------------------------------

SHAPE = (12, 10, 8)
SPACING = (0.5, 0.6, 1.5)
DIAGONAL = math.sqrt((12 * 0.5) ** 2 + (10 * 0.6) ** 2 + (8 * 1.5) ** 2)


@pytest.mark.parametrize(
    "pred_on, true_on, rule, dice, precision, recall, hd",
    [
        (False, False, "both_empty", 1.0, 1.0, 1.0, 0.0),
        (False, True, "pred_empty", 0.0, 0.0, 0.0, DIAGONAL),
        (True, False, "true_empty", 0.0, 0.0, 0.0, DIAGONAL),
        (True, True, "none", 1.0, 1.0, 1.0, 0.0),
    ],
)
def test_empty_mask_truth_table(
    pred_on: bool, true_on: bool, rule: str, dice: float, precision: float, recall: float, hd: float
) -> None:
    cube = np.zeros(SHAPE, dtype=bool)
    cube[3:7, 3:6, 2:5] = True
    empty = np.zeros(SHAPE, dtype=bool)
    m = binary_metrics(cube if pred_on else empty, cube if true_on else empty, SPACING)
    assert m.empty_rule == rule
    assert (m.dice, m.iou, m.precision, m.recall) == (dice, dice, precision, recall)
    assert m.hd95_mm == pytest.approx(hd)
    false_positives = 36 if rule == "true_empty" else 0
    assert m.specificity == pytest.approx(
        1 - false_positives / (cube.size - (36 if true_on else 0))
    )
    assert all(math.isfinite(v) for v in asdict(m).values() if isinstance(v, float))


def test_image_diagonal() -> None:
    assert image_diagonal_mm(SHAPE, SPACING) == pytest.approx(DIAGONAL)
    empty = np.zeros(SHAPE, dtype=bool)
    full = np.ones(SHAPE, dtype=bool)
    assert hd95_mm(empty, full, SPACING) == pytest.approx(DIAGONAL)
    assert surface_distances_mm(empty, full, SPACING).size == 0
    assert np.isinf(surface_distances_mm(full, empty, SPACING)).all()


def test_mean_hd95_worsens_as_misses_increase() -> None:
    """RELIABILITY 25: a model that misses more structures never scores a better HD95."""
    shape, spacing = (24, 24, 20), (0.4, 0.4, 0.6)
    truths = [blob(shape, seed, fill=0.1) for seed in range(8)]
    preds = [np.roll(t, 1, axis=1) for t in truths]  # a decent model: 1-voxel offset
    means, dices = [], []
    for misses in range(len(truths) + 1):
        rows = []
        for i, (p, t) in enumerate(zip(preds, truths, strict=True)):
            guess = np.zeros_like(p) if i < misses else p
            rows += case_metrics(
                guess.astype(np.uint8), t.astype(np.uint8), {"x": 1}, spacing, f"c{i}"
            )
        (summary,) = summarize(rows)
        assert summary["n_pred_empty"] == misses and summary["n_none"] == len(truths) - misses
        means.append(summary["hd95_mm_mean"])
        dices.append(summary["dice_mean"])
    assert all(b > a for a, b in itertools.pairwise(means)), means
    assert all(b < a for a, b in itertools.pairwise(dices)), dices


# -- per case and aggregation ---------------------------------------------------------------


def test_case_metrics_union_class_and_summary() -> None:
    spacing = (0.5, 0.5, 0.5)
    true = np.zeros((20, 20, 20), dtype=np.uint8)
    true[2:8, 2:8, 2:8] = 1  # tooth
    true[12:14, 3:17, 5:7] = 2  # left canal
    true[15:17, 3:17, 5:7] = 3  # right canal
    swapped = true.copy()
    swapped[true == 2], swapped[true == 3] = 3, 2  # left/right confused
    classes = {"tooth": 1, "ian": [2, 3], "ian_left": 2}
    rows = case_metrics(swapped, true, classes, spacing, "case-a")
    by_class = {r["class"]: r for r in rows}
    assert [r["class"] for r in rows] == ["tooth", "ian", "ian_left"]
    assert by_class["ian"]["dice"] == 1.0 and by_class["ian_left"]["dice"] == 0.0
    assert set(rows[0]) == {"case_id", "class", *(f.name for f in fields(BinaryMetrics))}

    missed = true.copy()
    missed[missed >= 2] = 0
    rows += case_metrics(missed, true, classes, spacing, "case-b")
    summary = {s["class"]: s for s in summarize(rows)}
    ian = summary["ian"]
    assert ian["n_cases"] == 2 and ian["n_none"] == 1 and ian["n_pred_empty"] == 1
    assert ian["n_both_empty"] == 0 and ian["n_true_empty"] == 0
    assert ian["dice_mean"] == 0.5 and ian["dice_sd"] == pytest.approx(math.sqrt(0.5))
    diagonal = image_diagonal_mm(true.shape, spacing)
    assert ian["hd95_mm_mean"] == pytest.approx(diagonal / 2)
    assert summary["tooth"]["dice_sd"] == 0.0 and summary["tooth"]["n_none"] == 2


def test_summarize_single_case_sd_zero_and_refusals() -> None:
    mask = np.zeros((6, 6), dtype=np.uint8)
    mask[1:4, 1:4] = 1
    rows = case_metrics(mask, mask, {"a": 1}, (1.0, 1.0), "only")
    (summary,) = summarize(rows)
    assert summary["n_cases"] == 1 and summary["dice_sd"] == 0.0
    assert all(f"n_{rule}" in summary for rule in EMPTY_RULES)
    with pytest.raises(ValueError, match="duplicate"):
        summarize(rows + rows)
    with pytest.raises(ValueError, match="non-finite"):
        summarize([{**rows[0], "hd95_mm": float("nan")}])
    assert summarize([]) == []


def test_definitions_cover_every_field() -> None:
    assert set(METRIC_DEFINITIONS) == {f.name for f in fields(BinaryMetrics)}


def test_input_validation() -> None:
    mask = np.zeros((5, 5, 5), dtype=bool)
    with pytest.raises(ValueError, match="binary"):
        hd95_mm(np.full((5, 5, 5), 0.4), mask, (1, 1, 1))
    with pytest.raises(ValueError, match="shapes differ"):
        binary_metrics(mask, mask[:4], (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        hd95_mm(mask, mask, (1, 1))
    with pytest.raises(ValueError, match="positive"):
        hd95_mm(mask, mask, (1, 0, 1))
    with pytest.raises(ValueError, match="percentile"):
        hd95_mm(mask, mask, (1, 1, 1), percentile=101)
    with pytest.raises(ValueError, match="label ids"):
        case_metrics(mask.astype(np.uint8), mask.astype(np.uint8), {"x": []}, (1, 1, 1), "c")
    # 0/1 integer masks are fine
    assert hd95_mm(mask.astype(np.uint8), mask.astype(np.int64), (1, 1, 1)) == 0.0


def test_dense_noisy_masks_match_monai() -> None:
    """Speckle-like predictions (early training) take the distance-transform path."""
    rng = np.random.default_rng(7)
    spacing = (0.3, 0.35, 0.5)
    pred, true = rng.random((60, 60, 60)) < 0.3, rng.random((60, 60, 60)) < 0.3
    assert close(hd95_mm(pred, true, spacing), monai_hd95(pred, true, spacing))
