"""Semi-supervised training (paradigm.kind semi-supervised): Mean Teacher's EMA and ramp-up
against closed forms, the consistency loss, label hiding for paradigm.labeled_fraction,
pseudo-label ignore masks, spec checks, and tiny end-to-end runs for segmentation (3D) and
classification (2D) with exact resume."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dentpy.engine.checkpoint import load_checkpoint
from dentpy.errors import InputDataError, SpecError
from dentpy.semi import check_paradigm
from dentpy.semi.labeled_fraction import UNLABELED_SPLIT, hide_labels, labeled_patients
from dentpy.semi.mean_teacher import EMATeacher, sigmoid_rampup, softmax_mse
from dentpy.semi.pseudo_label import IGNORE, ignore_masked, round_boundaries
from dentpy.spec import load_spec, parse_spec

# ---------------------------------------------------------------- Mean Teacher pieces


def test_ema_teacher_matches_the_closed_form() -> None:
    """A student held at c after the teacher starts at w0: the teacher is
    c + (w0 - c) * prod(alpha_i), alpha_i = min(1 - 1/(i+1), d). For d = 0.9 the warm-up
    factors telescope (1/2 * 2/3 * ... * 9/10 = 1/10), then 0.9 per step."""
    student = torch.nn.Linear(3, 2)
    w0 = {k: v.detach().clone() for k, v in student.state_dict().items()}
    teacher = EMATeacher(student, decay=0.9)
    with torch.no_grad():
        for p in student.parameters():
            p.fill_(2.5)
    for step in range(1, 16):
        teacher.update(student, step)
    factor = (1 / 10) * 0.9 ** (15 - 9)
    for name, value in teacher.model.state_dict().items():
        expected = 2.5 + (w0[name] - 2.5) * factor
        assert torch.allclose(value, expected, atol=1e-6), name
    assert not any(p.requires_grad for p in teacher.model.parameters())


def test_the_teacher_is_validated_and_saved_unless_the_spec_says_student() -> None:
    from dentpy.engine.trainer import Trainer
    from dentpy.semi.mean_teacher import MeanTeacher

    student = torch.nn.Linear(2, 2)
    seen: list[torch.nn.Module] = []
    for choice in ("teacher", "student"):
        mean_teacher = MeanTeacher(
            student,
            lambda: (torch.zeros(1, 2), torch.zeros(1, 2)),
            torch.sigmoid,
            0.9,
            1.0,
            0,
            validate_with=choice,
        )
        trainer = Trainer(
            model=student,
            loss_fn=torch.nn.MSELoss(),
            optimizer=torch.optim.SGD(student.parameters(), lr=0.1),
            schedule=None,  # type: ignore[arg-type]
            next_batch=lambda: (torch.zeros(1, 2), torch.zeros(1, 2)),
            validate=lambda m: seen.append(m) or {"score": 0.0},  # type: ignore[func-returns-value]
        )
        mean_teacher.attach(trainer)
        trainer.schedule = type("S", (), {"validated": lambda self, s: None})()  # type: ignore[assignment]
        trainer.run_validation()
        assert (seen[-1] is mean_teacher.teacher.model) == (choice == "teacher")
        assert ("student" in mean_teacher.state_dict()) == (choice == "teacher")


def test_ema_of_a_known_sequence() -> None:
    """Student weights s_1..s_k (s_i = i): teacher_k = sum_i (1-a_i) s_i prod_{j>i} a_j
    + w0 prod_j a_j, computed independently in float64."""
    student = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        student.weight.fill_(0.25)
    teacher = EMATeacher(student, decay=0.99)
    alphas = [min(1 - 1 / (i + 1), 0.99) for i in range(1, 8)]
    for step in range(1, 8):
        with torch.no_grad():
            student.weight.fill_(float(step))
        teacher.update(student, step)
    expected = 0.25 * math.prod(alphas)
    for i in range(1, 8):
        expected += (1 - alphas[i - 1]) * i * math.prod(alphas[i:])
    assert float(teacher.model.weight) == pytest.approx(expected, abs=1e-6)


def test_sigmoid_rampup_values() -> None:
    assert sigmoid_rampup(0, 10) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(5, 10) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(10, 10) == 1.0
    assert sigmoid_rampup(50, 10) == 1.0
    assert sigmoid_rampup(3, 0) == 1.0
    values = [sigmoid_rampup(i, 20) for i in range(21)]
    assert values == sorted(values)


def test_consistency_is_zero_for_identical_predictions_and_positive_otherwise() -> None:
    logits = torch.randn(2, 3, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    p = torch.softmax(logits, dim=1)
    assert float(softmax_mse(p, p.clone())) == 0.0
    student = logits.clone().requires_grad_(True)
    q = torch.softmax(student, dim=1)
    other = torch.softmax(logits.flip(1), dim=1).requires_grad_(True)
    loss = softmax_mse(q, other)
    assert float(loss.detach()) > 0
    assert float(loss.detach()) == pytest.approx(float(((q - other) ** 2).mean().detach()))
    loss.backward()
    assert student.grad is not None and float(student.grad.abs().sum()) > 0
    assert other.grad is None  # the teacher side is a target


# ------------------------------------------------------------- labeled_fraction


def _patients() -> dict[str, str]:
    return {f"c{i:02d}": f"p{i // 2:02d}" for i in range(40)}  # two cases per patient


def test_labeled_fraction_is_deterministic_patient_level_and_leaves_val_test_alone() -> None:
    from dentpy.data.split import split_by_patient

    patient_of = _patients()
    splits = split_by_patient(patient_of, 0.2, 0.2, 0)
    hidden = hide_labels(splits, patient_of, 0.25, seed=3)
    assert hidden == hide_labels(splits, patient_of, 0.25, seed=3)
    assert hidden["val"] == splits["val"] and hidden["test"] == splits["test"]
    assert sorted(hidden["train"] + hidden[UNLABELED_SPLIT]) == sorted(splits["train"])
    assert not set(hidden["train"]) & set(hidden[UNLABELED_SPLIT])
    held_out = set(splits["val"]) | set(splits["test"])
    assert not (set(hidden["train"]) | set(hidden[UNLABELED_SPLIT])) & held_out
    labelled = {patient_of[c] for c in hidden["train"]}
    unlabelled = {patient_of[c] for c in hidden[UNLABELED_SPLIT]}
    assert not labelled & unlabelled  # a patient's cases stay together
    n_train_patients = len({patient_of[c] for c in splits["train"]})
    assert len(labelled) == int(0.25 * n_train_patients + 0.5)
    assert hide_labels(splits, patient_of, 0.25, seed=4)["train"] != hidden["train"]


def test_labeled_fraction_keeps_at_least_one_patient() -> None:
    assert len(labeled_patients(["a", "b", "c"], 0.01, 0)) == 1
    assert labeled_patients(["a", "b", "c"], 1.0, 0) == {"a", "b", "c"}


# ------------------------------------------------------------- pseudo labels


def test_round_boundaries_split_iterations_evenly() -> None:
    assert round_boundaries(90, 2) == [30, 60]
    assert round_boundaries(4, 1) == [2]
    assert round_boundaries(2, 3) == [1]


def test_ignored_voxels_add_no_loss_and_no_gradient() -> None:
    from dentpy.losses import build_loss

    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 4, 4, 4, generator=gen, requires_grad=True)
    target = torch.randint(0, 3, (1, 1, 4, 4, 4), generator=gen).to(torch.uint8)
    ignore = torch.zeros_like(target, dtype=torch.bool)
    ignore[..., :2] = True
    masked_target = torch.where(ignore, torch.full_like(target, IGNORE), target)
    loss = ignore_masked(build_loss("ce"))(logits, masked_target)
    # Oracle: the summed cross-entropy of the kept voxels over all voxels.
    log_p = torch.log_softmax(logits.detach(), dim=1)
    picked = torch.gather(log_p, 1, target.long())
    expected = -(picked * (~ignore)).sum() / picked.numel()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    loss.backward()
    assert logits.grad is not None
    assert float(logits.grad[..., :2].abs().max()) == 0.0
    assert float(logits.grad[..., 2:].abs().max()) > 0.0
    # Without ignored voxels the base loss is used unchanged (dice_ce here).
    base = build_loss("dice_ce")
    with torch.no_grad():
        assert float(ignore_masked(base)(logits, target)) == float(base(logits, target))


# ------------------------------------------------------------- spec


def test_semi_supervised_needs_unlabelled_data_and_is_refused_for_detection(
    tmp_path: Path,
) -> None:
    spec = parse_spec({"paradigm": {"kind": "semi-supervised"}})
    with pytest.raises(SpecError) as error:
        check_paradigm(spec)
    assert "input.unlabeled" in (error.value.fix or "")
    with pytest.raises(SpecError):
        check_paradigm(parse_spec({"paradigm": {"kind": "semi-supervised", "labeled_fraction": 1}}))
    check_paradigm(parse_spec({"paradigm": {"kind": "semi-supervised", "labeled_fraction": 0.2}}))
    detection = parse_spec(
        {
            "objective": {"task": "detection", "output": "boxes"},
            "input": {"dimensionality": "2d", "unlabeled": "x"},
            "paradigm": {"kind": "semi-supervised"},
        }
    )
    with pytest.raises(SpecError) as error:
        check_paradigm(detection)
    assert "detection" in error.value.what
    detection.paradigm.kind = "supervised"
    check_paradigm(detection)
    detection.paradigm.labeled_fraction = 0.5
    with pytest.raises(SpecError) as error:
        check_paradigm(detection)
    assert "labeled_fraction" in error.value.what
    with pytest.raises(SpecError):
        parse_spec({"paradigm": {"labeled_fraction": 0}})


def test_relative_unlabeled_path_is_resolved_against_the_spec_folder(tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "spec.yaml").write_text("input:\n  data: d\n  unlabeled: ../scans\n")
    spec = load_spec(folder / "spec.yaml")
    assert spec.input.unlabeled == str((tmp_path / "scans").resolve())


# ------------------------------------------------------------- 3D end to end

FAST_3D = {
    "objective": {"classes": ["left_ian", "right_ian"]},
    "train": {
        "iterations": 4,
        "validate_every": 2,
        "batch_size": 1,
        "patch_size": [16, 16, 16],
        "sw_batch_size": 16,
    },
    # 2 mm voxels: an eighth of the voxels, so validation and pseudo-labelling are quick.
    "preprocess": {"target_spacing_mm": [2.0, 2.0, 2.0]},
    "model": {"channels": [4, 8]},
    "augment": {"rotate_degrees": 0.0},
    "constraints": {"deterministic": True},
}


def _spec(base: dict[str, Any], **sections: dict[str, Any]) -> Any:
    data = json.loads(json.dumps(base))
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_spec(data)


@pytest.fixture(scope="module")
def cbct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dentpy.data.synth import write_dataset

    root = tmp_path_factory.mktemp("semi3d")
    os.environ["DENTPY_CACHE"] = str(root / "cache")
    return write_dataset(root / "data", 6, profile="tiny", seed=0, test_cases=2)


def _weights(run: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors.torch import load_file

    manifest = json.loads((run / "checkpoints" / "last.json").read_text())
    state = load_checkpoint(run / "checkpoints", "last").state
    return load_file(str(run / "checkpoints" / manifest["weights"])), state


@pytest.mark.slow
def test_mean_teacher_segmentation_resumes_exactly(cbct: Path, tmp_path: Path) -> None:
    from dentpy.train import train

    paradigm = {"kind": "semi-supervised", "labeled_fraction": 0.5, "rampup_iterations": 2}
    straight = _spec(FAST_3D, input={"data": str(cbct)}, paradigm=paradigm)
    train(straight, run_dir=tmp_path / "a", show_progress=False)
    half = _spec(FAST_3D, input={"data": str(cbct)}, paradigm=paradigm, train={"iterations": 2})
    train(half, run_dir=tmp_path / "b", show_progress=False)
    train(straight, run_dir=tmp_path / "b", resume=True, show_progress=False)

    (a, state_a), (b, state_b) = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert state_a["iteration"] == state_b["iteration"] == 4
    for key in a:
        assert torch.equal(a[key], b[key]), key
    teacher_a = state_a["extra"]["mean_teacher"]["teacher"]
    teacher_b = state_b["extra"]["mean_teacher"]["teacher"]
    for key in teacher_a:
        assert torch.equal(teacher_a[key], teacher_b[key]), key
    student_a = state_a["extra"]["mean_teacher"]["student"]
    student_b = state_b["extra"]["mean_teacher"]["student"]
    for key in student_a:
        assert torch.equal(student_a[key], student_b[key]), key
    # The saved model is the teacher (paradigm.validate_with: teacher), an average, not a
    # copy of the student.
    assert all(torch.equal(teacher_a[k], a[k]) for k in a)
    assert any(not torch.equal(teacher_a[k], student_a[k]) for k in a if a[k].is_floating_point())

    splits = json.loads((tmp_path / "a" / "splits.json").read_text())
    assert len(splits["train"]) == 2 and len(splits[UNLABELED_SPLIT]) == 2
    summary = json.loads((tmp_path / "a" / "train_summary.json").read_text())
    assert summary["semi_supervised"]["method"] == "mean_teacher"
    assert summary["semi_supervised"]["n_unlabeled"] == 2
    assert summary["n_train_cases"] == 2


def test_supervised_with_labeled_fraction_sees_the_same_labelled_cases(
    cbct: Path, tmp_path: Path
) -> None:
    from dentpy.data.dataset import open_dataset
    from dentpy.semi.attach import split_labels
    from dentpy.train import make_splits

    supervised = _spec(FAST_3D, input={"data": str(cbct)}, paradigm={"labeled_fraction": 0.5})
    semi = _spec(
        FAST_3D,
        input={"data": str(cbct)},
        paradigm={"kind": "semi-supervised", "labeled_fraction": 0.5, "method": "pseudo_label"},
    )
    dataset = open_dataset(str(cbct))
    patients = {r.case_id: r.patient_id for r in dataset.records}
    a = split_labels(supervised, make_splits(supervised, dataset), patients)
    b = split_labels(semi, make_splits(semi, dataset), patients)
    assert a == b


@pytest.mark.slow
def test_pseudo_label_segmentation_with_an_unlabeled_folder(cbct: Path, tmp_path: Path) -> None:
    from dentpy.train import train

    spec = _spec(
        FAST_3D,
        input={"data": str(cbct), "unlabeled": str(cbct / "imagesTs")},
        paradigm={
            "kind": "semi-supervised",
            "method": "pseudo_label",
            "confidence_threshold": 0.5,
        },
    )
    run = train(spec, run_dir=tmp_path / "run", show_progress=False)
    summary = json.loads((run / "train_summary.json").read_text())["semi_supervised"]
    assert summary["method"] == "pseudo_label" and summary["n_unlabeled"] == 2
    assert summary["boundaries"] == [2]
    (round_1,) = summary["rounds"]
    assert round_1["round"] == 1 and round_1["iteration"] == 2 and round_1["cases"] == 2
    labels = sorted((run / "pseudo_labels" / "round-1").glob("*.npy"))
    assert len(labels) == 2
    arrays = [np.load(p) for p in labels]
    assert round_1["voxels_total"] == sum(a.size for a in arrays)
    assert round_1["voxels_kept"] == sum(int((a != IGNORE).sum()) for a in arrays)
    assert set(np.unique(np.concatenate([a.ravel() for a in arrays]))) <= {0, 1, 2, IGNORE}


def test_bad_unlabeled_folders_give_clear_errors(cbct: Path, tmp_path: Path) -> None:
    from dentpy.train import train

    def attempt(folder: Path) -> InputDataError:
        spec = _spec(
            FAST_3D,
            input={"data": str(cbct), "unlabeled": str(folder)},
            paradigm={"kind": "semi-supervised"},
        )
        with pytest.raises(InputDataError) as error:
            train(spec, run_dir=tmp_path / "never", show_progress=False)
        assert not (tmp_path / "never").exists()  # refused before the run folder is made
        return error.value

    empty = tmp_path / "empty"
    empty.mkdir()
    error = attempt(empty)
    assert error.what.startswith("input.unlabeled:") and "no volume files" in error.what
    assert error.fix
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "scan.nii.gz").write_bytes(b"not a nifti at all")
    error = attempt(broken)
    assert error.what.startswith("input.unlabeled:") and "scan.nii.gz" in error.what
    error = attempt(tmp_path / "missing")
    assert "not found" in error.what


# ------------------------------------------------------------- 2D end to end


def _crop(rng: np.random.Generator, grade: int) -> np.ndarray:
    image = rng.normal(2400, 250, (24, 24)).clip(0, 4095)
    if grade:
        image[4:16, 2:10] -= 1200
    return image.clip(0, 4095).astype(np.uint16)


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("semi2d")
    rng = np.random.default_rng(0)
    (root / "data" / "crops").mkdir(parents=True)
    rows = []
    for patient in range(12):
        for tooth in range(3):
            grade = (patient + tooth) % 2
            name = f"crops/p{patient:02d}_t{tooth}.png"
            Image.fromarray(_crop(rng, grade)).save(root / "data" / name)
            rows.append([name, ["sound", "caries"][grade], f"patient{patient:02d}"])
    with (root / "data" / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "patient"])
        writer.writerows(rows)
    (root / "unlabeled").mkdir()
    for i in range(5):
        Image.fromarray(_crop(rng, i % 2)).save(root / "unlabeled" / f"u{i}.png")
    return root


def _spec_2d(crops: Path, **paradigm: Any) -> Any:
    return parse_spec(
        {
            "objective": {"task": "classification", "output": "binary"},
            "input": {"data": str(crops / "data"), "dimensionality": "2d", "modality": "xray"},
            "model": {"name": "tiny_cnn"},
            "preprocess": {"image_size": [24, 24]},
            "train": {"iterations": 4, "validate_every": 2, "batch_size": 4},
            "constraints": {"deterministic": True},
            "paradigm": {"kind": "semi-supervised", **paradigm},
        }
    )


@pytest.mark.slow
def test_mean_teacher_classification_resumes_exactly(crops: Path, tmp_path: Path) -> None:
    from dentpy.train import train

    straight = _spec_2d(crops, labeled_fraction=0.3, unlabeled_batch_size=3, rampup_iterations=2)
    straight.input.unlabeled = str(crops / "unlabeled")
    half = straight.model_copy(deep=True)
    half.train.iterations = 2
    train(straight, run_dir=tmp_path / "a", show_progress=False)
    train(half, run_dir=tmp_path / "b", show_progress=False)
    train(straight, run_dir=tmp_path / "b", resume=True, show_progress=False)
    (a, state_a), (b, state_b) = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for part in ("teacher", "student"):
        saved_a = state_a["extra"]["mean_teacher"][part]
        for key, value in saved_a.items():
            assert torch.equal(value, state_b["extra"]["mean_teacher"][part][key]), key
    splits = json.loads((tmp_path / "a" / "splits.json").read_text())
    summary = json.loads((tmp_path / "a" / "train_summary.json").read_text())
    hidden = len(splits[UNLABELED_SPLIT])
    assert hidden > 0 and summary["semi_supervised"]["n_unlabeled"] == hidden + 5
    assert summary["n_train_images"] == len(splits["train"])


@pytest.mark.slow
def test_pseudo_label_classification_records_kept_images(crops: Path, tmp_path: Path) -> None:
    from dentpy.train import train

    spec = _spec_2d(crops, method="pseudo_label", labeled_fraction=0.5, confidence_threshold=0.5)
    spec.train.iterations = 6
    spec.paradigm.pseudo_label_rounds = 2
    run = train(spec, run_dir=tmp_path / "run", show_progress=False)
    summary = json.loads((run / "train_summary.json").read_text())["semi_supervised"]
    assert summary["boundaries"] == [2, 4]
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    for row in summary["rounds"]:
        # Threshold 0.5 with two classes: every image is confident.
        assert row["kept"] == row["images"] == summary["n_unlabeled"]
        assert sum(row["kept_per_class"].values()) == row["kept"]


def test_bad_unlabeled_image_folder(crops: Path, tmp_path: Path) -> None:
    from dentpy.train import train

    folder = tmp_path / "u"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    spec = _spec_2d(crops)
    spec.input.unlabeled = str(folder)
    with pytest.raises(InputDataError) as error:
        train(spec, run_dir=tmp_path / "never", show_progress=False)
    assert "input.unlabeled" in error.value.what and "no 2D image files" in error.value.what
    assert not (tmp_path / "never").exists()


class _Stop(Exception):
    pass


def _interrupted(spec: Any, run_dir: Path, at: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Train `spec` but die (like a kill) as iteration `at + 1` starts; it validates and
    checkpoints after every iteration, so the last checkpoint is at `at`."""
    from dentpy.engine.trainer import Trainer
    from dentpy.train import train

    original = Trainer.train_step

    def dying(self: Trainer) -> float:
        if self.iteration == at:
            raise _Stop
        return original(self)

    every = spec.model_copy(deep=True)
    every.train.validate_every = 1  # train.* may differ on resume; validation draws nothing
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_step", dying)
        with pytest.raises(_Stop):
            train(every, run_dir=run_dir, show_progress=False)


@pytest.mark.slow
def test_pseudo_label_segmentation_resumes_exactly_after_a_round(
    cbct: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed at iteration 3 (after the round at 2) and resumed == straight, so the round's
    pseudo labels come back from the run folder."""
    from dentpy.train import train

    spec = _spec(
        FAST_3D,
        input={"data": str(cbct)},
        paradigm={
            "kind": "semi-supervised",
            "method": "pseudo_label",
            "labeled_fraction": 0.5,
            "confidence_threshold": 0.5,
        },
    )
    train(spec, run_dir=tmp_path / "a", show_progress=False)
    _interrupted(spec, tmp_path / "b", 3, monkeypatch)
    train(spec, run_dir=tmp_path / "b", resume=True, show_progress=False)
    (a, _), (b, state_b) = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert state_b["extra"]["pseudo_label"]["round"] == 1
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rounds = [json.loads((tmp_path / r / "train_summary.json").read_text()) for r in "ab"]
    assert rounds[0]["semi_supervised"]["rounds"] == rounds[1]["semi_supervised"]["rounds"]


@pytest.mark.slow
def test_pseudo_label_classification_resumes_exactly_after_a_round(
    crops: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dentpy.train import train

    spec = _spec_2d(crops, method="pseudo_label", labeled_fraction=0.5, confidence_threshold=0.5)
    spec.train.iterations = 6
    spec.paradigm.pseudo_label_rounds = 2
    train(spec, run_dir=tmp_path / "a", show_progress=False)
    _interrupted(spec, tmp_path / "b", 3, monkeypatch)
    train(spec, run_dir=tmp_path / "b", resume=True, show_progress=False)
    (a, _), (b, state_b) = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert state_b["extra"]["pseudo_label"]["round"] == 2
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_segmentation_views_share_geometry_and_differ_in_noise() -> None:
    """Flip/rotation/scale always on: with intensity noise off the two views are equal
    (one geometric transform); with noise on they differ, but only by intensity."""
    from dentpy.augment import BatchAugment
    from dentpy.semi.attach import paired_views
    from dentpy.spec import Augment

    rng = np.random.default_rng(0)
    volume = rng.normal(size=(2, 1, 8, 8, 8)).astype(np.float32)

    class Patches:
        def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
            return volume, np.zeros_like(volume, dtype=np.uint8)

    geometric = {"probability": 1.0, "rotate_degrees": 30.0, "scale_range": (0.8, 1.2)}
    quiet = Augment(
        **geometric, intensity_scale=0, intensity_shift=0, gamma_range=(1, 1), noise_std=0
    )
    noise = BatchAugment(quiet, [0, 2, 1], torch.device("cpu"), seed=0)
    student, teacher = paired_views(Patches(), noise, torch.device("cpu"))()
    assert torch.equal(student, teacher)
    assert not torch.allclose(student, torch.from_numpy(volume))  # it was transformed
    noisy = BatchAugment(Augment(**geometric, noise_std=0.1), [0, 2, 1], torch.device("cpu"), 0)
    student, teacher = paired_views(Patches(), noisy, torch.device("cpu"))()
    assert not torch.equal(student, teacher)
    # Same geometry: the views stay far more alike than an unaligned pair would be.
    aligned = torch.corrcoef(torch.stack([student.flatten(), teacher.flatten()]))[0, 1]
    shuffled = torch.corrcoef(torch.stack([student.flatten(), teacher.flip(2).flatten()]))[0, 1]
    assert float(aligned) > 0.8 > float(shuffled)


def test_a_round_whose_label_maps_are_not_visible_stops_with_the_folder_named(
    tmp_path: Path,
) -> None:
    """Several processes write a round's label maps into the run folder; a rank that cannot
    see another's (a run folder not shared between machines) must stop, naming the folder
    and how to fix it, not train on a partial pool."""
    from dentpy.data.cache import PreparedCase
    from dentpy.errors import TrainingError
    from dentpy.semi.pseudo_label import SegmentationPseudoLabels

    cases = [
        PreparedCase(f"u{i}", np.zeros((4, 4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), ())
        for i in range(2)
    ]
    folder = tmp_path / "pseudo_labels"
    rounds = SegmentationPseudoLabels(
        [2],
        folder,
        [],
        cases,
        None,
        lambda m, c: torch.zeros(2, 4, 4, 4),
        0.5,
        1,  # type: ignore[arg-type]
    )
    (folder / "round-1").mkdir(parents=True)
    np.save(folder / "round-1" / "u0.npy", np.zeros((4, 4, 4), np.uint8))  # u1 is missing

    with pytest.raises(TrainingError) as caught:
        rounds._check_every_file(1)
    message = str(caught.value)
    assert "1 of 2" in message and str(folder) in message
    assert "shared filesystem" in caught.value.expected and "--runs" in caught.value.fix
    np.save(folder / "round-1" / "u1.npy", np.zeros((4, 4, 4), np.uint8))
    rounds._check_every_file(1)  # every map visible: no error
