"""COCO-style detection metrics: closed-form cases by hand, and pycocotools' COCOeval as an
oracle on random sets (skipped where pycocotools is not installed)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import time

import numpy as np
import pytest

from dentpy.metrics.detection import (
    DETECTION_DEFINITIONS,
    IOU_THRESHOLDS,
    ImageBoxes,
    box_iou,
    choose_score_threshold,
    evaluate_detections,
    operating_point,
    precision_recall_curve,
)

SQUARE = [0.0, 0.0, 100.0, 100.0]


def truth_image(image_id: str, boxes: list[list[float]], labels: list[int]) -> ImageBoxes:
    return ImageBoxes(image_id, np.array(boxes, dtype=float).reshape(-1, 4), np.array(labels))


def pred_image(
    image_id: str, boxes: list[list[float]], labels: list[int], scores: list[float]
) -> ImageBoxes:
    return ImageBoxes(
        image_id,
        np.array(boxes, dtype=float).reshape(-1, 4),
        np.array(labels),
        np.array(scores, dtype=float),
    )


# ---------------------------------------------------------------- box_iou


def test_box_iou_values() -> None:
    a = np.array([[0.0, 0.0, 2.0, 2.0], [10.0, 10.0, 11.0, 11.0], [5.0, 5.0, 5.0, 9.0]])
    b = np.array([[1.0, 0.0, 3.0, 2.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 5.0, 9.0]])
    iou = box_iou(a, b)
    assert iou.shape == (3, 3)
    # Pixel-edge areas: 2 x 2 boxes sharing a 1 x 2 strip -> 2 / (4 + 4 - 2).
    assert iou[0, 0] == pytest.approx(1 / 3, abs=1e-15)
    assert iou[0, 1] == 1.0
    assert iou[1].tolist() == [0.0, 0.0, 0.0]  # disjoint
    assert iou[2, 2] == 0.0  # two zero-area boxes: 0, not NaN
    np.testing.assert_array_equal(box_iou(b, a), iou.T)
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_box_iou_touching_edges_do_not_overlap() -> None:
    assert box_iou(np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([[1.0, 0.0, 2.0, 1.0]]))[0, 0] == 0


# ---------------------------------------------------------------- closed-form AP


def test_single_perfect_box_scores_one() -> None:
    result = evaluate_detections(
        [truth_image("a", [SQUARE], [0])], [pred_image("a", [SQUARE], [0], [0.3])], ["caries"]
    )
    assert (result["ap"], result["ap50"], result["ap75"]) == (1.0, 1.0, 1.0)
    assert result["ar"] == {"1": 1.0, "10": 1.0, "100": 1.0}
    assert result["per_class"]["caries"]["ap_per_iou"] == [1.0] * 10


@pytest.mark.parametrize(
    ("height", "n_passing"),
    [
        (58.0, 2),  # IoU 0.58: thresholds 0.50 and 0.55 pass
        (60.0, 3),  # IoU exactly 0.6: >= also passes 0.60 (COCO's rule)
        (74.0, 5),
        (96.0, 10),
    ],
)
def test_one_box_below_some_thresholds(height: float, n_passing: int) -> None:
    truth = [truth_image("a", [SQUARE], [0])]
    pred = [pred_image("a", [[0.0, 0.0, 100.0, height]], [0], [0.9])]
    result = evaluate_detections(truth, pred, ["c"])
    assert result["ap50"] == 1.0
    assert result["ap75"] == (1.0 if n_passing > 5 else 0.0)
    assert result["ap"] == pytest.approx(n_passing / 10, abs=1e-15)
    assert result["ar"]["100"] == pytest.approx(n_passing / 10, abs=1e-15)
    expected = [1.0] * n_passing + [0.0] * (10 - n_passing)
    assert result["per_class"]["c"]["ap_per_iou"] == expected


def test_false_positive_ranked_above_the_hit() -> None:
    # Two true boxes; the one found has score 0.8, a false positive has 0.9. Ranked: FP
    # (recall 0, precision 0) then TP (recall 1/2, precision 1/2); made monotone from the
    # right, precision is 1/2 for recall 0..0.50 (51 of the 101 points) and 0 above.
    truth = [truth_image("a", [SQUARE, [200.0, 200.0, 250.0, 250.0]], [0, 0])]
    pred = [pred_image("a", [SQUARE, [400.0, 0.0, 450.0, 50.0]], [0, 0], [0.8, 0.9])]
    result = evaluate_detections(truth, pred, ["c"])
    expected = 51 * 0.5 / 101
    assert result["ap"] == pytest.approx(expected, abs=1e-15)
    assert result["ap50"] == pytest.approx(expected, abs=1e-15)
    # AR@1 keeps only the top detection, the false positive.
    assert result["ar"] == {"1": 0.0, "10": 0.5, "100": 0.5}
    # Swapping the scores puts the hit first: precision 1 up to recall 1/2.
    swapped = [pred_image("a", [SQUARE, [400.0, 0.0, 450.0, 50.0]], [0, 0], [0.9, 0.8])]
    assert evaluate_detections(truth, swapped, ["c"])["ap"] == pytest.approx(51 / 101)


def test_false_positive_on_an_image_without_truth() -> None:
    truth = [truth_image("a", [SQUARE], [0]), truth_image("b", [], [])]
    pred = [
        pred_image("a", [SQUARE], [0], [0.5]),
        pred_image("b", [SQUARE], [0], [0.9]),
    ]
    # FP first (precision 0), then the hit (recall 1, precision 1/2): 1/2 at every recall.
    assert evaluate_detections(truth, pred, ["c"])["ap"] == pytest.approx(0.5, abs=1e-15)


def test_wrong_class_is_a_miss_and_a_false_positive() -> None:
    truth = [truth_image("a", [SQUARE], [0])]
    pred = [pred_image("a", [SQUARE], [1], [0.9])]
    result = evaluate_detections(truth, pred, ["c0", "c1"])
    assert result["per_class"]["c0"]["ap"] == 0.0
    assert result["per_class"]["c1"]["ap"] is None  # no truth of class 1
    assert result["per_class"]["c1"]["n_predicted"] == 1
    assert result["ap"] == 0.0
    assert result["n_classes_with_truth"] == 1


def test_no_predictions_give_zero() -> None:
    truth = [truth_image("a", [SQUARE], [0]), truth_image("b", [SQUARE], [1])]
    for pred in ([], [pred_image("a", [], [], [])]):
        result = evaluate_detections(truth, pred, ["c0", "c1", "c2"])
        assert (result["ap"], result["ap50"], result["ap75"]) == (0.0, 0.0, 0.0)
        assert result["ar"] == {"1": 0.0, "10": 0.0, "100": 0.0}
        assert result["per_class"]["c2"]["ap"] is None
        assert result["n_predicted"] == 0


def test_no_truth_at_all_is_undefined_not_zero() -> None:
    truth = [truth_image("a", [], []), truth_image("b", [], [])]
    pred = [pred_image("a", [SQUARE], [0], [0.9])]
    result = evaluate_detections(truth, pred, ["c0", "c1"])
    assert result["ap"] is None and result["ap50"] is None and result["ap75"] is None
    assert result["ar"] == {"1": None, "10": None, "100": None}
    assert result["n_classes_with_truth"] == 0
    assert all(v["ap"] is None for v in result["per_class"].values())


def test_duplicate_detection_is_a_false_positive() -> None:
    truth = [truth_image("a", [SQUARE], [0])]
    pred = [pred_image("a", [SQUARE, SQUARE], [0, 0], [0.9, 0.8])]
    assert evaluate_detections(truth, pred, ["c"])["ap"] == 1.0  # FP after full recall
    pred = [pred_image("a", [SQUARE, SQUARE], [0, 0], [0.8, 0.9])]
    assert evaluate_detections(truth, pred, ["c"])["ap"] == 1.0  # first one takes the box


def test_greedy_takes_the_highest_iou_unmatched_truth() -> None:
    # The first detection overlaps truth 0 (IoU 70/130) and truth 1 (90/110): it takes
    # truth 1, the higher IoU, although an assignment could match both detections. The
    # second detection (exactly truth 1) finds it taken, and truth 0 is at IoU 60/140.
    truth = [truth_image("a", [[0.0, 0.0, 100.0, 100.0], [40.0, 0.0, 140.0, 100.0]], [0, 0])]
    pred = [
        pred_image("a", [[30.0, 0.0, 130.0, 100.0], [40.0, 0.0, 140.0, 100.0]], [0, 0], [0.9, 0.8])
    ]
    point = operating_point(truth, pred, 1, 0.0, iou=0.5)
    assert point["micro"]["tp"] == 1 and point["micro"]["fp"] == 1 and point["micro"]["fn"] == 1
    # With the scores swapped the exact box goes first and both match.
    pred = [
        pred_image("a", [[30.0, 0.0, 130.0, 100.0], [40.0, 0.0, 140.0, 100.0]], [0, 0], [0.8, 0.9])
    ]
    assert operating_point(truth, pred, 1, 0.0, iou=0.5)["micro"]["tp"] == 2


def test_iou_tie_goes_to_the_later_truth() -> None:
    # The first detection has IoU exactly 90/110 with both truths; pycocotools keeps the
    # later one, so the second detection (IoU 90/110 with truth 0, 70/130 with truth 1)
    # finds truth 0 free: both match at IoU 0.50..0.80, AP = 7/10. Had the first detection
    # taken truth 0, IoU 0.55..0.80 would have one match only.
    truth = [truth_image("a", [[0.0, 0.0, 100.0, 100.0], [20.0, 0.0, 120.0, 100.0]], [0, 0])]
    boxes = [[10.0, 0.0, 110.0, 100.0], [-10.0, 0.0, 90.0, 100.0]]
    pred = [pred_image("a", boxes, [0, 0], [0.9, 0.8])]
    result = evaluate_detections(truth, pred, ["c"])
    assert result["ap"] == pytest.approx(0.7, abs=1e-15)
    if importlib.util.find_spec("pycocotools") is not None:
        assert coco_eval(truth, pred, 1)[0]["ap"] == pytest.approx(0.7, abs=1e-15)


def test_score_ties_across_images_follow_the_truth_order() -> None:
    # Equal scores: the earlier image's detection ranks first (pycocotools with image ids
    # in sequence order). FP then TP -> AP 1/2; TP then FP -> AP 1.
    empty = truth_image("a", [], [])
    found = truth_image("b", [SQUARE], [0])
    pred = [pred_image("a", [SQUARE], [0], [0.5]), pred_image("b", [SQUARE], [0], [0.5])]
    assert evaluate_detections([empty, found], pred, ["c"])["ap"] == 0.5
    assert evaluate_detections([found, empty], pred, ["c"])["ap"] == 1.0
    if importlib.util.find_spec("pycocotools") is not None:
        assert coco_eval([empty, found], pred, 1)[0]["ap"] == pytest.approx(0.5, abs=1e-15)
        assert coco_eval([found, empty], pred, 1)[0]["ap"] == pytest.approx(1.0, abs=1e-15)


def test_max_detections_is_per_image_and_class() -> None:
    truth = [
        truth_image("a", [SQUARE, [200.0, 0.0, 300.0, 100.0], [0.0, 200.0, 50.0, 250.0]], [0, 0, 1])
    ]
    pred = [
        pred_image(
            "a",
            [SQUARE, [200.0, 0.0, 300.0, 100.0], [0.0, 200.0, 50.0, 250.0]],
            [0, 0, 1],
            [0.9, 0.8, 0.7],
        )
    ]
    result = evaluate_detections(truth, pred, ["c0", "c1"])
    assert result["per_class"]["c0"]["ar"]["1"] == 0.5
    assert result["per_class"]["c1"]["ar"]["1"] == 1.0  # its own top-1, not cut by class 0
    assert result["ar"]["1"] == 0.75
    capped = evaluate_detections(truth, pred, ["c0", "c1"], max_detections=1)
    assert capped["per_class"]["c0"]["ap"] == pytest.approx(51 / 101)
    assert capped["per_class"]["c1"]["ap"] == 1.0
    assert set(capped["ar"]) == {"1"}


# ---------------------------------------------------------------- PR curve


def test_precision_recall_curve_matches_ap50() -> None:
    truth = [truth_image("a", [SQUARE, [200.0, 200.0, 250.0, 250.0]], [0, 0])]
    pred = [pred_image("a", [SQUARE, [400.0, 0.0, 450.0, 50.0]], [0, 0], [0.8, 0.9])]
    curves = precision_recall_curve(truth, pred, 2, class_names=["c0", "c1"])
    c0 = curves["c0"]
    assert len(c0["recall"]) == len(c0["precision"]) == 101
    assert c0["precision"] == [0.5] * 51 + [0.0] * 50
    assert c0["ap50"] == pytest.approx(evaluate_detections(truth, pred, ["c0", "c1"])["ap50"])
    assert curves["c1"]["recall"] is None and curves["c1"]["ap"] is None
    assert set(precision_recall_curve(truth, pred, 2)) == {"0", "1"}
    json.dumps(curves, allow_nan=False)


# ---------------------------------------------------------------- operating point


def _operating_set() -> tuple[list[ImageBoxes], list[ImageBoxes]]:
    far = [[500.0, 500.0, 520.0, 520.0]]
    truth = [
        truth_image("a", [SQUARE, [200.0, 0.0, 300.0, 100.0]], [0, 1]),
        truth_image("b", [SQUARE], [0]),
        truth_image("c", [], []),
    ]
    pred = [
        # a: class-0 hit (0.9), class-1 hit (0.7), far FP (0.6)
        pred_image("a", [SQUARE, [200.0, 0.0, 300.0, 100.0], *far], [0, 1, 1], [0.9, 0.7, 0.6]),
        # b: FP (0.8) with the wrong class on the true box; class-0 box missed
        pred_image("b", [SQUARE], [1], [0.8]),
        # c: FP (0.5) on an image without truth
        pred_image("c", far, [0], [0.5]),
    ]
    return truth, pred


def test_operating_point_counts() -> None:
    truth, pred = _operating_set()
    point = operating_point(truth, pred, 2, 0.65, class_names=["c0", "c1"])
    micro = point["micro"]
    assert (micro["tp"], micro["fp"], micro["fn"]) == (2, 1, 1)
    assert micro["precision"] == pytest.approx(2 / 3)
    assert micro["recall"] == pytest.approx(2 / 3)
    assert micro["f1"] == pytest.approx(2 / 3)
    c0, c1 = point["per_class"]["c0"], point["per_class"]["c1"]
    assert (c0["tp"], c0["fp"], c0["fn"]) == (1, 0, 1)
    assert (c1["tp"], c1["fp"], c1["fn"]) == (1, 1, 0)
    everything = operating_point(truth, pred, 2, 0.0)["micro"]
    assert (everything["tp"], everything["fp"], everything["fn"]) == (2, 3, 1)
    # Threshold equal to a score keeps it (>=).
    assert operating_point(truth, pred, 2, 0.5)["micro"]["fp"] == 3


def test_operating_point_undefined_ratios_are_none() -> None:
    truth, pred = _operating_set()
    nothing = operating_point(truth, pred, 2, 1.0)["micro"]
    assert (nothing["tp"], nothing["fp"], nothing["fn"]) == (0, 0, 3)
    assert nothing["precision"] is None and nothing["recall"] == 0.0 and nothing["f1"] == 0.0
    empty = operating_point([truth_image("x", [], [])], [], 2, 0.5)["micro"]
    assert empty["precision"] is None and empty["recall"] is None and empty["f1"] is None


def test_choose_score_threshold_maximises_f1() -> None:
    # Three truths. Ranked: TP 0.9, FP 0.8, TP 0.7, FP 0.6, FP 0.5 -> F1 at each cut:
    # 2/4, 2/5, 4/6, 4/7, 4/8: the best is 0.7.
    truth = [
        truth_image("a", [SQUARE, [200.0, 0.0, 300.0, 100.0]], [0, 0]),
        truth_image("b", [SQUARE], [0]),
    ]
    far = [500.0, 500.0, 520.0, 520.0]
    pred = [
        pred_image("a", [SQUARE, far, [200.0, 0.0, 300.0, 100.0]], [0, 0, 0], [0.9, 0.8, 0.7]),
        pred_image("b", [far, far], [0, 0], [0.6, 0.5]),
    ]
    assert choose_score_threshold(truth, pred, 1) == 0.7
    best = operating_point(truth, pred, 1, 0.7)["micro"]["f1"]
    for cut in (0.9, 0.8, 0.6, 0.5, 0.0):
        assert operating_point(truth, pred, 1, cut)["micro"]["f1"] < best
    # Raising the 0.8 FP's score above the first hit changes nothing; making it a hit does.
    pred[0] = pred_image("a", [SQUARE, [200.0, 0.0, 300.0, 100.0], far], [0, 0, 0], [0.9, 0.8, 0.7])
    assert choose_score_threshold(truth, pred, 1) == 0.8


def test_choose_score_threshold_ties_go_to_the_highest_score() -> None:
    truth = [truth_image("a", [SQUARE], [0])]
    far = [500.0, 500.0, 520.0, 520.0]
    # Cuts: 0.9 keeps the hit alone (F1 1), 0.4 adds a false positive (F1 2/3).
    pred = [pred_image("a", [SQUARE, far], [0, 0], [0.9, 0.4])]
    assert choose_score_threshold(truth, pred, 1) == 0.9
    # No hit at all: every cut has F1 0 and the highest score wins.
    pred = [pred_image("a", [far, far], [0, 0], [0.3, 0.6])]
    assert choose_score_threshold(truth, pred, 1) == 0.6
    with pytest.raises(ValueError, match="no predictions"):
        choose_score_threshold(truth, [], 1)


def test_choose_score_threshold_agrees_with_operating_point_on_random_sets() -> None:
    for seed in range(5):
        truth, pred = random_set(seed, n_images=15, n_classes=3, grid=seed % 2 == 1)
        chosen = choose_score_threshold(truth, pred, 3)
        best = operating_point(truth, pred, 3, chosen)["micro"]["f1"] or 0.0
        scores = sorted({float(s) for p in pred if p.scores is not None for s in p.scores})
        f1s = [operating_point(truth, pred, 3, s)["micro"]["f1"] or 0.0 for s in scores]
        assert best == pytest.approx(max(f1s), abs=1e-15)
        assert chosen == max(s for s, f in zip(scores, f1s, strict=True) if f == max(f1s))


# ---------------------------------------------------------------- misuse, JSON


def test_misuse_raises() -> None:
    truth = [truth_image("a", [SQUARE], [0])]
    with pytest.raises(ValueError, match="shape"):
        ImageBoxes("a", np.zeros((2, 3)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="x_max >= x_min"):
        ImageBoxes("a", np.array([[5.0, 0.0, 1.0, 1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="NaN"):
        ImageBoxes("a", np.array([[0.0, 0.0, np.nan, 1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="labels"):
        ImageBoxes("a", np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([0.5]))
    with pytest.raises(ValueError, match="scores"):
        ImageBoxes("a", np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([0]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="no scores"):
        evaluate_detections(truth, [truth_image("a", [SQUARE], [0])], ["c"])
    with pytest.raises(ValueError, match="not in truth"):
        evaluate_detections(truth, [pred_image("zz", [SQUARE], [0], [0.5])], ["c"])
    with pytest.raises(ValueError, match="class indices"):
        evaluate_detections(truth, [pred_image("a", [SQUARE], [3], [0.5])], ["c"])
    with pytest.raises(ValueError, match="twice"):
        evaluate_detections(truth + truth, [], ["c"])
    with pytest.raises(ValueError, match="at least one class"):
        evaluate_detections(truth, [], [])
    with pytest.raises(ValueError, match="max_detections"):
        evaluate_detections(truth, [], ["c"], max_detections=0)
    with pytest.raises(ValueError, match="iou"):
        operating_point(truth, [], 1, 0.5, iou=0.0)
    with pytest.raises(ValueError, match="n_classes"):
        operating_point(truth, [], 0, 0.5)


def test_empty_arrays_of_any_shape_are_accepted() -> None:
    item = ImageBoxes("a", np.zeros(0), np.zeros(0), np.zeros(0))
    assert item.boxes.shape == (0, 4) and item.labels.dtype == np.int64


def test_result_is_json_safe_and_documented() -> None:
    truth, pred = random_set(3, n_images=10, n_classes=4)
    result = evaluate_detections(truth, pred, ["a", "b", "c", "d"])
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    point = operating_point(truth, pred, 4, 0.5)
    assert json.loads(json.dumps(point, allow_nan=False)) == point
    for key in ("ap", "ap50", "ap75", "ar", "precision", "recall", "f1", "matching"):
        assert key in DETECTION_DEFINITIONS
    assert result["iou_thresholds"] == list(IOU_THRESHOLDS) and len(IOU_THRESHOLDS) == 10


def test_large_set_is_fast() -> None:
    truth, pred = random_set(0, n_images=1000, n_classes=5, max_truth=20, min_truth=20)
    assert sum(len(t.boxes) for t in truth) == 20_000
    start = time.perf_counter()
    evaluate_detections(truth, pred, [str(c) for c in range(5)])
    elapsed = time.perf_counter() - start
    assert elapsed < 10.0, f"evaluate_detections took {elapsed:.1f} s for 20k boxes"


# ---------------------------------------------------------------- pycocotools oracle


def random_set(
    seed: int,
    n_images: int = 12,
    n_classes: int = 3,
    grid: bool = False,
    min_truth: int = 0,
    max_truth: int = 7,
    max_extra: int = 4,
) -> tuple[list[ImageBoxes], list[ImageBoxes]]:
    """Random truths; predictions = jittered copies (some missed, some doubled, some with the
    wrong class) plus random extras, random scores. `grid` puts every coordinate on a
    quarter-pixel grid (exact arithmetic: IoU ties and IoU exactly at a threshold occur) and
    scores on 0.1 steps (many score ties)."""
    rng = np.random.default_rng(seed)
    truth, pred = [], []
    for i in range(n_images):
        n = int(rng.integers(min_truth, max_truth + 1))
        if min_truth == 0 and rng.random() < 0.2:
            n = 0
        corner = rng.uniform(0, 300, (n, 2))
        size = rng.uniform(4, 80, (n, 2))
        boxes = np.hstack([corner, corner + size])
        labels = rng.integers(0, n_classes, n)
        found = rng.random(n) < 0.8
        doubled = found & (rng.random(n) < 0.2)
        copies = np.concatenate([np.flatnonzero(found), np.flatnonzero(doubled)])
        jitter = rng.normal(0.0, 0.12, (copies.size, 4)) * np.tile(size[copies], 2)
        p_boxes = boxes[copies] + jitter
        p_labels = labels[copies].copy()
        flip = rng.random(copies.size) < 0.1
        p_labels[flip] = rng.integers(0, n_classes, int(flip.sum()))
        n_extra = int(rng.integers(0, max_extra + 1))
        e_corner = rng.uniform(0, 300, (n_extra, 2))
        extra = np.hstack([e_corner, e_corner + rng.uniform(4, 80, (n_extra, 2))])
        p_boxes = np.vstack([p_boxes, extra])
        p_labels = np.concatenate([p_labels, rng.integers(0, n_classes, n_extra)])
        p_boxes = np.hstack(
            [np.minimum(p_boxes[:, :2], p_boxes[:, 2:]), np.maximum(p_boxes[:, :2], p_boxes[:, 2:])]
        )
        scores = rng.random(p_labels.size)
        if grid:
            boxes = np.round(boxes * 4) / 4
            p_boxes = np.round(p_boxes * 4) / 4
            scores = np.round(scores, 1)
        shuffle = rng.permutation(p_labels.size)
        truth.append(ImageBoxes(f"img{i}", boxes, labels))
        pred.append(ImageBoxes(f"img{i}", p_boxes[shuffle], p_labels[shuffle], scores[shuffle]))
    return truth, pred


def coco_eval(
    truth: list[ImageBoxes], pred: list[ImageBoxes], n_classes: int, max_detections: int = 100
) -> tuple[dict[str, float], list[float], list[list[float]]]:
    """pycocotools' summary (AP, AP50, AP75, AR@k keyed by k), per-class AP and per-class
    AR@(1, 10, max_detections); -1 where COCO leaves a value undefined."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    number = {t.image_id: i + 1 for i, t in enumerate(truth)}
    annotations = []
    for t in truth:
        for box, label in zip(t.boxes.tolist(), t.labels.tolist(), strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": number[t.image_id],
                    "category_id": label + 1,
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    results = [
        {
            "image_id": number[p.image_id],
            "category_id": label + 1,
            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
            "score": score,
        }
        for p in pred
        if p.scores is not None
        for box, label, score in zip(
            p.boxes.tolist(), p.labels.tolist(), p.scores.tolist(), strict=True
        )
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": [{"id": i + 1} for i in range(len(truth))],
            "annotations": annotations,
            "categories": [{"id": c + 1, "name": str(c)} for c in range(n_classes)],
        }
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = [1, 10, max_detections]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"][:, :, :, 0, 2]  # (T, R, K) area all, max dets
    recall = ev.eval["recall"][:, :, 0, :]  # (T, K, M)
    if max_detections == 100:
        # COCOeval's own summary (its AP line is fixed at maxDets 100).
        summary = {"ap": ev.stats[0], "ap50": ev.stats[1], "ap75": ev.stats[2]}
        summary.update({"1": ev.stats[6], "10": ev.stats[7], "100": ev.stats[8]})
    else:
        # The same averages as COCOeval.summarize, taken from its accumulated arrays.
        def mean(values: np.ndarray) -> float:
            return float(values[values > -1].mean()) if (values > -1).any() else -1.0

        summary = {
            "ap": mean(precision),
            "ap50": mean(precision[0]),
            "ap75": mean(precision[5]),
            "1": mean(recall[:, :, 0]),
            "10": mean(recall[:, :, 1]),
            str(max_detections): mean(recall[:, :, 2]),
        }
    per_class_ap: list[float] = []
    per_class_ar: list[list[float]] = []
    for k in range(n_classes):
        defined = bool((precision[:, :, k] > -1).all())
        per_class_ap.append(float(precision[:, :, k].mean()) if defined else -1.0)
        per_class_ar.append([float(recall[:, k, m].mean()) if defined else -1.0 for m in range(3)])
    return summary, per_class_ap, per_class_ar


def _same(ours: float | None, coco: float) -> None:
    if coco == -1:
        assert ours is None
    else:
        assert ours is not None and ours == pytest.approx(coco, abs=1e-12, rel=0)


@pytest.mark.parametrize("seed", range(40))
def test_matches_pycocotools(seed: int) -> None:
    pytest.importorskip("pycocotools")
    n_classes = 1 + seed % 4
    grid = seed % 3 == 0
    max_detections = 100 if seed % 5 else 12
    truth, pred = random_set(
        seed, n_images=5 + seed % 17, n_classes=n_classes, grid=grid, max_extra=3 + seed % 6
    )
    if seed % 5 == 0:
        # Crowded images: more detections per image and class than max_detections.
        more_truth, more_pred = random_set(
            1000 + seed,
            n_images=3,
            n_classes=1,
            min_truth=10,
            max_truth=14,
            max_extra=12,
            grid=grid,
        )
        truth += [ImageBoxes(f"crowd{t.image_id}", t.boxes, t.labels) for t in more_truth]
        pred += [ImageBoxes(f"crowd{p.image_id}", p.boxes, p.labels, p.scores) for p in more_pred]
    if not any(p.labels.size for p in pred):
        pytest.skip("pycocotools cannot load an empty result list")
    names = [f"class{c}" for c in range(n_classes)]
    ours = evaluate_detections(truth, pred, names, max_detections=max_detections)
    summary, per_class_ap, per_class_ar = coco_eval(truth, pred, n_classes, max_detections)
    for key in ("ap", "ap50", "ap75"):
        _same(ours[key], summary[key])
    ks = ("1", "10", str(max_detections))
    for key in ks:
        _same(ours["ar"][key], summary[key])
    for c, name in enumerate(names):
        row = ours["per_class"][name]
        _same(row["ap"], per_class_ap[c])
        for key, coco_ar in zip(ks, per_class_ar[c], strict=True):
            _same(row["ar"][key], coco_ar)


def test_matches_pycocotools_without_any_truth() -> None:
    pytest.importorskip("pycocotools")
    _, pred = random_set(7, n_images=4, n_classes=2)
    truth = [ImageBoxes(p.image_id, np.zeros((0, 4)), np.zeros(0, dtype=int)) for p in pred]
    summary, per_class_ap, _ = coco_eval(truth, pred, 2)
    ours = evaluate_detections(truth, pred, ["a", "b"])
    assert summary["ap"] == -1 and ours["ap"] is None
    assert per_class_ap == [-1.0, -1.0]
