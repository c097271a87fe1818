"""FDI instance classes: which dataset labels are teeth or pulps, and the flip renumbering.

A dataset is read as FDI-numbered when its label ids follow ToothFairy2/3: a tooth's id is
its FDI number (11-48, deciduous 51-85) and its pulp's id is 100 + FDI. Names do not
matter (they vary between datasets); ids do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dentpy.data.fdi import PULP_OFFSET, is_fdi, mirror_label, side_pairs_from_names
from dentpy.errors import InputDataError, SpecError

FAMILIES = ("teeth", "pulp")


def family_of(label_id: int) -> str | None:
    """ "teeth" for an FDI tooth id, "pulp" for 100 + FDI, None for anything else."""
    if is_fdi(label_id):
        return "teeth"
    if is_fdi(label_id - PULP_OFFSET):
        return "pulp"
    return None


def tooth_of(label_id: int) -> int | None:
    """The FDI number a tooth or pulp id belongs to (None for other structures)."""
    family = family_of(label_id)
    if family is None:
        return None
    return label_id if family == "teeth" else label_id - PULP_OFFSET


def instance_class_names(dataset_labels: Mapping[str, int], instances: str) -> list[str]:
    """Dataset label names of the requested families, ordered by label id."""
    families = FAMILIES if instances == "teeth+pulp" else (instances,)
    chosen = sorted(
        (label_id, name)
        for name, label_id in dataset_labels.items()
        if family_of(label_id) in families
    )
    if not chosen:
        wanted = " and ".join(
            {"teeth": "teeth (id = FDI number, 11-48)", "pulp": "pulps (id = 100 + FDI)"}[f]
            for f in families
        )
        raise SpecError(
            f"objective.instances: {instances}, but the dataset labels no {wanted}",
            expected="a dataset whose label ids are FDI numbers, as in ToothFairy2/3",
            found=f"label ids {sorted(dataset_labels.values())[:12]}",
            fix="use an FDI-labelled dataset (`dentpy synth cbct --labels toothfairy3` writes "
            "one), or objective.output: semantic",
        )
    return [name for _, name in chosen]


def instance_swap_table(
    class_names: Sequence[str], class_label_ids: Sequence[Sequence[int]]
) -> list[int] | None:
    """Class index -> class index after a left/right flip (index 0 = background).

    Teeth and pulps are renumbered by their FDI mirror (36 <-> 46, 136 <-> 146); other
    classes pair by name (left/right canals). None when some side-specific class has no
    partner among the classes: such a model cannot be trained with flips.
    """
    by_id = {ids[0]: index for index, ids in enumerate(class_label_ids, start=1)}
    table = list(range(len(class_names) + 1))
    others: dict[str, int] = {}
    for index, ids in enumerate(class_label_ids, start=1):
        label_id = ids[0]
        if family_of(label_id) is None:
            others[class_names[index - 1]] = index
            continue
        partner = by_id.get(mirror_label(label_id))
        if partner is None:
            return None
        table[index] = partner
    try:
        pairs = side_pairs_from_names(others)
    except InputDataError:
        return None
    for index, partner in pairs.items():
        table[index] = partner
    return table
