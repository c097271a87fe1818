"""Instance metrics: closed forms, conventions, and MONAI 1.6.1's panoptic quality as oracle."""

from __future__ import annotations

import json
import math
from dataclasses import fields

import numpy as np
import pytest
import torch

from dentpy.metrics.instance import (
    INSTANCE_DEFINITIONS,
    InstanceResult,
    MatchedInstance,
    assign_pairs,
    match_instances,
)
from dentpy.metrics.segmentation import binary_metrics
from dentpy.metrics.surface import hd95_mm

SPACING = (0.5, 0.5, 1.0)
VOXEL_MM3 = 0.25


def box(labels: np.ndarray, value: int, *bounds: tuple[int, int]) -> None:
    labels[tuple(slice(a, b) for a, b in bounds)] = value


def no_nan(result: InstanceResult) -> str:
    """The result as JSON; raises on NaN/inf anywhere in it."""
    return json.dumps(result.to_dict(), allow_nan=False)


# -- closed forms ---------------------------------------------------------------------------


def closed_form_case() -> tuple[np.ndarray, np.ndarray]:
    truth = np.zeros((20, 20, 10), dtype=np.uint8)
    box(truth, 31, (1, 5), (1, 5), (1, 5))  # predicted perfectly
    box(truth, 32, (8, 12), (1, 5), (1, 5))  # predicted one voxel shifted along axis 0
    box(truth, 41, (1, 5), (8, 12), (1, 5))  # not predicted
    box(truth, 42, (8, 12), (8, 12), (1, 5))  # predicted perfectly, numbered 43
    pred = np.zeros_like(truth)
    box(pred, 31, (1, 5), (1, 5), (1, 5))
    box(pred, 32, (9, 13), (1, 5), (1, 5))
    box(pred, 43, (8, 12), (8, 12), (1, 5))
    box(pred, 44, (15, 18), (15, 18), (6, 9))  # where the reference has nothing
    return pred, truth


def test_closed_form_counts_and_scores() -> None:
    pred, truth = closed_form_case()
    r = match_instances(pred, truth, SPACING)
    # 32: overlap 3x4x4 = 48 of a 4x4x4 box each -> IoU 48/80, Dice 96/128.
    assert [(m.truth_label, m.pred_label) for m in r.matched] == [(31, 31), (32, 32), (42, 43)]
    assert [m.iou for m in r.matched] == [1.0, 0.6, 1.0]
    assert [m.dice for m in r.matched] == [1.0, 0.75, 1.0]
    assert [m.misnumbered for m in r.matched] == [False, False, True]
    assert (r.tp, r.fp, r.fn) == (3, 1, 1)
    assert r.missed == (41,) and r.extra == (44,)
    assert r.precision == r.recall == r.f1 == r.rq == 0.75
    assert r.misnumbered == 1
    assert r.misnumbering_rate == pytest.approx(1 / 3, abs=1e-15)
    assert r.pq == pytest.approx(2.6 / 4, abs=1e-15)
    assert r.sq == pytest.approx(2.6 / 3, abs=1e-15)
    assert r.pq == pytest.approx(r.sq * r.rq, abs=1e-15)
    assert r.mean_matched_dice == pytest.approx(2.75 / 3, abs=1e-15)
    # Only 32 is off, by one voxel along axis 0 (0.5 mm) on every surface voxel that moved.
    assert [m.hd95_mm for m in r.matched] == [0.0, pytest.approx(0.5, abs=1e-12), 0.0]
    assert r.mean_matched_hd95_mm == pytest.approx(0.5 / 3, abs=1e-12)
    assert r.volumes_true_mm3 == {31: 16.0, 32: 16.0, 41: 16.0, 42: 16.0}
    assert r.volumes_pred_mm3 == {31: 16.0, 32: 16.0, 43: 16.0, 44: 27 * VOXEL_MM3}
    assert all(m.volume_true_mm3 == m.volume_pred_mm3 == 16.0 for m in r.matched)


def test_swapped_numbers_are_detections_not_misses() -> None:
    truth = np.zeros((12, 12), dtype=np.int16)
    box(truth, 31, (1, 5), (1, 5))
    box(truth, 41, (7, 11), (7, 11))
    pred = np.where(truth == 31, 41, np.where(truth == 41, 31, 0)).astype(np.int16)
    r = match_instances(pred, truth, (0.3, 0.3))
    assert [(m.truth_label, m.pred_label) for m in r.matched] == [(31, 41), (41, 31)]
    assert (r.tp, r.fp, r.fn, r.misnumbered, r.misnumbering_rate) == (2, 0, 0, 2, 1.0)
    assert r.pq == r.f1 == r.mean_matched_dice == 1.0
    # Per-class Dice would call both teeth missed; the instance view keeps them found.
    assert binary_metrics(pred == 31, truth == 31, (0.3, 0.3)).dice == 0.0


def test_one_prediction_cannot_match_two_truths() -> None:
    truth = np.zeros((4, 10), dtype=np.uint8)
    box(truth, 11, (0, 4), (0, 5))
    box(truth, 21, (0, 4), (5, 10))
    pred = np.where(truth > 0, 11, 0).astype(np.uint8)  # the two teeth merged
    r = match_instances(pred, truth, (1.0, 1.0))
    # IoU of the merged blob with each tooth is exactly 0.5: one match, one miss.
    assert (r.tp, r.fp, r.fn) == (1, 0, 1)
    assert r.pq == pytest.approx(0.5 / 1.5, abs=1e-15)


# -- the threshold --------------------------------------------------------------------------


def half_overlap() -> tuple[np.ndarray, np.ndarray]:
    truth = np.zeros((6, 6), dtype=np.uint8)
    box(truth, 36, (1, 3), (1, 3))
    pred = np.zeros_like(truth)
    box(pred, 36, (1, 3), (1, 2))  # half of the reference, inside it: IoU exactly 2/4
    return pred, truth


def test_iou_exactly_at_threshold_matches() -> None:
    pred, truth = half_overlap()
    r = match_instances(pred, truth, (1.0, 1.0), iou_threshold=0.5)
    assert (r.tp, r.fp, r.fn) == (1, 0, 0)
    assert r.matched[0].iou == 0.5


def test_iou_just_below_threshold_does_not_match() -> None:
    pred, truth = half_overlap()
    r = match_instances(pred, truth, (1.0, 1.0), iou_threshold=float(np.nextafter(0.5, 1.0)))
    assert (r.tp, r.fp, r.fn) == (0, 1, 1)
    assert r.pq == r.sq == r.f1 == 0.0
    assert r.mean_matched_dice is None and r.mean_matched_hd95_mm is None


def test_exact_half_split_gives_one_match() -> None:
    # The one case where ">= 0.5" lets an instance have two eligible partners.
    truth = np.zeros((4, 8), dtype=np.uint8)
    box(truth, 46, (0, 4), (0, 8))
    pred = np.zeros_like(truth)
    box(pred, 46, (0, 4), (0, 4))
    box(pred, 47, (0, 4), (4, 8))
    r = match_instances(pred, truth, (1.0, 1.0))
    assert (r.tp, r.fp, r.fn) == (1, 1, 0)
    assert r.matched[0].iou == 0.5


def test_assignment_ignores_pairs_below_threshold() -> None:
    # rows: predictions, columns: references. Assigning before thresholding (MONAI below
    # 0.5) would take 0.35 + 0.29 and then drop 0.29, keeping IoU 0.35 instead of 0.4.
    iou = np.array([[0.4, 0.35], [0.29, 0.0]])
    assert assign_pairs(iou, 0.3) == [(0, 0)]
    assert assign_pairs(iou, 0.5) == []
    assert assign_pairs(np.zeros((0, 3)), 0.5) == []


# -- empty maps -----------------------------------------------------------------------------


def test_both_empty() -> None:
    empty = np.zeros((5, 6, 7), dtype=np.uint8)
    r = match_instances(empty, empty, SPACING)
    assert (r.tp, r.fp, r.fn, r.misnumbered) == (0, 0, 0, 0)
    assert r.precision == r.recall == r.f1 == r.pq == r.sq == r.rq == 1.0
    assert r.misnumbering_rate == 0.0
    assert r.mean_matched_dice is None and r.mean_matched_hd95_mm is None
    assert r.volumes_true_mm3 == r.volumes_pred_mm3 == {}
    assert json.loads(no_nan(r))["mean_matched_dice"] is None


@pytest.mark.parametrize("empty_side", ["pred", "truth"])
def test_one_side_empty(empty_side: str) -> None:
    full = np.zeros((10, 10, 4), dtype=np.uint8)
    box(full, 11, (0, 3), (0, 3), (0, 2))
    box(full, 12, (5, 9), (5, 9), (1, 4))
    empty = np.zeros_like(full)
    pred, truth = (empty, full) if empty_side == "pred" else (full, empty)
    r = match_instances(pred, truth, SPACING)
    assert r.tp == 0
    assert (r.fn, r.fp) == ((2, 0) if empty_side == "pred" else (0, 2))
    assert r.precision == r.recall == r.f1 == r.pq == r.sq == r.rq == 0.0
    assert r.misnumbering_rate == 0.0
    assert r.mean_matched_dice is None and r.mean_matched_hd95_mm is None
    no_nan(r)


def test_empty_label_ids_scores_nothing() -> None:
    pred, truth = closed_form_case()
    r = match_instances(pred, truth, SPACING, label_ids=[])
    assert (r.tp, r.fp, r.fn, r.pq) == (0, 0, 0, 1.0)


# -- label families -------------------------------------------------------------------------


def teeth_and_pulps() -> tuple[np.ndarray, np.ndarray]:
    truth = np.zeros((16, 16, 6), dtype=np.uint8)
    box(truth, 1, (0, 16), (0, 16), (0, 1))  # jaw bone
    box(truth, 31, (1, 7), (1, 7), (1, 6))
    box(truth, 131, (3, 5), (3, 5), (2, 5))  # pulp of 31, inside it
    box(truth, 32, (9, 15), (1, 7), (1, 6))
    box(truth, 132, (11, 13), (3, 5), (2, 5))
    pred = truth.copy()
    pred[pred == 1] = 0  # bone not predicted
    pred[pred == 132] = 32  # pulp of 32 missed (tooth filled instead)
    box(pred, 141, (10, 14), (10, 14), (2, 4))  # a stray pulp
    return pred, truth


def test_label_ids_select_the_family() -> None:
    pred, truth = teeth_and_pulps()
    teeth = match_instances(pred, truth, SPACING, label_ids=[31, 32, 41])
    assert [(m.truth_label, m.pred_label) for m in teeth.matched] == [(31, 31), (32, 32)]
    assert (teeth.fp, teeth.fn) == (0, 0)  # stray pulp 141 and missed bone are not teeth
    assert teeth.matched[0].iou == 1.0
    # The predicted 32 also covers its pulp's 12 voxels: 168 of 180 predicted voxels.
    assert teeth.matched[1].iou == pytest.approx(168 / 180, abs=1e-15)
    assert set(teeth.volumes_true_mm3) == {31, 32}

    pulps = match_instances(pred, truth, SPACING, label_ids=range(111, 149))
    assert [(m.truth_label, m.pred_label) for m in pulps.matched] == [(131, 131)]
    assert (pulps.missed, pulps.extra) == ((132,), (141,))


def test_all_nonzero_ids_by_default() -> None:
    pred, truth = teeth_and_pulps()
    r = match_instances(pred, truth, SPACING)
    assert set(r.volumes_true_mm3) == {1, 31, 32, 131, 132}
    assert r.missed == (1, 132) and r.extra == (141,)


@pytest.mark.parametrize(
    "mapping, dtype",
    [
        # Ids far apart take the np.unique path instead of the lookup table.
        ({31: -5, 32: 10**7, 41: 2**40, 42: 7, 43: 8, 44: -(2**35)}, np.int64),
        # Negative ids in a narrow range: the lookup table with an offset.
        ({31: -5, 32: -1, 41: 3, 42: 7, 43: 8, 44: -9}, np.int16),
    ],
)
def test_unusual_ids_match_as_compact_ones(mapping: dict[int, int], dtype: type) -> None:
    pred, truth = closed_form_case()
    remap = np.vectorize(lambda v: mapping.get(int(v), 0), otypes=[dtype])
    r = match_instances(remap(pred), remap(truth), SPACING)
    ref = match_instances(pred, truth, SPACING)
    by_new_id = sorted(ref.matched, key=lambda m: mapping[m.truth_label])
    assert [(m.iou, m.dice, m.hd95_mm) for m in r.matched] == [
        (m.iou, m.dice, m.hd95_mm) for m in by_new_id
    ]
    assert [(m.truth_label, m.pred_label) for m in r.matched] == [
        (mapping[m.truth_label], mapping[m.pred_label]) for m in by_new_id
    ]
    assert (r.tp, r.fp, r.fn, r.pq, r.misnumbered) == (ref.tp, ref.fp, ref.fn, ref.pq, 1)
    assert r.missed == (mapping[41],) and r.extra == (mapping[44],)


# -- per-instance metrics against the binary ones -------------------------------------------


def random_instances(
    rng: np.random.Generator, shape: tuple[int, ...], ids: list[int]
) -> np.ndarray:
    """Boxes and balls at random places (edges included); later ones overwrite earlier."""
    labels = np.zeros(shape, dtype=np.uint8)
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    for label in ids:
        size = rng.integers(4, 12, size=len(shape))
        lo = rng.integers(-2, np.array(shape) - 2)
        if rng.random() < 0.5:
            box(labels, label, *[(max(a, 0), a + s) for a, s in zip(lo, size, strict=True)])
        else:
            d2 = sum(((g - c) / (s / 2)) ** 2 for g, c, s in zip(grids, lo, size, strict=True))
            labels[d2 <= 1.0] = label
    return labels


def perturbed(rng: np.random.Generator, truth: np.ndarray, extra_ids: list[int]) -> np.ndarray:
    """A prediction: each reference instance shifted, renumbered or dropped; plus extras."""
    pred = np.zeros_like(truth)
    for label in np.unique(truth[truth > 0]).tolist():
        if rng.random() < 0.15:
            continue
        shift = tuple(int(v) for v in rng.integers(-1, 2, size=truth.ndim))
        mask = np.roll(truth == label, shift, axis=tuple(range(truth.ndim)))
        new = label if rng.random() < 0.8 else int(rng.choice(extra_ids))
        pred[mask] = new
    noise = random_instances(rng, truth.shape, list(rng.choice(extra_ids, size=2, replace=False)))
    return np.where(noise > 0, noise, pred).astype(truth.dtype)


FDI = [q * 10 + p for q in (1, 2, 3, 4) for p in range(1, 9)]


def random_case(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = [int(v) for v in rng.choice(FDI[:16], size=7, replace=False)]
    truth = random_instances(rng, shape, ids)
    return perturbed(rng, truth, FDI[16:]), truth


def pairwise_iou(pred: np.ndarray, truth: np.ndarray) -> list[float]:
    """Brute-force IoU of every overlapping pair, mask by mask."""
    out: list[float] = []
    for p in np.unique(pred[pred > 0]):
        for t in np.unique(truth[truth > 0]):
            a, b = pred == p, truth == t
            inter = np.count_nonzero(a & b)
            if inter:
                out.append(float(inter / np.count_nonzero(a | b)))
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "shape, spacing", [((40, 36), (0.3, 0.6)), ((24, 22, 18), (0.3, 0.35, 0.5))]
)
def test_pair_metrics_equal_binary_metrics(
    seed: int, shape: tuple[int, ...], spacing: tuple[float, ...]
) -> None:
    pred, truth = random_case(seed, shape)
    r = match_instances(pred, truth, spacing)
    assert r.tp >= 1
    for m in r.matched:
        a, b = pred == m.pred_label, truth == m.truth_label
        ref = binary_metrics(a, b, spacing)
        assert m.dice == pytest.approx(ref.dice, abs=1e-12)
        assert m.iou == pytest.approx(ref.iou, abs=1e-12)
        assert m.volume_pred_mm3 == pytest.approx(ref.volume_pred_mm3, rel=1e-12)
        assert m.volume_true_mm3 == pytest.approx(ref.volume_true_mm3, rel=1e-12)
        # HD95 of the cropped pair against the full volume: the crop must not change it.
        assert m.hd95_mm == ref.hd95_mm == hd95_mm(a, b, spacing)
    assert r.volumes_true_mm3 == {
        int(t): np.count_nonzero(truth == t) * math.prod(spacing)
        for t in np.unique(truth[truth > 0])
    }
    no_nan(r)


def test_crop_at_the_array_edge_keeps_hd95() -> None:
    truth = np.zeros((12, 10, 8), dtype=np.uint8)
    box(truth, 18, (0, 6), (4, 10), (0, 8))  # touches five faces of the array
    pred = np.zeros_like(truth)
    box(pred, 18, (0, 5), (5, 10), (1, 8))
    r = match_instances(pred, truth, SPACING)
    assert r.matched[0].hd95_mm == hd95_mm(pred == 18, truth == 18, SPACING)
    assert r.matched[0].hd95_mm > 0


def test_without_hd95() -> None:
    pred, truth = closed_form_case()
    r = match_instances(pred, truth, SPACING, compute_hd95=False)
    ref = match_instances(pred, truth, SPACING)
    assert all(m.hd95_mm is None for m in r.matched)
    assert r.mean_matched_hd95_mm is None
    assert (r.pq, r.f1, r.mean_matched_dice) == (ref.pq, ref.f1, ref.mean_matched_dice)
    no_nan(r)


# -- MONAI as oracle ------------------------------------------------------------------------


def monai_panoptic(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from monai.metrics import compute_panoptic_quality

    p, t = torch.from_numpy(pred.astype(np.int32)), torch.from_numpy(truth.astype(np.int32))
    tp, fp, fn, iou_sum = compute_panoptic_quality(p, t, output_confusion_matrix=True).tolist()
    # A negligible smoothing term instead of MONAI's 1e-6: the denominators here are >= 1.
    out = {"tp": tp, "fp": fp, "fn": fn, "iou_sum": iou_sum}
    for name in ("pq", "sq", "rq"):
        value = compute_panoptic_quality(p, t, metric_name=name, smooth_numerator=1e-12)
        out[name] = float(value.item())
    return out


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("shape", [(48, 40), (28, 24, 20)])
def test_panoptic_quality_matches_monai(seed: int, shape: tuple[int, ...]) -> None:
    pred, truth = random_case(seed + 1000, shape)
    ious = pairwise_iou(pred, truth)
    # MONAI's pairwise IoU is float32: a float64 IoU within 1e-5 of 0.5 (but not equal)
    # could land on either side of the threshold there. The generator never makes one.
    assert not any(abs(v - 0.5) < 1e-5 and v != 0.5 for v in ious), "regenerate the case"
    # MONAI matches IoU > 0.5, dentpy IoU >= threshold: on an exact 0.5 the equivalent
    # dentpy threshold is the next float above 0.5 (test_iou_exactly_at_threshold_matches).
    threshold = float(np.nextafter(0.5, 1.0)) if 0.5 in ious else 0.5
    r = match_instances(pred, truth, (1.0,) * len(shape), iou_threshold=threshold)
    expected = monai_panoptic(pred, truth)
    assert (r.tp, r.fp, r.fn) == (expected["tp"], expected["fp"], expected["fn"])
    assert math.fsum(m.iou for m in r.matched) == pytest.approx(expected["iou_sum"], abs=1e-5)
    assert r.pq == pytest.approx(expected["pq"], abs=1e-6)
    assert r.sq == pytest.approx(expected["sq"], abs=1e-6)
    assert r.rq == pytest.approx(expected["rq"], abs=1e-6)
    assert r.tp > 0 and r.fp + r.fn > 0  # a case that exercises every term


def test_monai_differs_only_on_an_exact_half() -> None:
    pred, truth = half_overlap()
    expected = monai_panoptic(pred, truth)
    assert (expected["tp"], expected["fn"]) == (0, 1)  # MONAI: strict '>'
    assert match_instances(pred, truth, (1.0, 1.0)).tp == 1


# -- definitions, serialisation, misuse -----------------------------------------------------


def test_every_reported_number_is_defined() -> None:
    pred, truth = closed_form_case()
    d = match_instances(pred, truth, SPACING).to_dict()
    assert set(d) <= set(INSTANCE_DEFINITIONS)
    assert set(d["matched"][0]) <= set(INSTANCE_DEFINITIONS)  # type: ignore[index]
    assert {f.name for f in fields(MatchedInstance)} <= set(INSTANCE_DEFINITIONS)
    assert {f.name for f in fields(InstanceResult)} <= set(INSTANCE_DEFINITIONS)


def test_to_dict_survives_a_json_round_trip() -> None:
    pred, truth = closed_form_case()
    d = match_instances(pred, truth, SPACING).to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert d["missed"] == [41] and d["extra"] == [44]
    assert d["volumes_pred_mm3"] == {"31": 16.0, "32": 16.0, "43": 16.0, "44": 6.75}


def test_shape_mismatch_names_the_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(4, 5\) vs \(4, 6\)"):
        match_instances(np.zeros((4, 5), np.uint8), np.zeros((4, 6), np.uint8), (1.0, 1.0))


@pytest.mark.parametrize("dtype", [np.float32, np.bool_])
def test_non_integer_maps_are_refused(dtype: type) -> None:
    good = np.zeros((4, 5), np.uint8)
    with pytest.raises(ValueError, match=np.dtype(dtype).name):
        match_instances(good.astype(dtype), good, (1.0, 1.0))
    with pytest.raises(ValueError, match="truth must be an integer label map"):
        match_instances(good, good.astype(dtype), (1.0, 1.0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"iou_threshold": 0.0}, "iou_threshold"),
        ({"iou_threshold": 1.5}, "iou_threshold"),
        ({"label_ids": [0, 31]}, "background"),
        ({"label_ids": [31.0]}, "integers"),
        ({"spacing_mm": (1.0,)}, "spacing_mm"),
        ({"spacing_mm": (1.0, -1.0)}, "positive"),
    ],
)
def test_misuse_is_refused(kwargs: dict[str, object], message: str) -> None:
    labels = np.zeros((4, 5), np.uint8)
    args: dict[str, object] = {"spacing_mm": (1.0, 1.0), **kwargs}
    with pytest.raises(ValueError, match=message):
        match_instances(labels, labels, **args)  # type: ignore[arg-type]


def test_one_dimensional_maps_are_refused() -> None:
    with pytest.raises(ValueError, match="2D or 3D"):
        match_instances(np.zeros(5, np.uint8), np.zeros(5, np.uint8), (1.0,))
