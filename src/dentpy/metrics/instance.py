"""Instance-level metrics for label maps that number each object (FDI tooth / pulp ids).

An *instance* is one label id: every voxel carrying it, connected or not. In dental CBCT a
tooth is labelled with its FDI number (11-48) and its pulp with 100 + FDI (ToothFairy3);
teeth and pulps are scored as separate families by calling `match_instances` twice with
different `label_ids`. In ToothFairy3 maps a tooth id does not cover its pulp's voxels,
so a tooth instance is the tooth without its pulp; merge the pulp ids into their teeth
first to score whole teeth.

Matching ignores the ids themselves (class-agnostic), so a tooth found with the wrong FDI
number is still a detection, counted separately as *misnumbered*. This separates "did the
model find and delineate the tooth" (PQ, F1) from "did it number it right"
(misnumbering_rate), which per-class Dice mixes up: a swapped 31/41 pair gives Dice 0 for
both classes although both teeth were segmented perfectly.

Every number is defined for every input (DESIGN.md §4): no NaN, documented values for
empty maps (INSTANCE_DEFINITIONS), and per-pair HD95 only on pairs that overlap, so its
empty-mask convention never applies.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from dentpy.metrics.surface import check_spacing, hd95_mm

INSTANCE_DEFINITIONS: dict[str, str] = {
    "instance": (
        "one label id among label_ids (default: every non-zero id): all voxels carrying it, "
        "connected or not; ids outside label_ids count as background"
    ),
    "matching": (
        "class-agnostic one-to-one assignment (scipy linear_sum_assignment) maximising the total "
        "IoU over (pred, truth) pairs with IoU >= iou_threshold; above 0.5 an instance can have "
        "at most one such partner, so the matching is unique and equals greedy pairing"
    ),
    "iou_threshold": "minimum IoU for a (pred, truth) pair to match (>=, in (0, 1]; default 0.5)",
    "truth_label": "label id of the reference instance of a matched pair",
    "pred_label": "label id of the predicted instance of a matched pair",
    "iou": "|pred ∩ truth| / |pred ∪ truth| of a matched pair (voxel counts)",
    "dice": "2|pred ∩ truth| / (|pred| + |truth|) of a matched pair",
    "hd95_mm": (
        "HD95 in mm of a matched pair (dentpy.metrics.surface.hd95_mm: MONAI definition, voxel "
        "spacing); null when compute_hd95=False"
    ),
    "volume_true_mm3": "reference voxel count x voxel volume (product of spacing, mm³)",
    "volume_pred_mm3": "predicted voxel count x voxel volume (product of spacing, mm³)",
    "misnumbered": (
        "a matched pair whose pred_label != truth_label (object found, wrong number); as a "
        "summary, the count of such pairs. Still a true positive"
    ),
    "matched": "the matched pairs, sorted by truth_label",
    "missed": "reference labels without a match (false negatives), sorted",
    "extra": "predicted labels without a match (false positives), sorted",
    "volumes_true_mm3": "volume in mm³ of every reference instance, by label id",
    "volumes_pred_mm3": "volume in mm³ of every predicted instance, by label id",
    "tp": "number of matched pairs (misnumbered ones included)",
    "fp": "number of unmatched predicted instances",
    "fn": "number of unmatched reference instances",
    "precision": "TP / (TP + FP); if TP + FP = 0: 1 when neither map has instances, else 0",
    "recall": "TP / (TP + FN); if TP + FN = 0: 1 when neither map has instances, else 0",
    "f1": "2TP / (2TP + FP + FN); 1 when neither map has instances",
    "misnumbering_rate": "misnumbered / TP; 0 when TP = 0",
    "pq": (
        "panoptic quality (Kirillov et al. 2019): sum of matched IoU / (TP + FP/2 + FN/2); "
        "1 when neither map has instances. Equals sq x rq"
    ),
    "sq": (
        "segmentation quality: mean IoU of the matched pairs; 1 when neither map has instances, "
        "0 when TP = 0 otherwise (so that pq = sq x rq always holds)"
    ),
    "rq": "recognition quality, equal to f1",
    "mean_matched_dice": "mean dice over matched pairs; null when TP = 0",
    "mean_matched_hd95_mm": (
        "mean hd95_mm over matched pairs; null when TP = 0 or compute_hd95=False"
    ),
}

# Label maps whose value range fits a lookup table of this size are relabelled by table
# indexing (one linear pass); wider ranges fall back to np.unique, which sorts.
_LUT_MAX_RANGE = 1 << 22


@dataclass(frozen=True)
class MatchedInstance:
    """One matched (truth, prediction) pair; fields as in INSTANCE_DEFINITIONS."""

    truth_label: int
    pred_label: int
    iou: float
    dice: float
    hd95_mm: float | None
    volume_true_mm3: float
    volume_pred_mm3: float

    @property
    def misnumbered(self) -> bool:
        return self.pred_label != self.truth_label

    def to_dict(self) -> dict[str, object]:
        return {
            "truth_label": self.truth_label,
            "pred_label": self.pred_label,
            "misnumbered": self.misnumbered,
            "iou": self.iou,
            "dice": self.dice,
            "hd95_mm": self.hd95_mm,
            "volume_true_mm3": self.volume_true_mm3,
            "volume_pred_mm3": self.volume_pred_mm3,
        }


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


@dataclass(frozen=True)
class InstanceResult:
    """Instance matching of one case; every property as in INSTANCE_DEFINITIONS."""

    matched: tuple[MatchedInstance, ...]
    missed: tuple[int, ...]
    extra: tuple[int, ...]
    volumes_true_mm3: dict[int, float]
    volumes_pred_mm3: dict[int, float]
    iou_threshold: float = 0.5

    @property
    def tp(self) -> int:
        return len(self.matched)

    @property
    def fp(self) -> int:
        return len(self.extra)

    @property
    def fn(self) -> int:
        return len(self.missed)

    @property
    def _no_instances(self) -> bool:
        return self.tp + self.fp + self.fn == 0

    def _ratio(self, num: float, den: float) -> float:
        if den == 0:
            return 1.0 if self._no_instances else 0.0
        return num / den

    @property
    def precision(self) -> float:
        return self._ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return self._ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return self._ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def misnumbered(self) -> int:
        return sum(1 for m in self.matched if m.misnumbered)

    @property
    def misnumbering_rate(self) -> float:
        return self.misnumbered / self.tp if self.tp else 0.0

    @property
    def pq(self) -> float:
        iou_sum = math.fsum(m.iou for m in self.matched)
        return self._ratio(iou_sum, self.tp + 0.5 * self.fp + 0.5 * self.fn)

    @property
    def sq(self) -> float:
        if self.tp == 0:
            return 1.0 if self._no_instances else 0.0
        return _mean([m.iou for m in self.matched])

    @property
    def rq(self) -> float:
        return self.f1

    @property
    def mean_matched_dice(self) -> float | None:
        return _mean([m.dice for m in self.matched]) if self.matched else None

    @property
    def mean_matched_hd95_mm(self) -> float | None:
        values = [m.hd95_mm for m in self.matched if m.hd95_mm is not None]
        if not self.matched or len(values) != len(self.matched):
            return None
        return _mean(values)

    def to_dict(self) -> dict[str, object]:
        """Summary numbers and per-instance lists; json.dumps-able, and label-id keys are
        strings so that a JSON round trip gives back an equal dict."""
        return {
            "iou_threshold": self.iou_threshold,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "misnumbered": self.misnumbered,
            "misnumbering_rate": self.misnumbering_rate,
            "pq": self.pq,
            "sq": self.sq,
            "rq": self.rq,
            "mean_matched_dice": self.mean_matched_dice,
            "mean_matched_hd95_mm": self.mean_matched_hd95_mm,
            "matched": [m.to_dict() for m in self.matched],
            "missed": list(self.missed),
            "extra": list(self.extra),
            "volumes_true_mm3": {str(k): v for k, v in sorted(self.volumes_true_mm3.items())},
            "volumes_pred_mm3": {str(k): v for k, v in sorted(self.volumes_pred_mm3.items())},
        }


def _check_label_map(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    # A bool mask has one "instance" made of every object in it: almost certainly a
    # semantic mask passed by mistake, so it is refused like a float map.
    if array.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must be an integer label map, got dtype {array.dtype} (shape {array.shape})"
        )
    return array


def _wanted_ids(label_ids: Iterable[int] | None) -> frozenset[int] | None:
    if label_ids is None:
        return None
    ids = list(label_ids)
    bad = [v for v in ids if isinstance(v, bool) or not isinstance(v, (int, np.integer))]
    if bad:
        raise ValueError(f"label_ids must be integers, got {bad[:5]}")
    if any(int(v) == 0 for v in ids):
        raise ValueError("label_ids must not contain 0: 0 is background, never an instance")
    return frozenset(int(v) for v in ids)


def _relabel(array: np.ndarray, wanted: frozenset[int] | None) -> tuple[np.ndarray, list[int]]:
    """Flat index array (0 = not an instance, k = the k-th returned id) and the instance
    ids present in `array`, ascending."""
    flat = array.ravel()
    if flat.size == 0:
        return np.zeros(0, dtype=np.intp), []
    vmin, vmax = int(flat.min()), int(flat.max())
    if vmax - vmin < _LUT_MAX_RANGE and np.can_cast(flat.dtype, np.intp):
        # Unsigned maps starting at 0 (the usual uint8/uint16 case) are used without a copy.
        offset = min(vmin, 0)
        shifted = flat if offset == 0 else flat.astype(np.intp) - offset
        counts = np.bincount(shifted, minlength=vmax - offset + 1)
        present = (np.flatnonzero(counts) + offset).tolist()
        ids = [v for v in present if v != 0 and (wanted is None or v in wanted)]
        table = np.zeros(counts.size, dtype=np.intp)
        table[np.asarray(ids, dtype=np.intp) - offset] = np.arange(1, len(ids) + 1)
        return table[shifted], ids
    values, inverse = np.unique(flat, return_inverse=True)
    keep = [i for i, v in enumerate(values.tolist()) if v != 0 and (wanted is None or v in wanted)]
    table = np.zeros(values.size, dtype=np.intp)
    table[keep] = np.arange(1, len(keep) + 1)
    return table[inverse.ravel()], [int(values[i]) for i in keep]


def assign_pairs(iou: np.ndarray, iou_threshold: float) -> list[tuple[int, int]]:
    """One-to-one (row, column) pairs of `iou` with IoU >= iou_threshold, chosen to maximise
    the total IoU of the kept pairs; sorted by row.

    Pairs below the threshold are zeroed *before* the assignment, unlike MONAI's
    ``compute_panoptic_quality`` (which assigns first and then drops pairs under the
    threshold): otherwise the solver may spend an instance on an ineligible partner and
    lose an eligible pair. The two agree whenever the threshold is >= 0.5.
    """
    from scipy.optimize import linear_sum_assignment

    eligible = iou >= iou_threshold
    if not eligible.any():
        return []
    rows, cols = linear_sum_assignment(np.where(eligible, iou, 0.0), maximize=True)
    return sorted((int(r), int(c)) for r, c in zip(rows, cols, strict=True) if eligible[r, c])


def _union_box(
    a: tuple[slice, ...], b: tuple[slice, ...], shape: tuple[int, ...]
) -> tuple[slice, ...]:
    # One background voxel of margin keeps both surfaces identical to the full-volume ones
    # regardless of how the surface code treats the array edge.
    return tuple(
        slice(max(min(sa.start, sb.start) - 1, 0), min(max(sa.stop, sb.stop) + 1, n))
        for sa, sb, n in zip(a, b, shape, strict=True)
    )


def match_instances(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing_mm: Sequence[float],
    label_ids: Iterable[int] | None = None,
    iou_threshold: float = 0.5,
    compute_hd95: bool = True,
) -> InstanceResult:
    """Match the instances of a predicted label map to those of the reference.

    `label_ids` picks the family scored (e.g. FDI tooth ids, or 100 + FDI pulp ids); None
    takes every non-zero id. Other ids are background here. A pair matches when its IoU is
    >= `iou_threshold`; pairs are assigned one-to-one maximising total IoU (see
    `assign_pairs`), whatever their ids, and a pair with different ids is *misnumbered*.

    IoUs of all pairs come from one contingency table of the two relabelled maps, so the
    cost is a few passes over the volume however many instances there are. Per-pair HD95
    (optional, the slow part) is computed on the pair's padded union bounding box.

    >>> truth = np.zeros((8, 8), dtype=np.uint8); truth[1:4, 1:4] = 31; truth[5:8, 5:8] = 41
    >>> pred = truth.copy(); pred[pred == 41] = 42; pred[0, 7] = 11
    >>> r = match_instances(pred, truth, (0.5, 0.5))
    >>> r.tp, r.fp, r.fn, r.misnumbered, r.extra
    (2, 1, 0, 1, (11,))
    """
    pred = _check_label_map(pred, "pred")
    truth = _check_label_map(truth, "truth")
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth shapes differ: {pred.shape} vs {truth.shape}")
    if pred.ndim not in (2, 3):
        raise ValueError(f"label maps must be 2D or 3D, got shape {pred.shape}")
    spacing = check_spacing(spacing_mm, pred.ndim)
    if not 0.0 < iou_threshold <= 1.0:
        # A threshold of 0 would match pairs that do not overlap at all.
        raise ValueError(f"iou_threshold must be within (0, 1], got {iou_threshold}")
    wanted = _wanted_ids(label_ids)

    pred_index, pred_ids = _relabel(pred, wanted)
    true_index, true_ids = _relabel(truth, wanted)
    n_pred, n_true = len(pred_ids), len(true_ids)
    table = np.bincount(
        pred_index * (n_true + 1) + true_index, minlength=(n_pred + 1) * (n_true + 1)
    ).reshape(n_pred + 1, n_true + 1)
    pred_counts = table.sum(axis=1)[1:]
    true_counts = table.sum(axis=0)[1:]
    inter = table[1:, 1:]
    # Every listed id occurs at least once, so no union is 0.
    union = pred_counts[:, None] + true_counts[None, :] - inter
    iou = inter / union if inter.size else np.zeros((n_pred, n_true))

    voxel_mm3 = math.prod(spacing)
    pairs = assign_pairs(iou, iou_threshold)

    boxes_pred: list[tuple[slice, ...] | None] = []
    boxes_true: list[tuple[slice, ...] | None] = []
    if compute_hd95 and pairs:
        from scipy.ndimage import find_objects

        boxes_pred = find_objects(pred_index.reshape(pred.shape), max_label=n_pred)
        boxes_true = find_objects(true_index.reshape(truth.shape), max_label=n_true)
    pred_grid = pred_index.reshape(pred.shape)
    true_grid = true_index.reshape(truth.shape)

    matched: list[MatchedInstance] = []
    for p, t in pairs:
        hd95: float | None = None
        if compute_hd95:
            box_p, box_t = boxes_pred[p], boxes_true[t]
            if box_p is None or box_t is None:
                raise RuntimeError("internal error: a matched instance has no voxels")
            box = _union_box(box_p, box_t, pred.shape)
            hd95 = hd95_mm(pred_grid[box] == p + 1, true_grid[box] == t + 1, spacing)
        overlap = int(inter[p, t])
        matched.append(
            MatchedInstance(
                truth_label=true_ids[t],
                pred_label=pred_ids[p],
                iou=float(iou[p, t]),
                dice=2 * overlap / int(pred_counts[p] + true_counts[t]),
                hd95_mm=hd95,
                volume_true_mm3=int(true_counts[t]) * voxel_mm3,
                volume_pred_mm3=int(pred_counts[p]) * voxel_mm3,
            )
        )
    matched.sort(key=lambda m: m.truth_label)
    matched_pred = {p for p, _ in pairs}
    matched_true = {t for _, t in pairs}
    return InstanceResult(
        matched=tuple(matched),
        missed=tuple(v for i, v in enumerate(true_ids) if i not in matched_true),
        extra=tuple(v for i, v in enumerate(pred_ids) if i not in matched_pred),
        volumes_true_mm3={v: int(true_counts[i]) * voxel_mm3 for i, v in enumerate(true_ids)},
        volumes_pred_mm3={v: int(pred_counts[i]) * voxel_mm3 for i, v in enumerate(pred_ids)},
        iou_threshold=float(iou_threshold),
    )
