"""Tooth numbering: FDI (ISO 3950) <-> Universal, quadrants, sides, left/right mirroring.

FDI: two digits, quadrant then position from the midline. Permanent quadrants 1 upper
right, 2 upper left, 3 lower left, 4 lower right (positions 1-8); deciduous 5-8
(positions 1-5). "Right" and "left" are the patient's.

Universal (ADA): permanent teeth 1-32, starting at the upper right third molar (1 = 18),
along the upper arch to the upper left third molar (16 = 28), then the lower left third
molar (17 = 38) back to the lower right third molar (32 = 48). Deciduous teeth are the
letters A-T in the same order (A = 55 ... J = 65, K = 75 ... T = 85).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dentpy.errors import InputDataError

PERMANENT_QUADRANTS = (1, 2, 3, 4)
DECIDUOUS_QUADRANTS = (5, 6, 7, 8)
# Quadrant -> the quadrant of the same jaw on the other side.
MIRROR_QUADRANT = {1: 2, 2: 1, 3: 4, 4: 3, 5: 6, 6: 5, 7: 8, 8: 7}
PULP_OFFSET = 100  # ToothFairy3-style: the pulp of tooth N is labelled 100 + N


def _universal_order(quadrants: tuple[int, int, int, int], positions: int) -> list[int]:
    upper_right, upper_left, lower_left, lower_right = quadrants
    order = [upper_right * 10 + p for p in range(positions, 0, -1)]
    order += [upper_left * 10 + p for p in range(1, positions + 1)]
    order += [lower_left * 10 + p for p in range(positions, 0, -1)]
    order += [lower_right * 10 + p for p in range(1, positions + 1)]
    return order


_PERMANENT = _universal_order((1, 2, 3, 4), 8)  # Universal 1..32 -> FDI
_DECIDUOUS = _universal_order((5, 6, 7, 8), 5)  # Universal A..T -> FDI
UNIVERSAL_TO_FDI: dict[str, int] = {
    **{str(i): fdi for i, fdi in enumerate(_PERMANENT, start=1)},
    **{chr(ord("A") + i): fdi for i, fdi in enumerate(_DECIDUOUS)},
}
FDI_TO_UNIVERSAL: dict[int, str] = {fdi: u for u, fdi in UNIVERSAL_TO_FDI.items()}
ALL_FDI: tuple[int, ...] = tuple(sorted(FDI_TO_UNIVERSAL))


def is_fdi(number: int) -> bool:
    return number in FDI_TO_UNIVERSAL


def check_fdi(number: int, source: str = "tooth number") -> int:
    if not is_fdi(number):
        raise InputDataError(
            f"{source}: {number} is not an FDI tooth number",
            expected="11-18, 21-28, 31-38, 41-48 (permanent) or 51-55 ... 81-85 (deciduous)",
            found=str(number),
            fix="if the data uses Universal numbering (1-32, A-T), convert with universal_to_fdi",
        )
    return number


def universal_to_fdi(tooth: str | int) -> int:
    key = str(tooth).strip().upper()
    if key not in UNIVERSAL_TO_FDI:
        raise InputDataError(
            f"{tooth!r} is not a Universal tooth number",
            expected="1-32 (permanent) or A-T (deciduous)",
            found=repr(tooth),
            fix="check which numbering the dataset uses (FDI numbers are 11-48)",
        )
    return UNIVERSAL_TO_FDI[key]


def fdi_to_universal(number: int) -> str:
    return FDI_TO_UNIVERSAL[check_fdi(number)]


def quadrant(number: int) -> int:
    return check_fdi(number) // 10


def side(number: int) -> str:
    """The patient's side: "right" (quadrants 1, 4, 5, 8) or "left" (2, 3, 6, 7)."""
    return "right" if quadrant(number) in (1, 4, 5, 8) else "left"


def jaw(number: int) -> str:
    return "upper" if quadrant(number) in (1, 2, 5, 6) else "lower"


def mirror(number: int) -> int:
    """The same tooth on the other side: 36 <-> 46, 11 <-> 21, 55 <-> 65."""
    number = check_fdi(number)
    return MIRROR_QUADRANT[number // 10] * 10 + number % 10


def mirror_label(label: int) -> int:
    """A label id after a left/right flip, for FDI tooth ids and 100 + FDI pulp ids;
    any other id (background, bone, unsided structures) is unchanged."""
    if is_fdi(label):
        return mirror(label)
    if is_fdi(label - PULP_OFFSET):
        return PULP_OFFSET + mirror(label - PULP_OFFSET)
    return label


def flip_lookup(
    label_ids: Iterable[int], side_pairs: Mapping[int, int] | None = None
) -> dict[int, int]:
    """Label id -> label id after a left/right flip, for every id in `label_ids`.

    FDI and pulp ids are mirrored; `side_pairs` adds named pairs (left IAN <-> right IAN).
    Refuses a mapping that leads outside `label_ids` (a flip would invent a label).
    """
    ids = set(label_ids)
    table = {i: mirror_label(i) for i in ids}
    for a, b in (side_pairs or {}).items():
        table[a], table[b] = b, a
    missing = sorted(v for v in table.values() if v not in ids)
    if missing:
        raise InputDataError(
            "a left/right flip would create labels the dataset does not have",
            expected="every side-specific label to have its mirror in the label set",
            found=f"mirrors missing: {', '.join(map(str, missing[:10]))}",
            fix="declare the missing labels, or disable left/right flips (augment.flip_left_right)",
        )
    return table


def side_pairs_from_names(labels: Mapping[str, int]) -> dict[int, int]:
    """Label ids whose names differ only by left/right ("left_ian"/"right_ian",
    "Left Maxillary Sinus"/"Right Maxillary Sinus", "Upper Right Central Incisor"/"Upper
    Left Central Incisor"), as id -> id in both directions. Case-insensitive.

    A side-specific name without its partner is an error: flipping such data would turn
    one structure into a label that does not exist.
    """
    import re

    pattern = re.compile(r"(left|right)", re.IGNORECASE)
    by_key: dict[str, int] = {name.lower(): i for name, i in labels.items()}
    pairs: dict[int, int] = {}
    unpaired = []
    for name, label_id in labels.items():
        match = pattern.search(name)
        if match is None:
            continue
        other = "right" if match.group(1).lower() == "left" else "left"
        partner = (name[: match.start()] + other + name[match.end() :]).lower()
        if partner in by_key:
            pairs[label_id] = by_key[partner]
        else:
            unpaired.append(name)
    if unpaired:
        raise InputDataError(
            "side-specific labels without a partner on the other side",
            expected="every left_* label to have a right_* label and vice versa",
            found=", ".join(sorted(unpaired)[:10]),
            fix="declare the partner labels, or disable left/right flips (augment.flip_left_right)",
        )
    return pairs


# --- ToothFairy2 / ToothFairy3 label schemes ------------------------------------------
#
# ToothFairy2 (nnU-Net raw, .mha, release 20/04/2024): label ids as in its dataset.json,
# confirmed against the label table of the official benchmark code
# (AImageLab-zip/ToothFairy2-Benchmark, evaluation/Dataset119_ToothFairy2/evaluation.py:
# "Labels as specified in the dataset.json file", "Skipping NA labels (19, 20, 29, 30,
# 39, 40)"). Tooth ids ARE FDI numbers (permanent dentition only). The real dataset.json
# declares the unused ids 19, 20, 29, 30, 39, 40 all under the same key "NA"; a JSON
# reader keeps only one of them, so they are kept apart here (TOOTHFAIRY2_NA_IDS).
#
# ToothFairy3 (MICCAI 2025 challenge) adds the mandibular incisive canals (103, 104), the
# lingual canal (105) and one pulp per tooth at 100 + FDI (111-148): 77 classes with
# background. Confirmed only from third-party challenge code that copies the dataset.json
# label table (not from an official ToothFairy3 file); whether ToothFairy3's own
# dataset.json still carries the "NA" placeholders could not be verified.

_QUADRANT_NAMES = {1: "Upper Right", 2: "Upper Left", 3: "Lower Left", 4: "Lower Right"}
_POSITION_NAMES = {
    1: "Central Incisor",
    2: "Lateral Incisor",
    3: "Canine",
    4: "First Premolar",
    5: "Second Premolar",
    6: "First Molar",
    7: "Second Molar",
    8: "Third Molar (Wisdom Tooth)",
}


def _toothfairy_teeth(offset: int = 0, suffix: str = "") -> dict[str, int]:
    return {
        f"{_QUADRANT_NAMES[q]} {_POSITION_NAMES[p]}{suffix}": offset + q * 10 + p
        for q in PERMANENT_QUADRANTS
        for p in range(1, 9)
    }


TOOTHFAIRY2_LABELS: dict[str, int] = {
    "background": 0,
    "Lower Jawbone": 1,
    "Upper Jawbone": 2,
    "Left Inferior Alveolar Canal": 3,
    "Right Inferior Alveolar Canal": 4,
    "Left Maxillary Sinus": 5,
    "Right Maxillary Sinus": 6,
    "Pharynx": 7,
    "Bridge": 8,
    "Crown": 9,
    "Implant": 10,
    **_toothfairy_teeth(),
}
# Ids that ToothFairy2's dataset.json declares as "NA" (placeholders that never occur).
TOOTHFAIRY2_NA_IDS: tuple[int, ...] = (19, 20, 29, 30, 39, 40)

TOOTHFAIRY3_LABELS: dict[str, int] = {
    **TOOTHFAIRY2_LABELS,
    "Left Mandibular Incisive Canal": 103,
    "Right Mandibular Incisive Canal": 104,
    "Lingual Canal": 105,
    **_toothfairy_teeth(PULP_OFFSET, " Pulp"),
}

LABEL_SCHEMES: dict[str, dict[str, int]] = {
    "toothfairy2": TOOTHFAIRY2_LABELS,
    "toothfairy3": TOOTHFAIRY3_LABELS,
}


def scheme_labels(scheme: str) -> dict[str, int]:
    """The `name -> id` table of a known label scheme (a copy); case-insensitive name."""
    key = scheme.strip().lower()
    if key not in LABEL_SCHEMES:
        raise InputDataError(
            f"unknown label scheme {scheme!r}",
            expected=f"one of {', '.join(sorted(LABEL_SCHEMES))}",
            found=repr(scheme),
            fix="pick one of the known schemes, or declare the labels in the dataset itself",
        )
    return dict(LABEL_SCHEMES[key])


def is_pulp_label(label_id: int, scheme: str = "toothfairy3") -> bool:
    """Whether `label_id` is the pulp of a tooth (100 + FDI) in `scheme`."""
    return label_id in scheme_labels(scheme).values() and is_fdi(label_id - PULP_OFFSET)


def fdi_of_label(label_id: int, scheme: str) -> int | None:
    """The FDI number of the tooth a label belongs to: a tooth id is its own FDI number,
    a pulp id (100 + FDI) gives its tooth; anything else (bone, canals, background, ids
    the scheme does not declare such as ToothFairy2's "NA" placeholders) gives None."""
    if label_id not in scheme_labels(scheme).values():
        return None
    if is_fdi(label_id):
        return label_id
    if is_pulp_label(label_id, scheme):
        return label_id - PULP_OFFSET
    return None


def label_side(label_id: int, scheme: str) -> str | None:
    """The patient's side of a label, "left" or "right"; None for midline or unsided
    structures (jaws, pharynx, lingual canal, restorations) and undeclared ids."""
    tooth = fdi_of_label(label_id, scheme)
    if tooth is not None:
        return side(tooth)
    for name, value in scheme_labels(scheme).items():
        if value == label_id:
            words = name.lower().split()
            if "left" in words:
                return "left"
            if "right" in words:
                return "right"
    return None


def side_pairs(scheme: str) -> dict[int, int]:
    """The left/right label permutation of a scheme, as id -> id in both directions (only
    ids that change): teeth by `mirror`, pulps by 100 + `mirror`, and named pairs (inferior
    alveolar canals 3 <-> 4, maxillary sinuses 5 <-> 6, incisive canals 103 <-> 104).

    Pass it to `flip_lookup` as `side_pairs`. The FDI rule and the names are checked
    against each other, so a scheme whose names contradict its ids is refused.
    """
    labels = scheme_labels(scheme)
    pairs = side_pairs_from_names(labels)
    for label_id in labels.values():
        mirrored = mirror_label(label_id)
        if mirrored == label_id:
            continue
        if pairs.get(label_id, mirrored) != mirrored:
            raise InputDataError(
                f"label scheme {scheme!r}: names and FDI ids disagree on a left/right pair",
                expected=f"label {label_id} to pair with {mirrored} (FDI mirror)",
                found=f"its name pairs it with {pairs[label_id]}",
                fix="fix the label table in dentpy.data.fdi",
            )
        pairs[label_id] = mirrored
    return dict(sorted(pairs.items()))
