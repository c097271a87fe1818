"""Target spacing: median of the training cases, nnU-Net's rule for thick-slice data, and
canonical axes for files stored in another orientation."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from dentpy.data.dataset import open_dataset
from dentpy.planning.spacing import choose_target_spacing
from dentpy.spec import Spec, load_spec
from dentpy.train import target_spacing, target_spacing_choice

THICK = np.array([[0.4, 0.4, 2.5], [0.5, 0.5, 3.0], [0.4, 0.4, 1.0], [0.45, 0.45, 2.0]])
FEW_SLICES = np.array([[512, 512, 60], [480, 480, 50], [512, 512, 150], [500, 500, 70]])


def test_isotropic_cbct_takes_the_median() -> None:
    spacings = np.array([[0.3, 0.3, 0.3], [0.4, 0.4, 0.4], [0.25, 0.25, 0.25]])
    shapes = np.array([[400, 400, 300]] * 3)

    choice = choose_target_spacing(spacings, shapes)

    assert choice.mm == (0.3, 0.3, 0.3) and choice.rule.startswith("median")


def test_thick_slices_take_the_10th_percentile_of_their_axis() -> None:
    choice = choose_target_spacing(THICK, FEW_SLICES)

    # median z = 2.25 mm; the 10th percentile of (2.5, 3.0, 1.0, 2.0) is 1.3 mm
    assert choice.mm == (0.425, 0.425, pytest.approx(np.percentile(THICK[:, 2], 10)))
    assert choice.mm[2] == pytest.approx(1.3)
    assert "anisotropic" in choice.rule and "axis 2" in choice.rule


def test_thick_slices_with_many_of_them_keep_the_median() -> None:
    many = FEW_SLICES.copy()
    many[:, 2] = 400  # as many slices as in-plane voxels: not the thick-slice case

    assert choose_target_spacing(THICK, many).mm == (0.425, 0.425, 2.25)


def test_the_thick_axis_is_never_made_finer_than_the_other_axes() -> None:
    thickness = [3.0, 3.0, 3.0, 0.3, 0.2]
    spacings = np.array([[0.8, 0.8, t] for t in thickness])
    shapes = np.array([[512, 512, 40]] * 5)

    choice = choose_target_spacing(spacings, shapes)

    assert choice.mm == (0.8, 0.8, 0.8)  # the 10th percentile (0.24 mm) is clamped


def write_case(root: Path, name: str, shape: tuple[int, int, int], affine: np.ndarray) -> None:
    image = np.zeros(shape, dtype=np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    label[1:3, 1:3, 1:3] = 1
    for folder, array, suffix in (("imagesTr", image, "_0000"), ("labelsTr", label, "")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(array, affine), root / folder / f"{name}{suffix}.nii.gz")


def test_files_with_the_thick_axis_stored_first_are_planned_in_canonical_axes(
    tmp_path: Path,
) -> None:
    """Thick slices along the file's first axis, which an LPS-like affine maps to the
    canonical S axis: the rule must see shape and spacing of the same canonical axis."""
    root = tmp_path / "Dataset001_CT"
    for n, (slices, thickness) in enumerate(((30, 2.5), (24, 3.0), (28, 1.5))):
        # file axes (i, j, k) -> (S, A, R): i is the thick slice axis with few slices
        affine = np.zeros((4, 4))
        affine[2, 0], affine[1, 1], affine[0, 2], affine[3, 3] = thickness, 0.5, 0.5, 1.0
        write_case(root, f"case_{n:03d}", (slices, 200, 200), affine)
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": {"background": 0, "pulp": 1},
                "numTraining": 3,
                "file_ending": ".nii.gz",
            }
        )
    )
    dataset = open_dataset(root)
    ids = [r.case_id for r in dataset.records]
    spec = spec_for(tmp_path, root)

    choice = target_spacing_choice(spec, dataset, ids)

    # canonical (R, A, S): 0.5 x 0.5 x (1.5 | 2.5 | 3.0) mm, 200 x 200 x ~28 voxels; the
    # median S spacing (2.5) gives way to its 10th percentile (1.7)
    assert choice.mm == (0.5, 0.5, pytest.approx(1.7))
    assert "axis 2" in choice.rule
    assert target_spacing(spec, dataset, ids) == choice.mm
    given = spec_for(tmp_path, root, "preprocess:\n  target_spacing_mm: [1.0, 1.0, 1.0]\n")
    assert target_spacing_choice(given, dataset, ids).rule.startswith("from the spec")


def spec_for(folder: Path, data: Path, extra: str = "") -> Spec:
    path = folder / "spec.yaml"
    path.write_text(f"name: t\ninput:\n  data: {data}\nobjective:\n  classes: [pulp]\n{extra}")
    return load_spec(path)
