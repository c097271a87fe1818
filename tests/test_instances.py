"""FDI instance task: class choice, the flip renumbering, one-piece cleaning, side checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dentpy.augment import BatchAugment
from dentpy.data.fdi import TOOTHFAIRY3_LABELS
from dentpy.data.synth.cbct import LABELS, generate_case
from dentpy.data.volume import LabelMap
from dentpy.errors import SpecError
from dentpy.instances import (
    clean_instances,
    instance_postprocess,
    remove_specks,
    side_findings,
    to_label_ids,
)
from dentpy.preprocess import map_classes
from dentpy.spec import Augment, parse_spec
from dentpy.tasks.instance import instance_swap_table
from dentpy.tasks.segmentation import SegmentationTask, build_segmentation_task

LOWER = [*range(31, 39), *range(41, 49)]
CANALS = ["Left Inferior Alveolar Canal", "Right Inferior Alveolar Canal"]
# The labels of a lower-jaw ToothFairy3 dataset (as `synth cbct --labels toothfairy3`).
LOWER_JAW_LABELS = {
    name: i
    for name, i in TOOTHFAIRY3_LABELS.items()
    if i in (0, 1, 3, 4) or i in LOWER or i - 100 in LOWER
}


def _instance_spec(instances: str = "teeth", classes: object = "auto") -> object:
    return parse_spec(
        {"objective": {"output": "instance", "instances": instances, "classes": classes}}
    )


def test_instance_classes_come_from_fdi_ids_in_id_order() -> None:
    task = build_segmentation_task(_instance_spec(), LOWER_JAW_LABELS)  # type: ignore[arg-type]
    assert [ids[0] for ids in task.class_label_ids] == LOWER
    assert task.instances == "teeth"
    both = build_segmentation_task(
        _instance_spec("teeth+pulp", CANALS),  # type: ignore[arg-type]
        LOWER_JAW_LABELS,
    )
    ids = [i[0] for i in both.class_label_ids]
    assert ids == [*LOWER, *(100 + t for t in LOWER), 3, 4]
    assert both.instance_label_ids("pulp") == tuple(100 + t for t in LOWER)
    assert SegmentationTask.from_dict(both.to_dict()) == both


def test_instance_output_on_a_dataset_without_fdi_ids_is_refused() -> None:
    with pytest.raises(SpecError, match="labels no teeth"):
        build_segmentation_task(_instance_spec(), dict(LABELS))  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="does not label"):
        build_segmentation_task(
            _instance_spec(classes=["left_ian"]),  # type: ignore[arg-type]
            LOWER_JAW_LABELS,
        )


def test_flip_table_renumbers_teeth_pulps_and_canals() -> None:
    ids = [31, 36, 41, 46, 136, 146, 3, 4]
    names = [f"c{i}" for i in ids[:-2]] + CANALS
    table = instance_swap_table(names, [(i,) for i in ids])
    assert table == [0, 3, 4, 1, 2, 6, 5, 8, 7]
    # 36 without 46 among the classes: flipping would invent a number -> no flips.
    assert instance_swap_table(["a", "b"], [(36,), (41,)]) is None
    assert instance_swap_table(["a", "b", "Left IAN"], [(36,), (46,), (3,)]) is None


def test_flip_of_a_synthetic_case_keeps_left_numbers_on_the_left() -> None:
    case = generate_case(0, 0, "tiny")
    labels = case.instances.array.astype(np.int64)
    labels[case.label.array == LABELS["left_ian"]] = 3
    labels[case.label.array == LABELS["right_ian"]] = 4
    task = build_segmentation_task(
        _instance_spec("teeth+pulp", CANALS),  # type: ignore[arg-type]
        LOWER_JAW_LABELS,
    )
    classes = map_classes(labels, [list(ids) for ids in task.class_label_ids])
    augment = BatchAugment(
        Augment(
            rotate_degrees=0,
            scale_range=(1, 1),
            intensity_scale=0,
            intensity_shift=0,
            gamma_range=(1, 1),
            noise_std=0,
            probability=0,
        ),
        task.swap_table(),
        torch.device("cpu"),
        seed=0,
    )
    image = torch.from_numpy(case.image.array.astype(np.float32))[None, None]
    label = torch.from_numpy(classes)[None, None]
    params = augment.draw(1)
    params["flip"] = torch.tensor([True])
    _, flipped = augment.apply(image, label, params)
    flipped_ids = to_label_ids(flipped[0, 0].numpy(), task.class_label_ids)
    # The generator's grid is RAS with the midline at world x = 0; the array axis 0 is x.
    x_world = case.label.affine[0, 0] * np.arange(labels.shape[0]) + case.label.affine[0, 3]
    midline_index = np.argmin(np.abs(x_world))
    for label_id in np.unique(flipped_ids[flipped_ids > 0]):
        where = np.argwhere(flipped_ids == label_id)[:, 0]
        side = "left" if np.mean(x_world[where]) < x_world[midline_index] else "right"
        fdi = label_id % 100
        if label_id in (3, 4):
            assert side == ("left" if label_id == 3 else "right")
        elif fdi // 10 in (3, 4):
            assert side == ("left" if fdi // 10 == 3 else "right"), label_id
    # And every voxel is the mirror of the original, renumbered.
    swap = np.array(task.swap_table())
    np.testing.assert_array_equal(flipped[0, 0].numpy(), swap[classes[::-1]])


def _boxes(shape: tuple[int, int, int], placed: dict[int, tuple[int, int]]) -> np.ndarray:
    """Label map with one box per label at (x start, x stop) along axis 0."""
    labels = np.zeros(shape, dtype=np.uint8)
    for label, (start, stop) in placed.items():
        labels[start:stop, 4:10, 4:10] = label
    return labels


def test_second_piece_is_removed_and_reported_only_when_large() -> None:
    labels = _boxes((60, 14, 14), {36: (2, 12)})
    labels[30:35, 4:10, 4:10] = 36  # half the size of the first piece: "appears twice"
    labels[50:51, 4:6, 4:6] = 36  # a 4-voxel crumb: cleaned silently
    cleaned, findings = clean_instances(labels, [36], (0.5, 0.5, 0.5))
    assert (cleaned == 36).sum() == 10 * 36
    assert [f.kind for f in findings] == ["appears_twice"]
    assert "50%" in findings[0].detail and "tooth 36" in findings[0].detail
    alone = _boxes((60, 14, 14), {36: (2, 12)})
    alone[50:51, 4:6, 4:6] = 36
    cleaned, findings = clean_instances(alone, [36], (0.5, 0.5, 0.5))
    assert findings == [] and (cleaned == 36).sum() == 360


def test_a_number_on_the_wrong_side_is_reported() -> None:
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[0, 3] = -50.0  # world x = index - 50: the midline is index 50
    # Left teeth (3x) at x < 0, right teeth (4x) at x > 0; 44 placed among the left ones.
    placed = {31: (45, 49), 32: (40, 44), 33: (35, 39), 41: (51, 55), 42: (56, 60)}
    placed |= {43: (61, 65), 44: (28, 33)}
    labels = _boxes((100, 14, 14), placed)
    findings = side_findings(labels, affine, list(placed))
    assert [(f.kind, f.label) for f in findings] == [("wrong_side", 44)]
    assert "left of the midline" in findings[0].detail
    # Every number mirrored: the scan looks flipped, not one wrong tooth.
    mirrored = {k: (100 - b, 100 - a) for k, (a, b) in placed.items() if k != 44}
    findings = side_findings(_boxes((100, 14, 14), mirrored), affine, list(mirrored))
    assert [f.kind for f in findings] == ["sides_swapped"]
    # One side only: nothing to compare with.
    right = {k: v for k, v in placed.items() if k // 10 == 4 and k != 44}
    assert side_findings(_boxes((100, 14, 14), right), affine, list(right)) == []
    # Correct numbering: no findings.
    fine = {k: v for k, v in placed.items() if k != 44}
    assert side_findings(_boxes((100, 14, 14), fine), affine, list(fine)) == []


def test_postprocess_writes_fdi_numbers() -> None:
    task = SegmentationTask(("a", "b", "canal"), ((36,), (136,), (3,)), "teeth+pulp")
    classes = np.zeros((20, 10, 10), dtype=np.uint8)
    classes[2:8, 2:8, 2:8] = 1
    classes[4:6, 4:6, 4:6] = 2
    classes[12:14, 2:8, 2:8] = 3
    out, findings = instance_postprocess(LabelMap(array=classes, affine=np.eye(4)), task)
    assert sorted(np.unique(out.array).tolist()) == [0, 3, 36, 136]
    assert findings == []


def test_a_speck_under_a_tenth_of_the_median_tooth_is_removed_and_reported() -> None:
    labels = _boxes((100, 14, 14), {31: (2, 12), 32: (20, 30), 33: (40, 50)})
    labels[60:61, 4:6, 4:6] = 48  # 4 voxels against a median of 360
    findings = remove_specks(labels, [31, 32, 33, 48], voxel_mm3=0.5)
    assert [(f.kind, f.label) for f in findings] == [("speck_removed", 48)]
    assert "2.0 mm³" in findings[0].detail and not (labels == 48).any()
    assert (labels == 31).sum() == 360  # real teeth untouched
    # Two instances are too few to know a normal size: nothing is removed.
    pair = _boxes((100, 14, 14), {31: (2, 12), 48: (60, 61)})
    assert remove_specks(pair, [31, 48], voxel_mm3=0.5) == [] and (pair == 48).any()
