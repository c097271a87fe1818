import pytest

from dentpy.data import fdi
from dentpy.errors import InputDataError


@pytest.mark.parametrize(
    ("universal", "expected"),
    [("1", 18), ("8", 11), ("9", 21), ("16", 28), ("17", 38), ("24", 31), ("25", 41), ("32", 48),
     ("A", 55), ("E", 51), ("F", 61), ("J", 65), ("K", 75), ("T", 85), (30, 46), ("19", 36)],
)  # fmt: skip
def test_universal_to_fdi_known_pairs(universal: str | int, expected: int) -> None:
    assert fdi.universal_to_fdi(universal) == expected
    assert fdi.fdi_to_universal(expected) == str(universal).upper()


def test_conversion_is_a_bijection_over_52_teeth() -> None:
    assert len(fdi.ALL_FDI) == 52
    for number in fdi.ALL_FDI:
        assert fdi.universal_to_fdi(fdi.fdi_to_universal(number)) == number


def test_quadrant_side_jaw_and_mirror() -> None:
    assert (fdi.quadrant(36), fdi.side(36), fdi.jaw(36)) == (3, "left", "lower")
    assert (fdi.side(46), fdi.side(11), fdi.side(21), fdi.side(85)) == (
        "right",
        "right",
        "left",
        "right",
    )
    assert fdi.mirror(36) == 46 and fdi.mirror(55) == 65
    assert all(fdi.mirror(fdi.mirror(n)) == n for n in fdi.ALL_FDI)
    assert all(fdi.side(fdi.mirror(n)) != fdi.side(n) for n in fdi.ALL_FDI)
    assert all(fdi.jaw(fdi.mirror(n)) == fdi.jaw(n) for n in fdi.ALL_FDI)


def test_mirror_label_handles_pulp_ids_and_leaves_others() -> None:
    assert fdi.mirror_label(136) == 146
    assert fdi.mirror_label(0) == 0 and fdi.mirror_label(1) == 1


def test_flip_lookup_with_named_pairs_and_missing_mirrors() -> None:
    table = fdi.flip_lookup([0, 1, 2, 3, 36, 46, 136, 146], side_pairs={2: 3})
    assert table == {0: 0, 1: 1, 2: 3, 3: 2, 36: 46, 46: 36, 136: 146, 146: 136}
    with pytest.raises(InputDataError) as error:
        fdi.flip_lookup([0, 36])
    assert "mirrors missing: 46" in (error.value.found or "")


def test_bad_numbers_are_explained() -> None:
    with pytest.raises(InputDataError) as error:
        fdi.quadrant(19)
    assert "not an FDI tooth number" in error.value.what
    with pytest.raises(InputDataError) as error:
        fdi.universal_to_fdi("33")
    assert "not a Universal tooth number" in error.value.what


def test_side_pairs_from_names_cover_dentpy_and_toothfairy2_styles() -> None:
    labels = {
        "background": 0,
        "Lower Jawbone": 1,
        "Left Inferior Alveolar Canal": 3,
        "Right Inferior Alveolar Canal": 4,
        "Left Maxillary Sinus": 5,
        "Right Maxillary Sinus": 6,
        "Upper Right Central Incisor": 11,
        "Upper Left Central Incisor": 21,
    }
    assert fdi.side_pairs_from_names(labels) == {3: 4, 4: 3, 5: 6, 6: 5, 11: 21, 21: 11}
    assert fdi.side_pairs_from_names({"left_ian": 2, "right_ian": 3, "pulp": 5}) == {2: 3, 3: 2}
    # Names and FDI ids agree, so combining both gives one consistent flip.
    table = fdi.flip_lookup(labels.values(), fdi.side_pairs_from_names(labels))
    assert table[11] == 21 and table[3] == 4 and table[1] == 1
    with pytest.raises(InputDataError) as error:
        fdi.side_pairs_from_names({"left_ian": 2})
    assert "left_ian" in (error.value.found or "")


# --- ToothFairy2 / ToothFairy3 label schemes ---


def test_toothfairy2_table_matches_the_published_ids() -> None:
    labels = fdi.TOOTHFAIRY2_LABELS
    assert len(labels) == 43  # background + 42 structures
    assert labels["Lower Jawbone"] == 1 and labels["Upper Jawbone"] == 2
    assert labels["Left Inferior Alveolar Canal"] == 3
    assert labels["Right Maxillary Sinus"] == 6 and labels["Implant"] == 10
    assert labels["Upper Right Central Incisor"] == 11
    assert labels["Lower Right Third Molar (Wisdom Tooth)"] == 48
    teeth = sorted(v for v in labels.values() if v > 10)
    assert teeth == [q * 10 + p for q in (1, 2, 3, 4) for p in range(1, 9)]
    assert not set(fdi.TOOTHFAIRY2_NA_IDS) & set(labels.values())


def test_toothfairy3_adds_canals_and_pulps() -> None:
    labels = fdi.TOOTHFAIRY3_LABELS
    assert len(labels) == 43 + 3 + 32
    assert labels["Left Mandibular Incisive Canal"] == 103
    assert labels["Right Mandibular Incisive Canal"] == 104
    assert labels["Lingual Canal"] == 105
    assert labels["Upper Right Central Incisor Pulp"] == 111
    assert labels["Lower Right Third Molar (Wisdom Tooth) Pulp"] == 148
    assert set(fdi.TOOTHFAIRY2_LABELS.items()) <= set(labels.items())
    assert len(set(labels.values())) == len(labels)


@pytest.mark.parametrize(
    ("label_id", "scheme", "expected"),
    [(36, "toothfairy2", 36), (11, "toothfairy3", 11), (136, "toothfairy3", 36),
     (111, "toothfairy3", 11), (136, "toothfairy2", None), (3, "toothfairy3", None),
     (0, "toothfairy2", None), (19, "toothfairy2", None), (103, "toothfairy3", None),
     (55, "toothfairy2", None), (105, "ToothFairy3", None)],
)  # fmt: skip
def test_fdi_of_label(label_id: int, scheme: str, expected: int | None) -> None:
    assert fdi.fdi_of_label(label_id, scheme) == expected


def test_is_pulp_label() -> None:
    assert fdi.is_pulp_label(111) and fdi.is_pulp_label(148, "toothfairy3")
    assert not fdi.is_pulp_label(11) and not fdi.is_pulp_label(105)
    assert not fdi.is_pulp_label(149) and not fdi.is_pulp_label(155)
    assert not fdi.is_pulp_label(111, "toothfairy2")


def test_label_side() -> None:
    assert (
        fdi.label_side(3, "toothfairy2") == "left" and fdi.label_side(4, "toothfairy2") == "right"
    )
    assert (
        fdi.label_side(5, "toothfairy2") == "left" and fdi.label_side(6, "toothfairy3") == "right"
    )
    assert fdi.label_side(103, "toothfairy3") == "left"
    assert fdi.label_side(104, "toothfairy3") == "right"
    assert (
        fdi.label_side(36, "toothfairy2") == "left"
        and fdi.label_side(146, "toothfairy3") == "right"
    )
    for unsided in (0, 1, 2, 7, 8, 9, 10, 105):
        assert fdi.label_side(unsided, "toothfairy3") is None
    assert fdi.label_side(19, "toothfairy2") is None


@pytest.mark.parametrize("scheme", ["toothfairy2", "toothfairy3"])
def test_side_pairs_are_an_involution_that_swaps_sides(scheme: str) -> None:
    labels = fdi.scheme_labels(scheme)
    pairs = fdi.side_pairs(scheme)
    table = fdi.flip_lookup(labels.values(), pairs)
    assert sorted(table) == sorted(labels.values())
    assert all(table[table[i]] == i for i in table)  # flipping twice is the identity
    assert sorted(table.values()) == sorted(table)  # a permutation
    for label_id, other in table.items():
        sided = fdi.label_side(label_id, scheme)
        if sided is None:
            assert other == label_id
        else:
            assert fdi.label_side(other, scheme) == ("left" if sided == "right" else "right")
    assert pairs[3] == 4 and pairs[4] == 3 and pairs[5] == 6 and pairs[6] == 5
    assert pairs[11] == 21 and pairs[38] == 48
    # Consistent with the name-based pairing the dataset readers use.
    assert fdi.side_pairs_from_names(labels) == pairs


def test_toothfairy3_side_pairs_cover_pulps_and_incisive_canals() -> None:
    pairs = fdi.side_pairs("toothfairy3")
    assert pairs[103] == 104 and pairs[104] == 103
    assert pairs[111] == 121 and pairs[136] == 146 and pairs[148] == 138
    assert 105 not in pairs and 7 not in pairs and 0 not in pairs
    assert all(
        pairs[p] == fdi.PULP_OFFSET + fdi.mirror(p - fdi.PULP_OFFSET)
        for p in range(111, 149)
        if fdi.is_fdi(p - 100)
    )


def test_unknown_scheme_is_explained() -> None:
    with pytest.raises(InputDataError) as error:
        fdi.side_pairs("toothfairy9")
    assert "unknown label scheme" in error.value.what
    assert "toothfairy2" in (error.value.expected or "")
