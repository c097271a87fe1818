"""Semi-supervised training: learning from unlabelled cases beside the labelled ones.

`paradigm.kind: semi-supervised` adds unlabelled data (`input.unlabeled`, and/or the training
cases whose labels `paradigm.labeled_fraction` hides) to segmentation (3D) and
classification (2D) training, with one of two methods:

- `mean_teacher` (`mean_teacher.py`): a teacher whose weights are an exponential moving
  average of the student's; the student is also trained to agree with the teacher on
  unlabelled batches under independent noise (Tarvainen & Valpola 2017).
- `pseudo_label` (`pseudo_label.py`): self-training rounds inside one run: train, predict
  the unlabelled cases, keep the confident voxels/images as labels, continue training.

`unlabeled.py` reads and preprocesses unlabelled data without ever reading a label;
`labeled_fraction.py` hides labels to simulate label scarcity; `attach.py` plugs all of it
into the supervised trainers with a few lines in `dentpy.train` / `train_classification`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dentpy.errors import SpecError

if TYPE_CHECKING:
    from dentpy.spec import Spec


def check_paradigm(spec: Spec) -> None:
    """Refuse paradigm settings training cannot honour, before any work is done."""
    paradigm = spec.paradigm
    if spec.objective.task == "detection" and paradigm.kind == "semi-supervised":
        raise SpecError(
            "paradigm.kind semi-supervised is not available for detection",
            expected="paradigm.kind: supervised for objective.task detection",
            found="paradigm.kind: semi-supervised",
            fix="set paradigm.kind=supervised (semi-supervised training covers segmentation "
            "and classification)",
        )
    if spec.objective.task == "detection" and paradigm.labeled_fraction is not None:
        raise SpecError(
            "paradigm.labeled_fraction is not available for detection",
            expected="paradigm.labeled_fraction: null for objective.task detection",
            found=f"labeled_fraction {paradigm.labeled_fraction}",
            fix="remove paradigm.labeled_fraction (it covers segmentation and classification)",
        )
    if paradigm.kind != "semi-supervised":
        if spec.input.unlabeled is not None:
            # Not an error: the same spec feeds `dentpy pretrain`, which reads them.
            logging.getLogger(__name__).warning(
                "input.unlabeled is not used by supervised training (only by "
                "paradigm.kind semi-supervised and `dentpy pretrain`)"
            )
        return
    fraction = paradigm.labeled_fraction
    if spec.input.unlabeled is None and (fraction is None or fraction >= 1):
        raise SpecError(
            "paradigm.kind semi-supervised needs unlabelled data",
            expected="input.unlabeled (a folder of unlabelled scans/images), or "
            "paradigm.labeled_fraction below 1 (hide the labels of some training patients)",
            found="no input.unlabeled and "
            + ("no labeled_fraction" if fraction is None else f"labeled_fraction {fraction}"),
            fix="add input.unlabeled=<folder>, or paradigm.labeled_fraction=0.2, or set "
            "paradigm.kind=supervised",
        )
