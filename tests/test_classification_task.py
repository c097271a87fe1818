"""Model side of 2D classification: classifiers, losses, task resolution, Grad-CAM, baselines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dentpy.baselines_classification import IntensityLogistic, MajorityBaseline
from dentpy.errors import SpecError
from dentpy.losses_classification import (
    CLASSIFICATION_LOSSES,
    build_classification_loss,
    coral_loss,
)
from dentpy.models2d import CLASSIFIERS, build_classifier, count_parameters
from dentpy.report.cam import grad_cam, last_conv2d, save_cam_overlay
from dentpy.spec import Spec, parse_spec
from dentpy.tasks.classification import (
    ClassificationTask,
    build_classification_task,
    inverse_frequency_weights,
    looks_negative,
    resolve_imbalance,
)


def make_spec(output: str = "binary", **sections: dict[str, Any]) -> Spec:
    data: dict[str, Any] = {
        "objective": {"task": "classification", "output": output},
        "input": {"dimensionality": "2d"},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_spec(data)


# --- classifiers ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLASSIFIERS.names())
def test_every_classifier_maps_one_channel_images_to_logits(name: str) -> None:
    torch.manual_seed(0)
    model = build_classifier(name, n_outputs=3, dropout=0.1)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()
    assert count_parameters(model) > 0


def test_no_classifier_imports_torchvision() -> None:
    for name in CLASSIFIERS.names():
        build_classifier(name, n_outputs=2)
    assert "torchvision" not in sys.modules


def test_tiny_cnn_is_tiny_and_unknown_names_suggest() -> None:
    assert 20_000 < count_parameters(build_classifier("tiny_cnn", 2)) < 80_000
    with pytest.raises(SpecError, match="resnet18"):
        build_classifier("resnet81", 2)
    with pytest.raises(SpecError):
        build_classifier("unet", 2)  # a segmentation network is not a classifier


# --- losses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.15])
@pytest.mark.parametrize("weighted", [False, True])
def test_ce_matches_torch_cross_entropy(smoothing: float, weighted: bool) -> None:
    torch.manual_seed(1)
    logits = torch.randn(11, 4)
    target = torch.randint(0, 4, (11,))
    weight = torch.tensor([0.2, 3.0, 1.0, 0.5]) if weighted else None
    ours = build_classification_loss("ce", 4, weight, smoothing)(logits, target)
    theirs = F.cross_entropy(logits, target, weight=weight, label_smoothing=smoothing)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_focal_with_gamma_zero_is_ce_and_downweights_easy_samples() -> None:
    torch.manual_seed(2)
    logits = torch.randn(9, 3)
    target = torch.randint(0, 3, (9,))
    weight = torch.tensor([1.0, 2.0, 0.5])
    ce = build_classification_loss("ce", 3, weight, 0.1)(logits, target)
    focal0 = build_classification_loss("focal", 3, weight, 0.1, focal_gamma=0.0)(logits, target)
    assert torch.allclose(ce, focal0, atol=1e-6)
    focal2 = build_classification_loss("focal", 3, None, 0.0, focal_gamma=2.0)(logits, target)
    assert focal2 < build_classification_loss("ce", 3)(logits, target)


def test_coral_on_a_constructed_case() -> None:
    # 3 grades -> 2 thresholds. Grade 2 means both "above 0" and "above 1" are true.
    logits = torch.tensor([[0.0, 0.0], [2.0, -1.0]])
    target = torch.tensor([2, 1])
    bce = F.binary_cross_entropy_with_logits(logits, torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    assert torch.allclose(build_classification_loss("coral", 3)(logits, target), bce)
    # per-task weights: only the second threshold counts
    only_second = coral_loss(3, task_weights=torch.tensor([0.0, 1.0]))(logits, target)
    expected = (F.softplus(-torch.tensor(0.0)) + F.softplus(torch.tensor(-1.0))) / 2
    assert torch.allclose(only_second, expected)
    # right answers cost less than wrong ones
    right = torch.tensor([[9.0, 9.0], [9.0, -9.0]])
    assert build_classification_loss("coral", 3)(right, target) < 0.01


@pytest.mark.parametrize("name", CLASSIFICATION_LOSSES.names())
def test_classification_losses_are_finite_with_gradients(name: str) -> None:
    n_outputs = 3 if name == "coral" else 4
    logits = torch.zeros(5, n_outputs, requires_grad=True)
    value = build_classification_loss(name, 4, torch.ones(4), 0.1, 2.0)(
        logits, torch.tensor([0, 1, 2, 3, 1])
    )
    value.backward()
    assert torch.isfinite(value) and logits.grad is not None
    assert torch.isfinite(logits.grad).all()


# --- the task --------------------------------------------------------------------------------


def test_probabilities_sum_to_one_including_non_monotone_coral_logits() -> None:
    softmax_task = ClassificationTask(("a", "b", "c"), "multiclass", None, "none", (3, 3, 3))
    p = softmax_task.probabilities(torch.randn(6, 3))
    assert p.shape == (6, 3) and torch.allclose(p.sum(1), torch.ones(6))

    coral = ClassificationTask(
        ("sound", "mild", "moderate", "severe"), "ordinal", None, "none", (5, 4, 3, 2), "coral"
    )
    assert coral.n_outputs == 3 and coral.n_classes == 4
    logits = torch.tensor([[-2.0, 3.0, 1.0], [5.0, 5.0, 5.0], [-9.0, -9.0, -9.0], [0.0, 4.0, -4.0]])
    p = coral.probabilities(logits)
    assert p.shape == (4, 4)
    assert (p >= 0).all() and torch.allclose(p.sum(1), torch.ones(4))
    # non-monotone P(y>1) > P(y>0) is capped at P(y>0): no probability below zero
    assert p[0, 0] > 0.8
    assert p[1].argmax() == 3 and p[2].argmax() == 0


def test_task_round_trips_and_builds_its_model_and_loss() -> None:
    spec = make_spec("ordinal", model={"name": "tiny_cnn"})
    assert spec.loss.name == "coral"
    task = build_classification_task(
        spec, ["sound", "mild", "severe"], ["sound"] * 8 + ["mild"] * 2 + ["severe"] * 1
    )
    assert task.loss_name == "coral" and task.n_outputs == 2
    assert task.imbalance == "weighted_loss"
    assert ClassificationTask.from_dict(task.to_dict()) == task
    model = task.build_model(spec)
    logits = model(torch.randn(3, 1, 32, 32))
    assert logits.shape == (3, 2)
    loss = task.build_loss(spec)(logits, torch.tensor([0, 1, 2]))
    assert torch.isfinite(loss)
    weights = task.class_weights()
    assert weights is not None and np.isclose(np.mean(weights), 1.0)
    assert weights[2] > weights[1] > weights[0]


def test_binary_task_resolution_and_positive_class() -> None:
    spec = make_spec("binary")
    task = build_classification_task(spec, ["caries", "sound"], ["caries"] * 3 + ["sound"] * 5)
    assert task.positive_class == "caries" and task.positive_index == 0
    assert task.n_outputs == 2 and task.loss_name == "ce" and task.imbalance == "none"

    for names in (["No_Caries", "caries"], ["healthy tooth", "lesion"], ["0", "1"]):
        t = build_classification_task(spec, names, names * 2)
        assert t.positive_class == names[1]

    explicit = make_spec("binary", objective={"positive_class": "sound"})
    assert (
        build_classification_task(explicit, ["caries", "sound"], ["caries", "sound"]).positive_index
        == 1
    )

    with pytest.raises(SpecError, match="positive_class"):
        build_classification_task(spec, ["caries", "restoration"], ["caries", "restoration"])
    with pytest.raises(SpecError, match="positive_class"):
        build_classification_task(spec, ["normal", "healthy"], ["normal", "healthy"])
    with pytest.raises(SpecError, match="cariez") as info:
        wrong = make_spec("binary", objective={"positive_class": "cariez"})
        build_classification_task(wrong, ["caries", "sound"], ["caries", "sound"])
    assert "did you mean 'caries'" in str(info.value)


def test_classes_order_and_errors() -> None:
    spec = make_spec("multiclass", objective={"classes": ["c", "a", "b"]})
    task = build_classification_task(spec, ["a", "b", "c"], ["a", "b", "c"])
    assert task.classes == ("c", "a", "b") and task.class_counts == (1, 1, 1)

    unknown = make_spec("multiclass", objective={"classes": ["sound", "carise"]})
    with pytest.raises(SpecError, match="carise") as info:
        build_classification_task(unknown, ["sound", "caries"], ["sound", "caries"])
    assert "did you mean 'caries'" in str(info.value)

    partial = make_spec("multiclass", objective={"classes": ["sound", "caries"]})
    with pytest.raises(SpecError, match="leaves out dataset classes: filling"):
        build_classification_task(partial, ["sound", "caries", "filling"], ["sound"])

    with pytest.raises(SpecError, match="exactly 2 classes") as info:
        build_classification_task(make_spec("binary"), ["a", "b", "c"], ["a", "b", "c"])
    assert "multiclass" in str(info.value) and "--label-map" in str(info.value)

    with pytest.raises(SpecError, match="at least 3"):
        build_classification_task(make_spec("ordinal"), ["sound", "caries"], ["sound", "caries"])

    with pytest.raises(SpecError, match="no training images of class 'caries'"):
        build_classification_task(make_spec("binary"), ["sound", "caries"], ["sound"] * 4)


def test_loss_resolution() -> None:
    segmentation_loss = make_spec("binary", loss={"name": "dice_ce"})
    with pytest.raises(SpecError, match="not a classification loss") as info:
        build_classification_task(segmentation_loss, ["sound", "caries"], ["sound", "caries"])
    assert "did you mean 'ce'" in str(info.value)

    coral_binary = make_spec("binary", loss={"name": "coral"})
    with pytest.raises(SpecError, match="ordinal"):
        build_classification_task(coral_binary, ["sound", "caries"], ["sound", "caries"])

    focal = make_spec("binary", constraints={"class_imbalance": "focal"})
    task = build_classification_task(focal, ["sound", "caries"], ["sound", "caries"])
    assert task.loss_name == "focal" and task.class_weights() is None

    ordinal_ce = make_spec("ordinal", loss={"name": "ce"})
    task = build_classification_task(ordinal_ce, ["0", "1", "2"], ["0", "1", "2"])
    assert task.n_outputs == 3 and not task.cumulative


def test_resolve_imbalance() -> None:
    assert resolve_imbalance("auto", [10, 10]) == "none"
    assert resolve_imbalance("auto", [10, 4]) == "none"
    assert resolve_imbalance("auto", [30, 9]) == "weighted_loss"
    assert resolve_imbalance("balanced_sampler", [30, 1]) == "balanced_sampler"
    assert resolve_imbalance("none", [30, 1]) == "none"
    with pytest.raises(SpecError, match="did you mean 'focal'"):
        resolve_imbalance("focla", [1, 1])
    assert np.allclose(inverse_frequency_weights([1, 3]), [1.5, 0.5])
    assert looks_negative("Sound") and looks_negative("no-caries") and not looks_negative("caries")


# --- Grad-CAM --------------------------------------------------------------------------------


def _squares(
    n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    images = torch.randn(n, 1, 32, 32, generator=generator) * 0.3
    labels = torch.arange(n) % 2
    corners = []
    for i in range(n):
        r, c = (int(v) for v in torch.randint(2, 22, (2,), generator=generator))
        corners.append((r, c))
        if labels[i] == 1:
            images[i, 0, r : r + 8, c : c + 8] += 2.0
    return images, labels, corners


def test_grad_cam_points_at_the_bright_square(tmp_path: Path) -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = build_classifier("tiny_cnn", 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        images, labels, _ = _squares(32, generator)
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    images, labels, corners = _squares(8, generator)
    inside_means, outside_means = [], []
    for i in range(8):
        if labels[i] != 1:
            continue
        heat = grad_cam(model, images[i : i + 1], target=1)
        assert heat.shape == (32, 32) and heat.min() >= 0 and heat.max() <= 1
        mask = np.zeros((32, 32), dtype=bool)
        r, c = corners[i]
        mask[r : r + 8, c : c + 8] = True
        inside_means.append(heat[mask].mean())
        outside_means.append(heat[~mask].mean())
    assert np.mean(inside_means) > 1.5 * np.mean(outside_means)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())  # no side effect on training state

    # hooks are removed, also after an error
    layer = last_conv2d(model)
    with pytest.raises(IndexError):
        grad_cam(model, images[:1], target=7, layer=layer)
    assert not layer._forward_hooks

    out = save_cam_overlay(tmp_path / "cam" / "x.png", images[1, 0].numpy(), heat, "caries 0.93")
    assert out.is_file() and out.stat().st_size > 1000


# --- baselines -------------------------------------------------------------------------------


def test_majority_baseline_predicts_training_frequencies() -> None:
    baseline = MajorityBaseline().fit(np.array([0, 1, 1, 1, 2, 1]), n_classes=4)
    proba = baseline.predict_proba(3)
    assert proba.shape == (3, 4)
    assert np.allclose(proba[0], [1 / 6, 4 / 6, 1 / 6, 0])
    assert (baseline.predict(3) == 1).all()


def test_intensity_logistic_separates_brightness_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(80) % 2
    images = rng.normal(0, 1, (80, 24, 24)).astype(np.float32) + labels[:, None, None] * 0.8
    test_labels = np.arange(40) % 2
    test_images = (
        rng.normal(0, 1, (40, 24, 24)).astype(np.float32) + test_labels[:, None, None] * 0.8
    )
    first = IntensityLogistic().fit(images, labels, 2)
    accuracy = (first.predict(test_images) == test_labels).mean()
    assert accuracy > 0.9
    second = IntensityLogistic().fit(images, labels, 2)
    assert np.array_equal(first.predict_proba(test_images), second.predict_proba(test_images))
    assert np.allclose(first.predict_proba(test_images).sum(1), 1.0)


# --- CUDA (skipped without a GPU) ------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_losses_and_grad_cam_on_cuda_with_deterministic_algorithms() -> None:
    import os

    device = torch.device("cuda")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        target = torch.tensor([0, 1, 2, 1], device=device)
        for name in CLASSIFICATION_LOSSES.names():
            n_outputs = 2 if name == "coral" else 3
            logits = torch.randn(4, n_outputs, device=device, requires_grad=True)
            loss = build_classification_loss(name, 3, torch.tensor([1.0, 2.0, 0.5]), 0.1, 2.0).to(
                device
            )
            value = loss(logits, target)
            value.backward()
            cpu = build_classification_loss(name, 3, torch.tensor([1.0, 2.0, 0.5]), 0.1, 2.0)
            assert torch.allclose(value.cpu(), cpu(logits.detach().cpu(), target.cpu()), atol=1e-5)
        for name in CLASSIFIERS.names():
            torch.manual_seed(0)
            model = build_classifier(name, 2).to(device)
            # a training step runs under deterministic algorithms (no adaptive pooling)
            model.train()
            logits = model(torch.randn(2, 1, 64, 64, device=device))
            build_classification_loss("ce", 2)(logits, target[:2].clamp(max=1)).backward()
            heat = grad_cam(model, torch.randn(1, 1, 64, 64, device=device), target=1)
            assert heat.shape == (64, 64) and heat.min() >= 0 and heat.max() <= 1
            assert not model.training
    finally:
        torch.use_deterministic_algorithms(previous)


def test_classifiers_have_no_adaptive_pooling_and_pool_like_it() -> None:
    from dentpy.models2d import global_mean_pool

    x = torch.randn(2, 5, 7, 9)
    assert torch.allclose(global_mean_pool()(x), torch.nn.AdaptiveAvgPool2d(1)(x), atol=1e-6)
    for name in CLASSIFIERS.names():
        model = build_classifier(name, 2)
        assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in model.modules())
