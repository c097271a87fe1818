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
