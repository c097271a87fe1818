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
