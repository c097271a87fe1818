"""Postprocessing of FDI instance predictions: one component per tooth, on the right side.

A network that predicts one class per FDI number can give a number to two separate pieces
(a fragment of the neighbour, or the same tooth on the other side of the jaw), and can put
a number on the wrong side. Both are kept to the largest piece and *reported*, never
silently renumbered: a clinician reading "tooth 36" must be able to trust the number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from dentpy.data.volume import LabelMap
from dentpy.tasks.instance import tooth_of

if TYPE_CHECKING:
    from dentpy.tasks.segmentation import SegmentationTask

# A second piece under this fraction of the largest is a stray fragment (cleaned without
# comment); from this fraction on, the number really appears twice.
TWICE_FRACTION = 0.2
# A predicted tooth (or pulp) under this fraction of its family's median size is a speck,
# typically where a tooth is missing: it is removed and reported, not listed as a tooth.
SPECK_FRACTION = 0.1
FINDING_KINDS = ("appears_twice", "wrong_side", "sides_swapped", "speck_removed")


@dataclass(frozen=True)
class InstanceFinding:
    """Something wrong with a predicted number. `label` is the dataset label id."""

    kind: str  # one of FINDING_KINDS
    label: int
    detail: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _components(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """26-connected components of every label at once: (component map, component label,
    component voxel count, component centroid in index units)."""
    import cc3d

    components = cc3d.connected_components(labels, connectivity=26)
    stats = cc3d.statistics(components, no_slice_conversion=True)
    counts = np.asarray(stats["voxel_counts"], dtype=np.int64)
    owner = np.zeros(len(counts), dtype=np.int64)
    owner[components.ravel()] = labels.ravel()
    return components, owner, counts, np.asarray(stats["centroids"], dtype=np.float64)


def clean_instances(
    labels: np.ndarray, instance_ids: Sequence[int], spacing_mm: Sequence[float]
) -> tuple[np.ndarray, list[InstanceFinding]]:
    """Keep the largest 26-connected piece of each instance label (others -> background).

    Returns the cleaned map (a copy) and an `appears_twice` finding for each label whose
    second-largest piece has at least TWICE_FRACTION of the largest's voxels.
    """
    if not instance_ids:
        return labels.copy(), []
    wanted = np.zeros(int(max(int(labels.max(initial=0)), *instance_ids)) + 1, dtype=bool)
    wanted[list(instance_ids)] = True
    components, owner, counts, centroids = _components(labels)
    out = labels.copy()
    findings = []
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    for label in sorted(set(int(i) for i in instance_ids)):
        pieces = np.flatnonzero((owner == label) & (counts > 0))
        pieces = pieces[pieces != 0]
        if len(pieces) < 2:
            continue
        pieces = pieces[np.argsort(-counts[pieces], kind="stable")]
        largest, second = pieces[0], pieces[1]
        drop = np.zeros(len(counts), dtype=bool)
        drop[pieces[1:]] = True
        out[drop[components]] = 0
        fraction = counts[second] / counts[largest]
        if fraction >= TWICE_FRACTION:
            gap = float(np.linalg.norm((centroids[second] - centroids[largest]) * spacing))
            findings.append(
                InstanceFinding(
                    "appears_twice",
                    label,
                    f"{_name(label)} was predicted in {len(pieces)} separate places; the "
                    f"second is {fraction:.0%} of the largest, {gap:.1f} mm away (only the "
                    "largest was kept)",
                )
            )
    return out, findings


def _name(label: int) -> str:
    tooth = tooth_of(label)
    return f"pulp of tooth {tooth}" if label != tooth else f"tooth {tooth}"


def _side(label: int) -> str:
    from dentpy.data.fdi import side

    tooth = tooth_of(label)
    if tooth is None:
        raise ValueError(f"label {label} is not a tooth or pulp id")
    return side(tooth)


def _jaw(label: int) -> str:
    from dentpy.data.fdi import jaw

    tooth = tooth_of(label)
    if tooth is None:
        raise ValueError(f"label {label} is not a tooth or pulp id")
    return jaw(tooth)


def side_findings(
    labels: np.ndarray, affine: np.ndarray, instance_ids: Sequence[int]
) -> list[InstanceFinding]:
    """Teeth (and pulps) whose number puts them on the other side of the jaw.

    Per jaw, the left-right world coordinate (RAS x: larger = patient's right) of each
    instance's centroid is split at the midline that puts the fewest numbers on the wrong
    side (a robust midline: one wrong number cannot move it). Each number on the wrong side
    of it is a `wrong_side` finding; if most numbers are on the wrong side the whole scan
    reads as mirrored (`sides_swapped`), which points at a wrong orientation in the header
    or a mirrored export rather than at the model.
    """
    import cc3d

    present = [int(i) for i in instance_ids if tooth_of(int(i)) is not None]
    if not present:
        return []
    stats = cc3d.statistics(np.ascontiguousarray(labels), no_slice_conversion=True)
    counts = np.zeros(max(present) + 1, dtype=np.int64)
    known = min(len(counts), len(stats["voxel_counts"]))
    counts[:known] = np.asarray(stats["voxel_counts"])[:known]
    centroids = np.asarray(stats["centroids"], dtype=np.float64)
    findings: list[InstanceFinding] = []
    for jaw in ("upper", "lower"):
        ids = [i for i in present if _jaw(i) == jaw and counts[i] > 0]
        rights = [i for i in ids if _side(i) == "right"]
        if not rights or len(rights) == len(ids):
            continue  # one side only: there is no midline to check against
        x = {i: float(affine[0, :3] @ centroids[i] + affine[0, 3]) for i in ids}
        findings += _split_findings(x, set(rights))
    return findings


def _best_split(order: list[int], rights: set[int], rights_high: bool) -> tuple[int, int]:
    """(fewest instances on the wrong side, cut index) over midlines between neighbours."""
    best = (len(order) + 1, 0)
    for cut in range(len(order) + 1):
        low, high = order[:cut], order[cut:]
        if rights_high:
            errors = sum(i in rights for i in low) + sum(i not in rights for i in high)
        else:
            errors = sum(i not in rights for i in low) + sum(i in rights for i in high)
        best = min(best, (errors, cut))
    return best


def _split_findings(x: dict[int, float], rights: set[int]) -> list[InstanceFinding]:
    order = sorted(x, key=lambda i: x[i])
    errors, cut = _best_split(order, rights, rights_high=True)
    mirrored_errors, _ = _best_split(order, rights, rights_high=False)
    if mirrored_errors < errors:
        return [
            InstanceFinding(
                "sides_swapped",
                min(order),
                "most teeth carry numbers of the other side: the scan or its labels look "
                "mirrored left/right (check the file's orientation)",
            )
        ]
    if errors == 0:
        return []
    # 0 < cut < len(order) here: an edge cut would put every number on one side, and the
    # mirrored split would then do at least as well.
    midline = 0.5 * (x[order[max(cut - 1, 0)]] + x[order[min(cut, len(order) - 1)]])
    wrong = [i for i in order[:cut] if i in rights] + [i for i in order[cut:] if i not in rights]
    return [
        InstanceFinding(
            "wrong_side",
            i,
            f"{_name(i)} is a {_side(i)}-side number but lies {abs(x[i] - midline):.1f} mm "
            f"on the patient's {'left' if _side(i) == 'right' else 'right'} of the midline",
        )
        for i in sorted(wrong)
    ]


def to_label_ids(class_map: np.ndarray, class_label_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """Network class indices (0 background, i = class i) -> dataset label ids."""
    lookup = np.array([0] + [int(ids[0]) for ids in class_label_ids], dtype=np.int64)
    dtype = np.uint8 if lookup.max() < 256 else np.uint16
    return lookup.astype(dtype)[class_map]


def remove_specks(
    labels: np.ndarray, family_ids: Sequence[int], voxel_mm3: float
) -> list[InstanceFinding]:
    """Set to background (in place) every instance of one family whose voxel count is under
    SPECK_FRACTION of the family's median; one `speck_removed` finding each."""
    if not family_ids:
        return []
    counts = np.bincount(labels.ravel(), minlength=max(family_ids) + 1)
    present = [int(i) for i in family_ids if counts[i] > 0]
    if len(present) < 3:  # too few to say what a normal size is
        return []
    median = float(np.median([counts[i] for i in present]))
    findings = []
    for label in present:
        if counts[label] < SPECK_FRACTION * median:
            labels[labels == label] = 0
            findings.append(
                InstanceFinding(
                    "speck_removed",
                    label,
                    f"{_name(label)} was predicted as {counts[label] * voxel_mm3:.1f} mm³, under "
                    f"{SPECK_FRACTION:.0%} of the median size ({median * voxel_mm3:.0f} mm³): "
                    "removed (often where a tooth is missing)",
                )
            )
    return findings


def instance_postprocess(
    prediction: LabelMap, task: SegmentationTask
) -> tuple[LabelMap, list[InstanceFinding]]:
    """Class-index prediction of an instance run -> dataset label ids (teeth = FDI numbers),
    one piece per number, plus what was found wrong with the numbering."""
    ids = to_label_ids(np.asarray(prediction.array), task.class_label_ids)
    instance_ids = [*task.instance_label_ids("teeth"), *task.instance_label_ids("pulp")]
    cleaned, findings = clean_instances(ids, instance_ids, prediction.spacing_mm)
    for family in ("teeth", "pulp"):
        findings += remove_specks(
            cleaned, task.instance_label_ids(family), prediction.voxel_volume_mm3
        )
    findings += side_findings(cleaned, prediction.affine, instance_ids)
    return LabelMap(array=cleaned, affine=prediction.affine), findings
