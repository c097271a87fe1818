"""Instance variation in the synthetic CBCT (impacted third molars, touching crowns) and the
ToothFairy3 label scheme of the written datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, label
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.data.fdi import TOOTHFAIRY3_LABELS
from dentpy.data.io import read_label
from dentpy.data.synth import LABELS, SyntheticCase, generate_case, write_dataset
from dentpy.data.synth.anatomy import MIN_GAP_MM, NEIGHBOURS, tooth_gap
from dentpy.data.synth.cbct import case_anatomy
from dentpy.errors import SpecError

SEARCH = 20  # first indices of seed 0 searched for each kind of case
CUBE = np.ones((3, 3, 3), dtype=bool)  # 26-neighbourhood


def _first(kind: str) -> tuple[int, SyntheticCase]:
    for index in range(SEARCH):
        # The anatomy alone says what was drawn; only the hit is rasterised.
        if case_anatomy(0, index).record[kind]:
            return index, generate_case(0, index, "tiny")
    raise AssertionError(f"no case with {kind} among the first {SEARCH} of seed 0")


@pytest.fixture(scope="module")
def impacted() -> tuple[int, SyntheticCase]:
    return _first("impacted")


@pytest.fixture(scope="module")
def touching() -> tuple[int, SyntheticCase]:
    return _first("touching")


def _tooth(case: SyntheticCase, fdi: int) -> np.ndarray:
    inst = case.instances.array
    return (inst == fdi) | (inst == fdi + 100)


def test_variation_is_reproducible(
    impacted: tuple[int, SyntheticCase], touching: tuple[int, SyntheticCase]
) -> None:
    for index, case in (impacted, touching):
        again = generate_case(0, index, "tiny")
        assert again.teeth == case.teeth
        assert json.loads(json.dumps(case.teeth)) == case.teeth  # JSON-safe
        for name in ("image", "label", "instances"):
            assert np.array_equal(getattr(again, name).array, getattr(case, name).array)
    records = [case_anatomy(0, i).record for i in range(4)]
    assert records == [case_anatomy(0, i).record for i in range(4)]
    assert records != [case_anatomy(1, i).record for i in range(4)]


def test_record_matches_the_instance_map(impacted: tuple[int, SyntheticCase]) -> None:
    _, case = impacted
    inst = case.instances.array
    teeth = set(np.unique(inst[(inst > 0) & (inst < 100)]).tolist())
    assert teeth == set(case.teeth["present"])
    assert not teeth & set(case.teeth["missing"])
    assert set(case.teeth["impacted"]) <= teeth


def test_impacted_third_molar_is_tilted_low_and_separate(
    impacted: tuple[int, SyntheticCase],
) -> None:
    index, case = impacted
    fdi = case.teeth["impacted"][0]
    assert fdi % 10 == 8
    mask = _tooth(case, fdi)
    assert mask.sum() > 200
    # Clear of the grid edges: the whole tooth is labelled.
    for axis in range(3):
        assert not np.take(mask, 0, axis=axis).any() and not np.take(mask, -1, axis=axis).any()
    # Tilted: the long (principal) axis of its voxels leans > 25 degrees from vertical.
    pts = np.argwhere(mask).astype(float)
    _, vectors = np.linalg.eigh(np.cov((pts - pts.mean(axis=0)).T))
    angle = np.degrees(np.arccos(abs(vectors[2, -1])))
    assert angle > 25.0, f"impacted {fdi} leans only {angle:.0f} degrees"
    # Low: its top is well below the crowns of the erupted molars in front of it.
    top = np.argwhere(mask)[:, 2].max()
    for neighbour in (fdi - 1, fdi - 2):
        if neighbour in case.teeth["present"]:
            assert top <= np.argwhere(_tooth(case, neighbour))[:, 2].max() - 4
    # Touching the second molar is allowed, sinking into it is not.
    anatomy = case_anatomy(0, index)
    by_fdi = {t.fdi: t for t in anatomy.teeth}
    if fdi - 1 in by_fdi:
        assert tooth_gap(by_fdi[fdi], by_fdi[fdi - 1]) >= -0.25
    # Clear of the IAN canal: every canal voxel of its side is still labelled canal.
    side = "left_ian" if fdi < 40 else "right_ian"
    assert (case.label.array == LABELS[side]).sum() > 100


def test_touching_crowns_stay_separate_instances(touching: tuple[int, SyntheticCase]) -> None:
    index, case = touching
    anatomy = case_anatomy(0, index)
    by_fdi = {t.fdi: t for t in anatomy.teeth}
    for a, b in case.teeth["touching"]:
        assert -0.3 <= tooth_gap(by_fdi[a], by_fdi[b]) <= 0.05
    a, b = case.teeth["touching"][0]
    first, second = _tooth(case, a), _tooth(case, b)
    assert first.any() and second.any()
    # 26-neighbours: connected components of the tooth voxels would merge the two ...
    assert (binary_dilation(first, CUBE) & second).any()
    components, _ = label(first | second, structure=CUBE)
    assert len(np.unique(components[first | second])) == 1
    # ... while the instance map keeps them apart.
    assert not (first & second).any()
    # Every other pair of present neighbours keeps a gap (the contacts are the drawn ones).
    pairs = {tuple(p) for p in case.teeth["touching"]}
    for keys in NEIGHBOURS:
        ids = tuple(sorted((30 if side == "left" else 40) + pos for side, pos in keys))
        if ids in pairs or ids[0] not in by_fdi or ids[1] not in by_fdi:
            continue
        assert tooth_gap(by_fdi[ids[0]], by_fdi[ids[1]]) >= MIN_GAP_MM - 0.05, ids


def _expected_names() -> dict[str, int]:
    lower = [*range(31, 39), *range(41, 49)]
    ids = {0, 1, 3, 4, *lower, *(100 + n for n in lower)}
    return {name: i for name, i in TOOTHFAIRY3_LABELS.items() if i in ids}


def _world_x(affine: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask) @ affine[0, :3] + affine[0, 3]


def test_toothfairy3_labels_nnunet(tmp_path: Path) -> None:
    root = write_dataset(tmp_path, cases=1, seed=0, labels="toothfairy3")
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["labels"] == _expected_names()
    assert len(meta["labels"]) == 4 + 16 + 16
    assert meta["labels"]["Left Inferior Alveolar Canal"] == 3
    assert meta["labels"]["Lower Left Central Incisor Pulp"] == 131
    label = read_label(root / "labelsTr" / "synth_000.nii.gz")
    case = generate_case(0, 0, "tiny")
    tf3, sem, inst = np.asarray(label.array), case.label.array, case.instances.array
    assert tf3.dtype == np.uint8
    assert set(np.unique(tf3).tolist()) == {0, 1, 3, 4} | set(np.unique(inst).tolist())
    assert np.array_equal(tf3 == 1, sem == LABELS["mandible"])
    assert np.array_equal(tf3 == 3, sem == LABELS["left_ian"])
    assert np.array_equal(tf3 == 4, sem == LABELS["right_ian"])
    assert _world_x(label.affine, tf3 == 3).max() < 0  # the patient's left is world x < 0
    assert _world_x(label.affine, tf3 == 4).min() > 0
    teeth = sem == LABELS["tooth"]
    assert np.array_equal(tf3[teeth], inst[teeth])
    assert set(np.unique(tf3[teeth]).tolist()) == set(case.teeth["present"])
    pulp = sem == LABELS["pulp"]
    assert pulp.any() and np.all(tf3[pulp] >= 131)
    assert np.array_equal(tf3[pulp], inst[pulp])  # 100 + the FDI of the tooth around it
    # Each pulp sits in the tooth with its own number.
    for value in np.unique(tf3[pulp]):
        ring = binary_dilation(tf3 == value, CUBE) & teeth
        assert set(np.unique(tf3[ring]).tolist()) <= {int(value) - 100}
    readme = (root / "README.txt").read_text()
    assert "toothfairy3" in readme and "Left Inferior Alveolar Canal 3" in readme


def test_toothfairy3_labels_pulpy_and_data_check(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "p", cases=2, seed=0, layout="pulpy", labels="toothfairy3")
    assert json.loads((root / "labels.json").read_text()) == _expected_names()
    case = generate_case(0, 1, "tiny")
    tf3 = np.asarray(read_label(root / "P2" / "label.nii.gz").array)
    dental = case.instances.array > 0
    assert np.array_equal(tf3[dental], case.instances.array[dental])
    assert np.array_equal(tf3 == 1, case.label.array == LABELS["mandible"])
    result = CliRunner().invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 0, result.output
    assert "no problems found in 2 cases" in result.output


def test_toothfairy_layout_refuses_toothfairy3_labels(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="labels='toothfairy3'") as error:
        write_dataset(tmp_path / "tf", cases=1, layout="toothfairy", labels="toothfairy3")
    message = str(error.value)
    assert "layout 'toothfairy'" in message and "--layout nnunet" in message
    with pytest.raises(SpecError, match="did you mean 'toothfairy3'"):
        write_dataset(tmp_path / "tf", cases=1, labels="toothfairy")
    assert not (tmp_path / "tf").exists()
    args = ["--out", str(tmp_path / "cli"), "--layout", "toothfairy", "--labels", "toothfairy3"]
    result = CliRunner().invoke(app, ["synth", "cbct", *args, "--cases", "1"])
    assert result.exit_code != 0
    assert not (tmp_path / "cli").exists()
