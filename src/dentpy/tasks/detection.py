"""2D detection: what a box's class is, which classes swap under a left/right flip, and
the network (CenterNet-style, `dentpy.detection`) behind one dense output tensor.

A box's class comes from `objective.box_class`: its label (a diagnosis such as "caries"),
its tooth ("36", the FDI number), or both ("caries@36"). Tooth numbers are side-specific,
so a flip renumbers them (36 <-> 46), as do names containing left/right. Classes that
`objective.classes` does not list are not learnt: their boxes are dropped, and the
number dropped is recorded in the run's plan.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dentpy.data.fdi import is_fdi, mirror, side_pairs_from_names
from dentpy.errors import InputDataError, SpecError
from dentpy.registry import did_you_mean

if TYPE_CHECKING:
    import torch

    from dentpy.data.samples2d import Box, ImageRecord
    from dentpy.spec import Spec

STRIDE = 4  # the detector's output grid is a quarter of the input


def box_class_name(box: Box, box_class: str) -> str | None:
    """The class name of one box under `objective.box_class`; None when the box cannot
    have one (no tooth number where the tooth is the class)."""
    if box_class == "label":
        return box.label
    if box.fdi is None:
        return None
    return str(box.fdi) if box_class == "tooth" else f"{box.label}@{box.fdi}"


def _tooth_of(name: str) -> int | None:
    match = re.fullmatch(r"(?:(.*)@)?(\d{2})", name)
    if match is None or not is_fdi(int(match.group(2))):
        return None
    return int(match.group(2))


def _mirrored(name: str) -> str | None:
    tooth = _tooth_of(name)
    if tooth is None:
        return None
    return name[:-2] + str(mirror(tooth))


def detection_swap_table(classes: Sequence[str]) -> list[int] | None:
    """Class index -> class index after a left/right flip (no background index), or None
    when a side-specific class has no partner among the classes (flips then stay off)."""
    index = {name: i for i, name in enumerate(classes)}
    table = list(range(len(classes)))
    others: dict[str, int] = {}
    for i, name in enumerate(classes):
        partner = _mirrored(name)
        if partner is None:
            others[name] = i
        elif partner not in index:
            return None
        else:
            table[i] = index[partner]
    try:
        pairs = side_pairs_from_names(others)
    except InputDataError:
        return None
    for i, j in pairs.items():
        table[i] = j
    return table


def _fdi_order(name: str) -> tuple[int, str]:
    tooth = _tooth_of(name)
    return (tooth if tooth is not None else 10_000, name)


@dataclass(frozen=True)
class DetectionTask:
    classes: tuple[str, ...]
    box_class: str = "label"

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def swap_table(self) -> list[int] | None:
        return detection_swap_table(self.classes)

    def build_model(self, spec: Spec) -> torch.nn.Module:
        from dentpy.detection import PackedCenterNet

        return PackedCenterNet(
            in_channels=1, n_classes=self.n_classes, width=spec.model.channels[0]
        )

    def build_loss(self, spec: Spec) -> torch.nn.Module:
        from dentpy.detection import PackedCenterNetLoss

        return PackedCenterNetLoss(self.n_classes)

    def boxes_of(self, boxes: Sequence[Box]) -> tuple[list[list[float]], list[int], int]:
        """(xyxy boxes, class indices, number of boxes dropped: class not learnt)."""
        index = {name: i for i, name in enumerate(self.classes)}
        kept: list[list[float]] = []
        labels: list[int] = []
        dropped = 0
        for box in boxes:
            name = box_class_name(box, self.box_class)
            if name is None or name not in index:
                dropped += 1
                continue
            kept.append([box.x_min, box.y_min, box.x_max, box.y_max])
            labels.append(index[name])
        return kept, labels, dropped

    def to_dict(self) -> dict[str, Any]:
        return {"task": "detection", "classes": list(self.classes), "box_class": self.box_class}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectionTask:
        return cls(tuple(data["classes"]), str(data.get("box_class", "label")))


def build_detection_task(spec: Spec, train_records: Sequence[ImageRecord]) -> DetectionTask:
    """Resolve the classes from the training boxes (and `objective.classes`)."""
    box_class = spec.objective.box_class
    counts: Counter[str] = Counter()
    unnumbered = 0
    for record in train_records:
        for box in record.boxes or ():
            name = box_class_name(box, box_class)
            if name is None:
                unnumbered += 1
            else:
                counts[name] += 1
    if unnumbered and box_class != "label":
        raise SpecError(
            f"objective.box_class: {box_class}, but {unnumbered} training box(es) carry no "
            "tooth number",
            expected="a dataset that numbers each box's tooth (DENTEX, Tufts, synthetic teeth)",
            found=f"{unnumbered} box(es) without a tooth",
            fix="use objective.box_class: label",
        )
    found = sorted(counts, key=_fdi_order)
    if spec.objective.classes == "auto":
        classes = found
    else:
        classes = list(spec.objective.classes)
        for name in classes:
            if name not in counts:
                raise SpecError(
                    f"objective.classes names '{name}', which no training box has",
                    expected=f"some of: {', '.join(found[:40])}",
                    found=name,
                    fix=did_you_mean(name, found),
                )
    if not classes:
        raise SpecError(
            "the training images hold no boxes",
            expected="a detection dataset with at least one box in the training split",
            found="0 boxes",
            fix="check the annotations with `dentpy data check`",
        )
    return DetectionTask(tuple(classes), box_class)
