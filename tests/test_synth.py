"""Synthetic CBCT generator: determinism, labels that agree with the image by construction,
artefacts that never touch labels, a task a threshold cannot solve, and the three layouts."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from dentpy.data.io import read_image, read_label
from dentpy.data.synth import LABELS, PROFILES, SyntheticCase, generate_case, write_dataset
from dentpy.data.synth.writers import _umask
from dentpy.errors import SpecError


@pytest.fixture(scope="module")
def case() -> SyntheticCase:
    return generate_case(3, 0, "tiny")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _world_x(case: SyntheticCase, mask: np.ndarray) -> np.ndarray:
    ijk = np.argwhere(mask)
    return ijk @ case.label.affine[0, :3] + case.label.affine[0, 3]


def best_window_dice(image: np.ndarray, truth: np.ndarray, steps: int = 40) -> float:
    """Best Dice of any window [lo, hi] on a grid of the image's own percentiles."""
    edges = np.unique(np.percentile(image, np.linspace(0, 100, steps)))
    bins = np.clip(np.searchsorted(edges, image, side="right") - 1, 0, len(edges) - 2)
    every = np.concatenate([[0], np.cumsum(np.bincount(bins.ravel(), minlength=len(edges) - 1))])
    hits = np.concatenate([[0], np.cumsum(np.bincount(bins[truth], minlength=len(edges) - 1))])
    lo, hi = np.triu_indices(len(edges), k=1)
    dice = 2 * (hits[hi] - hits[lo]) / (every[hi] - every[lo] + truth.sum())
    return float(dice.max())


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    first = _files(write_dataset(tmp_path / "a", cases=2, seed=5))
    again = _files(write_dataset(tmp_path / "b", cases=2, seed=5))
    other = _files(write_dataset(tmp_path / "c", cases=2, seed=6))
    assert first == again
    images = [name for name in first if name.startswith("imagesTr/")]
    assert len(images) == 2
    assert all(first[name] != other[name] for name in images)


def test_case_types_and_geometry(case: SyntheticCase) -> None:
    tiny = PROFILES["tiny"]
    assert case.image.array.dtype == np.int16
    assert case.label.array.dtype == np.uint8
    assert case.instances.array.dtype == np.uint16
    assert case.image.shape == case.label.shape == case.instances.shape == tiny.shape
    assert case.image.spacing_mm == (tiny.spacing_mm,) * 3
    assert case.image.same_geometry(case.label) and case.image.same_geometry(case.instances)
    assert np.allclose(case.image.direction, np.eye(3))  # axis-aligned RAS grid
    assert np.all(np.abs(case.image.origin_mm) > 1.0)


def test_labels_are_consistent(case: SyntheticCase) -> None:
    label, inst = case.label.array, case.instances.array
    assert set(np.unique(label)) == set(LABELS.values())  # every class present
    teeth = (inst > 0) & (inst < 100)
    pulps = inst >= 100
    assert np.array_equal(teeth, label == LABELS["tooth"])
    assert np.array_equal(pulps, label == LABELS["pulp"])
    fdi = set(np.unique(inst[teeth]).tolist())
    assert fdi <= {*range(31, 39), *range(41, 49)}
    assert set((np.unique(inst[pulps]) - 100).tolist()) <= fdi
    # RAS+: world x grows toward the patient's right, so the patient's left is x < 0.
    assert _world_x(case, label == LABELS["left_ian"]).max() < 0
    assert _world_x(case, label == LABELS["right_ian"]).min() > 0
    for number in fdi:
        centre = _world_x(case, inst == number).mean()
        assert (centre < 0) == (number < 40), f"tooth {number} on the wrong side"


def test_artefacts_change_the_image_only(case: SyntheticCase) -> None:
    clean = generate_case(3, 0, "tiny", artefacts=False)
    assert np.array_equal(clean.label.array, case.label.array)
    assert np.array_equal(clean.instances.array, case.instances.array)
    assert not np.array_equal(clean.image.array, case.image.array)


def test_threshold_baseline_scores_low(case: SyntheticCase) -> None:
    # Measured on this case: pulp 0.07, left IAN 0.04, right IAN 0.04 (tiny cases 0-5 of
    # seed 0: pulp <= 0.07, IAN <= 0.04). Pulp and canal gray values overlap cancellous bone
    # and soft tissue, so a model has to use shape and context.
    image = case.image.array.astype(np.float32)
    for name in ("pulp", "left_ian", "right_ian"):
        dice = best_window_dice(image, case.label.array == LABELS[name])
        assert dice < 0.45, f"{name}: a threshold window reaches Dice {dice:.2f}"


def test_structures_are_visible(case: SyntheticCase) -> None:
    # Learnable, not only unsolvable: pulp is darker than the dentin around it and the canal
    # darker than its wall, in the clean image.
    clean = generate_case(3, 0, "tiny", artefacts=False).image.array.astype(np.float32)
    label = case.label.array
    assert np.median(clean[label == LABELS["pulp"]]) < np.median(clean[label == LABELS["tooth"]])
    for name in ("left_ian", "right_ian"):
        canal = label == LABELS[name]
        assert canal.sum() > 100
        assert np.median(clean[canal]) < np.median(clean[label == LABELS["mandible"]])


def test_tiny_profile_is_fast() -> None:
    start = time.perf_counter()
    generate_case(11, 4, "tiny")
    assert time.perf_counter() - start < 10.0  # ~0.5 s on 2 cores; generous, never flaky


def test_unknown_names_suggest_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="did you mean 'tiny'"):
        generate_case(0, 0, "tiyn")
    with pytest.raises(SpecError, match="did you mean 'toothfairy'"):
        write_dataset(tmp_path / "x", cases=1, layout="toothfary")
    with pytest.raises(SpecError, match="did you mean 'full'"):
        write_dataset(tmp_path / "x", cases=1, profile="ful")
    with pytest.raises(SpecError, match="cases"):
        write_dataset(tmp_path / "x", cases=0)
    assert not (tmp_path / "x").exists()


def test_nnunet_layout(tmp_path: Path) -> None:
    root = write_dataset(tmp_path, cases=1, test_cases=1, seed=2)
    assert root == tmp_path / "Dataset001_SynthCBCT"
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CBCT"}
    assert meta["labels"] == LABELS
    assert meta["numTraining"] == 1 and meta["file_ending"] == ".nii.gz"
    assert "dentpy synthetic" in meta["description"] and "seed=2" in meta["description"]
    names = {p.relative_to(root).as_posix() for p in root.rglob("*.nii.gz")}
    assert names == {
        "imagesTr/synth_000_0000.nii.gz",
        "labelsTr/synth_000.nii.gz",
        "imagesTs/synth_001_0000.nii.gz",
        "labelsTs/synth_001.nii.gz",
    }
    image = read_image(root / "imagesTs/synth_001_0000.nii.gz")
    label = read_label(root / "labelsTs/synth_001.nii.gz")
    expected = generate_case(2, 1, "tiny")
    assert np.array_equal(image.array, expected.image.array)
    assert np.array_equal(label.array, expected.label.array)
    assert np.allclose(image.affine, expected.image.affine)
    assert not list(tmp_path.glob(".*")), "staging folders left behind"
    # Staging uses private temp files; the finished dataset must be readable like any other.
    umask = _umask()
    assert stat.S_IMODE(root.stat().st_mode) == 0o777 & ~umask
    for path in (root / "dataset.json", root / "imagesTr/synth_000_0000.nii.gz"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_pulpy_layout(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "pulpy", cases=1, test_cases=1, layout="pulpy")
    for patient in ("P1", "P2"):
        for name in ("data.nii.gz", "label.nii.gz", "gt_instance.nii.gz"):
            assert (root / patient / name).is_file()
    assert json.loads((root / "splits.json").read_text()) == {"train": ["P1"], "test": ["P2"]}
    assert json.loads((root / "labels.json").read_text()) == LABELS
    instances = read_label(root / "P1" / "gt_instance.nii.gz").array
    assert instances.max() > 100  # pulp instances are 100 + FDI


def test_toothfairy_layout(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "tf", cases=2, test_cases=1, layout="toothfairy", seed=1)
    splits = json.loads((root / "splits.json").read_text())
    assert splits == {"train": ["P1"], "val": ["P2"], "test": ["P3"]}
    case = generate_case(1, 0, "tiny")
    data = np.load(root / "P1" / "data.npy")
    alpha = np.load(root / "P1" / "gt_alpha.npy")
    sparse = np.load(root / "P1" / "gt_sparse.npy")
    assert data.dtype == np.int16 and alpha.dtype == np.uint8
    assert np.array_equal(data, case.image.array.transpose(2, 1, 0))  # (Z, Y, X)
    canal = np.isin(case.label.array, (LABELS["left_ian"], LABELS["right_ian"]))
    assert np.array_equal(alpha, canal.transpose(2, 1, 0))
    assert set(np.unique(alpha)) == {0, 1}
    labelled = np.nonzero(sparse.any(axis=(1, 2)))[0]
    assert labelled.size and np.all(labelled % 5 == 0)
    assert np.array_equal(sparse[::5], alpha[::5])
    assert "1 mm" in (root / "README.txt").read_text()


def test_rewrite_replaces_own_dataset_but_refuses_foreign_folders(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "p", cases=2, layout="pulpy")
    write_dataset(tmp_path / "p", cases=1, layout="pulpy")
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["P1"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SpecError, match="not a dentpy synthetic dataset"):
        write_dataset(foreign, cases=1, layout="toothfairy")
    assert (foreign / "notes.txt").read_text() == "keep me"
