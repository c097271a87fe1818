"""Splits, cache, sampling and baseline: the pieces between the data and the trainer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dentpy.baselines import fit_threshold_windows
from dentpy.data.cache import prepare_case
from dentpy.data.case import CaseRecord
from dentpy.data.io import write_volume
from dentpy.data.split import check_split, split_by_patient
from dentpy.data.volume import IntensityImage, LabelMap, spacing_affine
from dentpy.engine.sampling import PatchSampler, crop_padded
from dentpy.errors import InputDataError
from dentpy.preprocess import PreprocessPlan


def test_split_keeps_each_patient_in_one_split() -> None:
    cases = {f"c{i}": f"p{i // 2}" for i in range(20)}  # two scans per patient
    splits = split_by_patient(cases, 0.2, 0.2, seed=0)
    owner: dict[str, str] = {}
    for name, ids in splits.items():
        for case in ids:
            assert owner.setdefault(cases[case], name) == name
    assert sorted(c for ids in splits.values() for c in ids) == sorted(cases)
    assert splits == split_by_patient(cases, 0.2, 0.2, seed=0)
    assert splits != split_by_patient(cases, 0.2, 0.2, seed=1)


def test_split_refuses_too_few_patients_and_leaky_predefined_splits() -> None:
    with pytest.raises(InputDataError) as error:
        split_by_patient({"a": "p1", "b": "p1"}, 0.2, 0.2, seed=0)
    assert "too few patients" in error.value.what
    with pytest.raises(InputDataError) as error:
        check_split({"train": ["a"], "test": ["b"]}, {"a": "p1", "b": "p1"})
    assert "appears in both 'train' and 'test'" in error.value.what


def _record(tmp_path: Path, value: int = 1) -> CaseRecord:
    rng = np.random.default_rng(value)
    image = rng.normal(size=(12, 10, 8)).astype(np.float32)
    label = np.zeros((12, 10, 8), dtype=np.uint8)
    label[4:8, 3:6, 2:5] = 5
    affine = spacing_affine((1.0, 1.0, 2.0))
    image_path = write_volume(IntensityImage(image, affine), tmp_path / "c_0000.nii.gz")
    label_path = write_volume(LabelMap(label, affine), tmp_path / "c.nii.gz")
    return CaseRecord("case-x", "case-x", image_path, label_path)


def test_cache_hits_misses_on_settings_and_rebuilds_corrupt_entries(tmp_path: Path) -> None:
    record = _record(tmp_path)
    calls = []

    def load():  # type: ignore[no-untyped-def]
        calls.append(1)
        return record.load()

    plan = PreprocessPlan((1.0, 1.0, 1.0))
    first = prepare_case(record, plan, ((5,),), tmp_path / "cache", load)
    assert first.image.shape == (12, 10, 16)  # 2 mm slices resampled to 1 mm
    assert set(np.unique(np.asarray(first.label))) == {0, 1}  # labels stay labels
    prepare_case(record, plan, ((5,),), tmp_path / "cache", load)
    assert len(calls) == 1  # hit
    prepare_case(record, PreprocessPlan((1.0, 1.0, 2.0)), ((5,),), tmp_path / "cache", load)
    assert len(calls) == 2  # spacing changed: miss
    prepare_case(record, plan, ((5,),), tmp_path / "cache", load, context=[{"pulp": 5}])
    assert len(calls) == 3  # label map changed: miss
    for image_file in (tmp_path / "cache" / plan.key()).glob("*.image.npy"):
        # A new file, as a crashed writer would leave; truncating in place would pull the
        # pages from under the open memory map (dentpy itself only ever renames).
        image_file.unlink()
        image_file.write_bytes(b"garbage")
    rebuilt = prepare_case(record, plan, ((5,),), tmp_path / "cache", load)
    assert len(calls) == 4
    assert np.array_equal(np.asarray(rebuilt.image), np.asarray(first.image))


def test_crop_padded_fills_outside_the_array() -> None:
    array = np.arange(27).reshape(3, 3, 3)
    crop = crop_padded(array, (-1, 0, 0), (3, 2, 2), fill=-5)
    assert (crop[0] == -5).all()
    assert np.array_equal(crop[1:], array[:2, :2, :2])


def test_sampler_oversamples_foreground_and_is_resumable(tmp_path: Path) -> None:
    record = _record(tmp_path)
    case = prepare_case(record, PreprocessPlan((1.0, 1.0, 1.0)), ((5,),), tmp_path, record.load)
    sampler = PatchSampler([case], (4, 4, 4), batch_size=64, foreground_fraction=1.0, seed=0)
    state = sampler.state_dict()
    _, labels = sampler.next_batch()
    hits = (labels.reshape(64, -1) > 0).any(axis=1).mean()
    assert hits > 0.9
    sampler.load_state_dict(state)
    _, again = sampler.next_batch()
    assert np.array_equal(labels, again)


def test_threshold_baseline_finds_a_separable_window() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(20, 20, 20))
    truth = np.zeros_like(image, dtype=bool)
    truth[5:10, 5:10, 5:10] = True
    image[truth] += 10  # perfectly separable by intensity
    (window,) = fit_threshold_windows([image], [[truth]], ["pulp"], (0.0, 100.0))
    assert window.training_dice > 0.99


def test_keep_largest_only_touches_the_named_classes() -> None:
    from dentpy.data.volume import LabelMap
    from dentpy.inference import postprocess

    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[0:3, 0:3, 0:3] = 1  # pulp of one tooth
    labels[6:8, 6:8, 6:8] = 1  # pulp of another tooth: must survive
    labels[0:4, 6:9, 0:2] = 2  # the canal
    labels[8, 0, 9] = 2  # a stray canal voxel: removed
    out = postprocess(LabelMap(labels, np.eye(4)), ["pulp", "left_ian"], ["left_ian"]).array
    assert (out == 1).sum() == (labels == 1).sum()
    assert (out == 2).sum() == (labels == 2).sum() - 1
    assert out[8, 0, 9] == 0


def test_non_finite_loss_stops_training_naming_the_iteration() -> None:
    import torch

    from dentpy.engine.trainer import Trainer
    from dentpy.errors import TrainingError
    from dentpy.optim import LRSchedule
    from dentpy.spec import Schedule

    model = torch.nn.Conv3d(1, 2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    class ExplodingLoss(torch.nn.Module):
        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return logits.sum() * float("nan")

    trainer = Trainer(
        model=model,
        loss_fn=ExplodingLoss(),
        optimizer=optimizer,
        schedule=LRSchedule(optimizer, Schedule(), 10),
        next_batch=lambda: (torch.zeros(1, 1, 4, 4, 4), torch.zeros(1, 1, 4, 4, 4)),
        validate=lambda m: {"score": 0.0},
    )
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(TrainingError) as error:
        trainer.fit(10, validate_every=5)
    assert "iteration 1" in error.value.what
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_memory_mapped_cases_give_the_same_patches_as_arrays_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = _record(tmp_path)
    mapped = prepare_case(record, PreprocessPlan((1.0, 1.0, 1.0)), ((5,),), tmp_path, record.load)
    assert isinstance(mapped.image, np.memmap) and isinstance(mapped.label, np.memmap)
    assert mapped.background == pytest.approx(float(np.min(np.asarray(mapped.image))))
    in_memory = type(mapped)(
        mapped.case_id,
        np.array(mapped.image),
        np.array(mapped.label),
        mapped.foreground,
        None,  # no recorded minimum: found from the array on first use
    )
    # The sampler must not scan whole memory-mapped volumes (RAM would grow with the
    # dataset): with a recorded minimum it never calls np.min.
    import dentpy.engine.sampling as sampling

    real_min = np.min

    def guarded_min(array: np.ndarray, *args: object, **kwargs: object) -> object:
        if isinstance(array, np.memmap):
            raise AssertionError("the sampler read a whole memory-mapped volume")
        return real_min(array, *args, **kwargs)

    monkeypatch.setattr(sampling.np, "min", guarded_min)
    draws = []
    for case in (mapped, in_memory):
        sampler = PatchSampler([case], (8, 8, 8), batch_size=16, foreground_fraction=0.5, seed=3)
        draws.append([sampler.next_batch() for _ in range(3)])
    for (image_a, label_a), (image_b, label_b) in zip(*draws, strict=True):
        assert np.array_equal(image_a, image_b) and np.array_equal(label_a, label_b)


def test_class_sizes_come_from_the_cache_record_not_from_reading_labels(tmp_path: Path) -> None:
    from dentpy.imbalance import class_voxel_counts

    record = _record(tmp_path)
    case = prepare_case(record, PreprocessPlan((1.0, 1.0, 1.0)), ((5,),), tmp_path, record.load)
    read = np.bincount(np.asarray(case.label).ravel(), minlength=2).tolist()
    assert case.class_counts is not None and list(case.class_counts) == read
    assert class_voxel_counts([case.label], 2, recorded=[case.class_counts]) == read

    class Unreadable(np.ndarray):
        def __array__(self, *args: object, **kwargs: object) -> np.ndarray:
            raise AssertionError("a label map was read although its counts were recorded")

    blocked = np.zeros(3).view(Unreadable)
    assert class_voxel_counts([blocked], 2, recorded=[case.class_counts]) == read
    assert class_voxel_counts([case.label], 2, recorded=[None]) == read  # older entries
