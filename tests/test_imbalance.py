"""Class imbalance for segmentation: the patch sampler draws classes with the requested
probabilities (and resumes exactly), "auto" resolves deterministically to the documented
closed-form values favouring the rare class, the resolved values land in the run folder,
and specs that set only `train.foreground_fraction` keep working."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.data.cache import PreparedCase
from dentpy.engine.sampling import PatchSampler, crop_padded
from dentpy.errors import SpecError
from dentpy.imbalance import (
    auto_class_weights,
    auto_oversampling,
    class_voxel_counts,
    inverse_size_probabilities,
    resolve_imbalance,
)
from dentpy.spec import load_spec, parse_spec

runner = CliRunner()
LOW, HIGH = slice(0, 6), slice(26, 32)
CORNERS = {1: (LOW, LOW, LOW), 2: (HIGH, HIGH, HIGH), 3: (LOW, HIGH, HIGH)}


def _case(classes: tuple[int, ...] = (1, 2, 3)) -> PreparedCase:
    """A 32^3 case with one 6^3 cube per class, in far-apart corners."""
    label = np.zeros((32, 32, 32), dtype=np.uint8)
    for c in classes:
        label[CORNERS[c]] = c
    foreground = tuple(np.argwhere(label == c).astype(np.int32) for c in (1, 2, 3))
    return PreparedCase("case-x", np.zeros(label.shape, np.float32), label, foreground)


def _class_counts(sampler: PatchSampler, batches: int) -> np.ndarray:
    """How often each class (1..3) is the one in a drawn patch (patches hold one class)."""
    counts = np.zeros(4, dtype=np.int64)
    for _ in range(batches):
        _, labels = sampler.next_batch()
        for patch in labels.reshape(labels.shape[0], -1):
            present = np.unique(patch[patch > 0])
            assert len(present) == 1  # foreground_fraction 1: always centred on a class
            counts[int(present[0])] += 1
    return counts[1:]


def _chi_square(observed: np.ndarray, probabilities: list[float]) -> float:
    expected = observed.sum() * np.asarray(probabilities)
    return float(((observed - expected) ** 2 / expected).sum())


# chi-square critical value, 2 degrees of freedom, p = 0.001
CHI2_2DF_999 = 13.82


@pytest.mark.parametrize(
    ("classes", "requested", "expected"),
    [
        ((1, 2, 3), [0.6, 0.3, 0.1], [0.6, 0.3, 0.1]),
        ((1, 2, 3), None, [1 / 3, 1 / 3, 1 / 3]),  # "uniform": the historical rule
    ],
)
def test_sampler_draws_classes_with_the_requested_probabilities(
    classes: tuple[int, ...], requested: list[float] | None, expected: list[float]
) -> None:
    sampler = PatchSampler([_case(classes)], (4, 4, 4), 400, 1.0, 7, class_probabilities=requested)
    observed = _class_counts(sampler, 6)
    assert observed.sum() == 2400
    assert _chi_square(observed, expected) < CHI2_2DF_999, observed


def test_sampler_renormalises_over_the_classes_a_case_holds() -> None:
    sampler = PatchSampler([_case((1, 3))], (4, 4, 4), 500, 1.0, 3, [0.6, 0.3, 0.1])
    observed = _class_counts(sampler, 4)
    assert observed[1] == 0
    share = observed[0] / observed.sum()
    assert abs(share - 0.6 / 0.7) < 0.03  # 0.857 expected; SD ~0.008 for 2000 draws


def test_sampler_with_probabilities_resumes_exactly() -> None:
    sampler = PatchSampler([_case()], (8, 8, 8), 4, 0.5, 0, [0.2, 0.2, 0.6])
    sampler.next_batch()
    state = json.loads(json.dumps(sampler.state_dict()))  # as a checkpoint stores it
    first = [sampler.next_batch()[1] for _ in range(3)]
    again = PatchSampler([_case()], (8, 8, 8), 4, 0.5, 0, [0.2, 0.2, 0.6])
    again.load_state_dict(state)
    assert all(np.array_equal(a, again.next_batch()[1]) for a in first)


def test_uniform_sampling_keeps_the_historical_draws() -> None:
    """Runs started before class_sampling existed must resume draw for draw."""
    case = _case()
    sampler = PatchSampler([case], (4, 4, 4), 1, 1.0, 5)
    rng = np.random.default_rng(5)
    for _ in range(50):
        rng.integers(1)  # the case
        rng.random()  # foreground or not
        positions = case.foreground[int(rng.choice([0, 1, 2]))]
        centre = positions[int(rng.integers(len(positions)))]
        jitter = rng.integers(-np.array((4, 4, 4)) // 4, np.array((4, 4, 4)) // 4 + 1)
        start = [int(c + j - 2) for c, j in zip(centre, jitter, strict=True)]
        _, label = sampler.next_batch()
        expected = crop_padded(case.label, start, (4, 4, 4), 0)
        assert np.array_equal(label[0, 0], expected)


def test_auto_rules_give_the_documented_closed_form_values() -> None:
    # background 94%, pulp 5%, canal 1%
    fractions = [0.94, 0.05, 0.01]
    p = inverse_size_probabilities(fractions)
    ratio = math.sqrt(0.05 / 0.01)
    assert p == pytest.approx([1 / (1 + ratio), ratio / (1 + ratio)])
    assert auto_class_weights(fractions) == pytest.approx(
        [1.0, math.sqrt(0.94 / 0.05), math.sqrt(0.94 / 0.01)], abs=1e-4
    )
    # A canal at 0.02% of the voxels: weights clip at 10; rarest class gets more patches.
    assert auto_class_weights([0.99, 0.0098, 0.0002, 0.0]) == [1.0, 10.0, 10.0, 10.0]
    assert auto_oversampling([0.9, 0.1]) == 0.33
    assert auto_oversampling([0.94, 0.05, 0.01]) == 0.33
    # 0.05%: log10 = -3.3, 65% of the way from -2 to -4
    expected = round(0.33 + 0.34 * (math.log10(2000) - 2) / 2, 2)
    assert auto_oversampling([0.99, 0.0095, 0.0005]) == expected == 0.55
    assert auto_oversampling([1 - 1e-5, 1e-5]) == 0.67
    assert auto_oversampling([1.0, 0.0]) == 0.33  # no foreground at all


def test_auto_resolution_is_deterministic_and_favours_the_rare_class() -> None:
    labels = [np.zeros((20, 20, 20), np.uint8) for _ in range(3)]
    for label in labels:
        label[:5, :5, :4] = 1  # pulp: 100 voxels per case
        label[10, 10, :2] = 2  # canal: 2 voxels per case
    counts = class_voxel_counts(labels, 3)
    assert counts == [3 * (8000 - 102), 300, 6]
    spec = parse_spec(
        {
            "constraints": {
                "foreground_oversampling": "auto",
                "class_sampling": "auto",
                "class_weights": "auto",
            }
        }
    )
    first = resolve_imbalance(spec, ("pulp", "canal"), counts)
    assert first == resolve_imbalance(spec, ("pulp", "canal"), list(counts))
    assert first.class_probabilities is not None and first.class_weights is not None
    assert first.class_probabilities[1] > first.class_probabilities[0]
    assert sum(first.class_probabilities) == pytest.approx(1)
    assert first.class_weights[2] > first.class_weights[1] > first.class_weights[0] == 1
    assert 0.33 <= first.foreground_fraction <= 0.67
    recorded = first.to_dict()
    assert recorded["class_fractions"]["canal"] == pytest.approx(6 / 24000)
    assert recorded["settings"]["class_weights"] == "auto"


def test_explicit_values_and_their_errors() -> None:
    spec = parse_spec(
        {
            "constraints": {
                "foreground_oversampling": 0.8,
                "class_sampling": [1, 3],
                "class_weights": [0.5, 2, 4],
            }
        }
    )
    plan = resolve_imbalance(spec, ("pulp", "canal"), [100, 10, 1])
    assert plan.foreground_fraction == 0.8
    assert plan.class_probabilities == (0.25, 0.75)
    assert plan.class_weights == (0.5, 2.0, 4.0)
    wrong = parse_spec({"constraints": {"class_weights": [1, 2]}})
    with pytest.raises(SpecError, match="class_weights has 2 value"):
        resolve_imbalance(wrong, ("pulp", "canal"), [100, 10, 1])
    with pytest.raises(SpecError):
        parse_spec({"constraints": {"class_sampling": [-1, 2]}})
    with pytest.raises(SpecError):
        parse_spec({"constraints": {"foreground_oversampling": 1.5}})


def test_specs_setting_only_train_foreground_fraction_keep_their_value(tmp_path: Path) -> None:
    spec = parse_spec({"train": {"foreground_fraction": 0.9}})
    plan = resolve_imbalance(spec, ("pulp",), [1000, 1])
    assert plan.foreground_fraction == 0.9
    assert plan.class_probabilities is None and plan.class_weights is None  # as before
    for template in ("pulp-cbct", "ian-cbct"):
        out = tmp_path / f"{template}.yaml"
        result = runner.invoke(app, ["init", "--template", template, "--out", str(out)])
        assert result.exit_code == 0, result.output
        loaded = load_spec(out)
        assert "foreground_fraction" in out.read_text()
        resolved = resolve_imbalance(loaded, ("pulp",), [1000, 1])
        assert resolved.foreground_fraction == loaded.train.foreground_fraction


@pytest.mark.slow
def test_resolved_values_are_recorded_in_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DENTPY_CACHE", str(tmp_path / "cache"))

    def invoke(*args: str) -> None:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output

    invoke("synth", "cbct", "--out", str(tmp_path / "data"), "--cases", "3", "--test-cases", "0")
    data = tmp_path / "data" / "Dataset001_SynthCBCT"
    invoke("init", "--template", "ian-cbct", "--data", str(data), "--out", str(tmp_path / "s.yaml"))
    invoke(
        "train", str(tmp_path / "s.yaml"), "train.iterations=1", "train.validate_every=1",
        "train.patch_size=[32, 32, 32]", "model.channels=[4, 8]", "train.sw_batch_size=8",
        "evaluation.test_fraction=0", "constraints.foreground_oversampling=auto",
        "constraints.class_sampling=auto", "constraints.class_weights=auto",
        "--runs", str(tmp_path / "runs"), "--no-progress",
    )  # fmt: skip
    run = tmp_path / "runs" / "ian-cbct"
    plan = json.loads((run / "plan.json").read_text())["imbalance"]
    summary = json.loads((run / "train_summary.json").read_text())["imbalance"]
    assert plan == summary
    names = plan["class_names"]
    assert list(plan["class_fractions"]) == ["background", *names]
    assert sum(plan["class_fractions"].values()) == pytest.approx(1)
    assert len(plan["class_probabilities"]) == len(names)
    assert len(plan["class_weights"]) == len(names) + 1
    fractions = list(plan["class_fractions"].values())
    assert plan["foreground_fraction"] == auto_oversampling(fractions)
    assert plan["class_probabilities"] == pytest.approx(inverse_size_probabilities(fractions))
    assert plan["settings"]["foreground_oversampling"] == "auto"


@pytest.mark.parametrize("name", ["ce", "dice_ce"])
def test_resolved_weights_reach_the_loss_unless_loss_class_weights_says_otherwise(
    name: str,
) -> None:
    """loss.class_weights auto (the default) takes the weights resolved from
    constraints.class_weights; an explicit loss.class_weights (a list, or none) wins."""
    import torch

    from dentpy.tasks.segmentation import SegmentationTask

    task = SegmentationTask(("pulp", "canal"), ((1,), (2,)))
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, 4)
    target = torch.randint(0, 3, (2, 1, 4, 4, 4))
    weights = (1.0, 4.0, 10.0)

    def value(loss: dict[str, object], auto: tuple[float, ...] | None) -> float:
        spec = parse_spec({"loss": {"name": name, **loss}})
        return float(task.build_loss(spec, auto)(logits, target))

    weighted = value({}, weights)
    assert weighted == pytest.approx(value({"class_weights": list(weights)}, None))
    assert weighted != pytest.approx(value({}, None))
    assert value({"class_weights": "none"}, weights) == pytest.approx(value({}, None))
