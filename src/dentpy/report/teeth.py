"""Per-tooth report of one predicted scan: `NAME_teeth.csv` and `NAME_teeth.json`.

What a clinician reads: tooth 36, its volume, its pulp's volume and their ratio, and how
far its root apex lies from the inferior alveolar canal; plus any numbering the model got
wrong by construction (a number twice, a number on the wrong side).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from dentpy.tasks.instance import family_of

if TYPE_CHECKING:
    from dentpy.data.volume import LabelMap
    from dentpy.instances import InstanceFinding
    from dentpy.tasks.segmentation import SegmentationTask

# Class names that denote the inferior alveolar (mandibular) canal, as datasets spell them:
# "Left Inferior Alveolar Canal" (ToothFairy2/3), "left_ian", "IAN", "mandibular canal".
_CANAL_NAME = re.compile(
    r"inferior[ _-]?alveolar|(^|[^a-z])ian([^a-z]|$)|mandibular[ _-]?canal", re.IGNORECASE
)


def canal_label_ids(task: SegmentationTask) -> list[int]:
    """Label ids of the run's classes that are inferior alveolar canals (by name)."""
    return [
        ids[0]
        for name, ids in zip(task.class_names, task.class_label_ids, strict=True)
        if family_of(ids[0]) is None and _CANAL_NAME.search(name)
    ]


def write_teeth_report(
    prediction: LabelMap,
    task: SegmentationTask,
    findings: Sequence[InstanceFinding],
    stem: Path,
) -> tuple[Path, Path]:
    """Write STEM_teeth.csv and STEM_teeth.json for a label-id prediction."""
    from dentpy.measure_teeth import TOOTH_MEASURE_DEFINITIONS, tooth_measures, write_tooth_csv

    canals = canal_label_ids(task)
    measures = tooth_measures(prediction.array, prediction.affine, canals)
    csv_path = write_tooth_csv(stem.with_name(f"{stem.name}_teeth.csv"), measures)
    json_path = stem.with_name(f"{stem.name}_teeth.json")
    document = {
        "label_values": "tooth = FDI number, its pulp = 100 + FDI (the _seg.nii.gz values)",
        "canal_labels": canals,
        "teeth": [asdict(m) for m in measures],
        "findings": [f.to_dict() for f in findings],
        "definitions": TOOTH_MEASURE_DEFINITIONS,
    }
    with json_path.open("x", encoding="utf-8") as handle:  # never replaces a file
        json.dump(document, handle, indent=2)
    return csv_path, json_path
