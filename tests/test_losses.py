"""Losses: a contract every registered loss passes in every mode, and reference values
(PyTorch, MONAI, closed forms) for each one that has them."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from dentpy.errors import SpecError
from dentpy.losses import LOSSES, build_loss
from dentpy.losses_classification import (
    CLASSIFICATION_LOSSES,
    build_classification_loss,
    build_configured_classification_loss,
)
from dentpy.losses_core import LossConfig
from dentpy.losses_names import LossTerm, parse_loss_expression

MODES = ("binary", "multiclass", "multilabel")
SHAPES = {"3d": (4, 4, 4), "2d": (5, 6), "0d": ()}


def _case(mode: str, spatial: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets and the signs (+1 true, -1 false) of each logit in a perfect prediction."""
    generator = torch.Generator().manual_seed(seed)
    n = 6
    if mode == "multilabel":
        target = (torch.rand((n, 3, *spatial), generator=generator) > 0.5).float()
        target.view(n, 3, -1)[0, :, 0] = 1  # every channel has positives and negatives
        target.view(n, 3, -1)[1, :, 0] = 0
        return target, 2 * target - 1
    classes = 2 if mode == "binary" else 3
    labels = torch.randint(0, classes, (n, *spatial), generator=generator)
    labels.view(n, -1)[:classes, 0] = torch.arange(classes)  # every class present
    if mode == "binary":
        return labels, 2 * labels[:, None].float() - 1
    one_hot = F.one_hot(labels, 3).movedim(-1, 1).float()
    return labels, 2 * one_hot - 1


def _shaped_target(target: torch.Tensor, mode: str, spatial: tuple[int, ...]) -> torch.Tensor:
    """Segmentation-style integer targets keep a channel axis: (N, 1, *spatial)."""
    return target if mode == "multilabel" or not spatial else target[:, None]


def _contract(
    loss_fn: torch.nn.Module, target: torch.Tensor, signs: torch.Tensor, softmax: bool
) -> None:
    torch.manual_seed(1)
    perfect = 12.0 * signs
    logits = (2.0 * torch.randn_like(signs)).requires_grad_(True)
    value = loss_fn(logits, target)
    value.backward()
    best = loss_fn(perfect, target)
    assert torch.isfinite(value) and torch.isfinite(best)
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert float(best) <= float(value.detach())
    assert float(best) < 1e-3  # near the minimum (0 for every loss at hard 0/1 targets)
    # Raising a true logit never raises the loss; with sigmoids (independent logits)
    # lowering a false one never does either.
    checked = logits.grad * signs
    if softmax:
        checked = checked[signs > 0]
    assert float(checked.max()) <= 1e-6


SEGMENTATION_CASES = [
    (name, mode, shape) for name in LOSSES.names() for mode in MODES for shape in SHAPES
]


@pytest.mark.parametrize(("name", "mode", "shape"), SEGMENTATION_CASES)
def test_every_segmentation_loss_passes_the_contract(name: str, mode: str, shape: str) -> None:
    spatial = SHAPES[shape]
    target, signs = _case(mode, spatial)
    loss_fn = build_loss(name, LossConfig(mode=mode))
    _contract(loss_fn, _shaped_target(target, mode, spatial), signs, mode == "multiclass")


CLASSIFICATION_CASES = [
    (name, mode) for name in CLASSIFICATION_LOSSES.names() if name != "coral" for mode in MODES
]


@pytest.mark.parametrize(("name", "mode"), CLASSIFICATION_CASES)
def test_every_classification_loss_passes_the_contract(name: str, mode: str) -> None:
    target, signs = _case(mode, ())
    n_classes = 2 if mode == "binary" else 3
    loss_fn = build_classification_loss(name, n_classes, mode=mode)
    _contract(loss_fn, target, signs, mode == "multiclass")


def test_coral_passes_the_contract_on_cumulative_logits() -> None:
    grades = torch.tensor([0, 1, 2, 3, 2, 0])
    signs = 2 * (grades[:, None] > torch.arange(3)[None]).float() - 1  # P(grade > k)
    _contract(build_classification_loss("coral", 4), grades, signs, softmax=False)


def test_registries_list_every_loss_of_the_brief() -> None:
    both = {"ce", "bce", "focal", "gce", "sce", "mse", "l1", "mae"}
    region = {"dice", "dice_ce", "dice_focal", "jaccard", "jaccard_focal", "tversky"}
    assert both | region | {"generalized_dice"} == set(LOSSES.names())
    assert both | {"coral"} == set(CLASSIFICATION_LOSSES.names())


# --- references --------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_ce_equals_torch_cross_entropy_on_volumes(smoothing: float, weighted: bool) -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 5, 4)
    target = torch.randint(0, 4, (2, 1, 3, 5, 4))
    weight = torch.tensor([0.2, 3.0, 1.0, 0.5]) if weighted else None
    config = LossConfig(
        label_smoothing=smoothing,
        class_weights=None if weight is None else tuple(weight.tolist()),
    )
    ours = build_loss("ce", config)(logits, target)
    theirs = F.cross_entropy(logits, target[:, 0], weight=weight, label_smoothing=smoothing)
    torch.testing.assert_close(ours, theirs)


def test_classification_ce_is_segmentation_ce_without_spatial_axes() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(7, 3), torch.randint(0, 3, (7,))
    for name in ("ce", "focal", "gce", "sce", "mse", "l1", "bce"):
        torch.testing.assert_close(
            build_classification_loss(name, 3, label_smoothing=0.1)(logits, target),
            build_loss(name, LossConfig(label_smoothing=0.1))(logits, target[:, None]),
        )


def test_bce_in_each_mode_equals_torch() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 1, 5, 5)
    y = torch.randint(0, 2, (4, 1, 5, 5))
    reference = F.binary_cross_entropy_with_logits(x, y.float())
    torch.testing.assert_close(build_loss("bce", LossConfig(mode="binary"))(x, y), reference)
    # a two-class softmax head is binary through its logit difference
    two = torch.cat([torch.zeros_like(x), x], dim=1) + torch.randn(4, 1, 5, 5)
    for name in ("bce", "ce", "focal", "dice"):
        binary = build_loss(name, LossConfig(mode="binary"))
        torch.testing.assert_close(binary(two, y), binary(two[:, 1:] - two[:, :1], y))
    torch.testing.assert_close(
        build_loss("ce", LossConfig(mode="binary"))(two, y), build_loss("ce")(two, y)
    )
    # multiclass mode: one-vs-rest BCE against the one-hot target
    logits = torch.randn(4, 3, 5, 5)
    labels = torch.randint(0, 3, (4, 1, 5, 5))
    one_hot = F.one_hot(labels[:, 0], 3).movedim(-1, 1).float()
    torch.testing.assert_close(
        build_loss("bce")(logits, labels), F.binary_cross_entropy_with_logits(logits, one_hot)
    )
    torch.testing.assert_close(
        build_loss("bce", LossConfig(mode="multilabel"))(logits, one_hot),
        F.binary_cross_entropy_with_logits(logits, one_hot),
    )


def test_focal_equals_monai_and_is_ce_at_gamma_zero() -> None:
    from monai.losses import FocalLoss

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, 4)
    labels = torch.randint(0, 3, (2, 1, 4, 4, 4))
    # MONAI averages over the class axis as well: C times smaller
    monai_softmax = FocalLoss(to_onehot_y=True, use_softmax=True, gamma=2.0)(logits, labels)
    torch.testing.assert_close(build_loss("focal")(logits, labels), 3 * monai_softmax)
    multi_hot = (torch.rand(2, 3, 4, 4, 4) > 0.5).float()
    torch.testing.assert_close(
        build_loss("focal", LossConfig(mode="multilabel"))(logits, multi_hot),
        FocalLoss(gamma=2.0)(logits, multi_hot),
    )
    torch.testing.assert_close(
        build_loss("focal", LossConfig(focal_gamma=0.0))(logits, labels),
        build_loss("ce")(logits, labels),
    )


def test_dice_family_equals_monai() -> None:
    from monai.losses import DiceLoss, GeneralizedDiceLoss, TverskyLoss

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, 4)
    labels = torch.randint(0, 3, (2, 1, 4, 4, 4))
    common = {"to_onehot_y": True, "softmax": True, "include_background": False, "batch": True}
    pairs = [
        ("dice", LossConfig(), DiceLoss(**common)),
        ("jaccard", LossConfig(), DiceLoss(jaccard=True, **common)),
        ("tversky", LossConfig(), TverskyLoss(alpha=0.3, beta=0.7, **common)),
        ("generalized_dice", LossConfig(), GeneralizedDiceLoss(**common)),
        ("dice", LossConfig(class_weights=(9.0, 1.0, 3.0)), DiceLoss(weight=[1.0, 3.0], **common)),
    ]
    for name, config, reference in pairs:
        torch.testing.assert_close(
            build_loss(name, config)(logits, labels), reference(logits, labels)
        )
    multi_hot = (torch.rand(2, 3, 4, 4, 4) > 0.5).float()
    torch.testing.assert_close(
        build_loss("dice", LossConfig(mode="multilabel"))(logits, multi_hot),
        DiceLoss(sigmoid=True, batch=True)(logits, multi_hot),
    )


def test_jaccard_and_tversky_on_a_small_closed_form_case() -> None:
    # binary, one sigmoid logit per pixel: p = (0.9, 0.6, 0.2, 0.1), truth (1, 1, 0, 1)
    p = torch.tensor([0.9, 0.6, 0.2, 0.1])
    g = torch.tensor([1, 1, 0, 1])
    logits = torch.logit(p).view(1, 1, 4)
    target = g.view(1, 1, 4)
    intersection, union = float((p * g).sum()), float(p.sum() + g.sum() - (p * g).sum())
    jaccard = build_loss("jaccard", LossConfig(mode="binary"))(logits, target)
    assert float(jaccard) == pytest.approx(1 - intersection / union, abs=1e-5)
    tp, fp, fn = 1.6, 0.2, 1.4
    tversky = build_loss("tversky", LossConfig(mode="binary", tversky_alpha=0.3))(logits, target)
    assert float(tversky) == pytest.approx(1 - tp / (tp + 0.3 * fp + 0.7 * fn), abs=1e-5)


def test_robust_losses_match_their_closed_forms() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 5, 5)
    labels = torch.randint(0, 4, (3, 1, 5, 5))
    p_true = torch.softmax(logits, 1).gather(1, labels)
    ce = F.cross_entropy(logits, labels[:, 0])
    # gce: (1 - p^q) / q, CE as q -> 0, MAE-like 1 - p at q = 1
    q = 0.7
    gce = build_loss("gce", LossConfig(gce_q=q))(logits, labels)
    torch.testing.assert_close(gce, ((1 - p_true**q) / q).mean())
    near_zero = build_loss("gce", LossConfig(gce_q=1e-4))(logits, labels)
    assert float(near_zero) == pytest.approx(float(ce), rel=1e-3)
    torch.testing.assert_close(
        build_loss("gce", LossConfig(gce_q=1.0))(logits, labels), (1 - p_true).mean()
    )
    # sce: alpha * CE + beta * RCE with log 0 := -4, i.e. RCE = 4 (1 - p_true)
    sce = build_loss("sce", LossConfig(sce_alpha=0.1, sce_beta=1.0))(logits, labels)
    torch.testing.assert_close(sce, 0.1 * ce + 1.0 * 4 * (1 - p_true).mean())
    # mse / l1 (mae) on probabilities vs one-hot
    probs = torch.softmax(logits, 1)
    one_hot = F.one_hot(labels[:, 0], 4).movedim(-1, 1).float()
    torch.testing.assert_close(build_loss("mse")(logits, labels), F.mse_loss(probs, one_hot))
    torch.testing.assert_close(build_loss("l1")(logits, labels), F.l1_loss(probs, one_hot))
    torch.testing.assert_close(build_loss("mae")(logits, labels), build_loss("l1")(logits, labels))


def test_robust_losses_limit_the_pull_of_a_confidently_wrong_label() -> None:
    # A label the network contradicts with confidence (a likely annotation error) has an
    # unbounded CE gradient share; gce and mae bound it.
    logits = torch.tensor([[8.0, -8.0]], requires_grad=True)
    label = torch.tensor([1])
    gradients = {}
    for name in ("ce", "gce", "l1"):
        logits.grad = None
        build_classification_loss(name, 2)(logits, label).backward()
        assert logits.grad is not None
        gradients[name] = float(logits.grad.abs().max())
    assert gradients["ce"] > 0.99
    assert gradients["gce"] < 0.01 and gradients["l1"] < 0.01


# --- weighted sums -----------------------------------------------------------------------


def test_weighted_sums_equal_the_manual_sum() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, 4)
    labels = torch.randint(0, 3, (2, 1, 4, 4, 4))
    dice, focal = build_loss("dice")(logits, labels), build_loss("focal")(logits, labels)
    torch.testing.assert_close(
        build_loss("0.7*dice + 0.3*focal")(logits, labels), 0.7 * dice + 0.3 * focal
    )
    torch.testing.assert_close(build_loss("dice+focal")(logits, labels), dice + focal)
    torch.testing.assert_close(build_loss("dice_focal")(logits, labels), dice + focal)
    torch.testing.assert_close(
        build_loss("dice_ce")(logits, labels),
        dice + build_loss("ce")(logits, labels),
    )
    cls_logits, cls_labels = torch.randn(5, 3), torch.randint(0, 3, (5,))
    torch.testing.assert_close(
        build_classification_loss("0.5*ce+2*gce", 3)(cls_logits, cls_labels),
        0.5 * build_classification_loss("ce", 3)(cls_logits, cls_labels)
        + 2 * build_classification_loss("gce", 3)(cls_logits, cls_labels),
    )


def test_loss_expressions_parse_strictly() -> None:
    assert parse_loss_expression("dice_ce") == [LossTerm(1.0, "dice_ce")]
    assert parse_loss_expression(" 0.7*dice + .3 * focal ") == [
        LossTerm(0.7, "dice"),
        LossTerm(0.3, "focal"),
    ]
    assert parse_loss_expression("2*gce+1e-1*ce") == [LossTerm(2.0, "gce"), LossTerm(0.1, "ce")]
    for bad in (
        "dice*0.7",
        "0.7*dice +",
        "dice+focal+ce",
        "-1*dice",
        "dice-focal",
        "__import__('os')",
        "Dice",
        "0*dice + 0*ce",
        "",
    ):
        with pytest.raises(SpecError):
            parse_loss_expression(bad)


def test_unknown_terms_fail_with_did_you_mean() -> None:
    with pytest.raises(SpecError) as error:
        build_loss("0.5*dice + 0.5*focla")
    assert "focla" in error.value.what
    assert error.value.fix == "did you mean 'focal'?"
    with pytest.raises(SpecError) as error:
        build_classification_loss("ce+dice", 3)
    assert error.value.fix is not None and "segmentation loss" in error.value.fix
    with pytest.raises(SpecError):
        build_classification_loss("coral+ce", 3)
    with pytest.raises(SpecError) as error:
        build_classification_loss("gcee", 3)
    assert error.value.fix == "did you mean 'gce'?"


def test_the_spec_rejects_malformed_loss_names_when_parsed() -> None:
    from dentpy.spec import parse_spec

    spec = parse_spec({"loss": {"name": "0.7*dice + 0.3*focal", "mode": "multiclass"}})
    assert spec.loss.name == "0.7*dice + 0.3*focal"
    for bad in ({"name": "dice++focal"}, {"mode": "softmax"}, {"class_weights": [-1.0, 2.0]}):
        with pytest.raises(SpecError):
            parse_spec({"loss": bad})


# --- the tasks build from the spec -------------------------------------------------------


def test_segmentation_task_builds_mode_weights_and_smoothing_from_the_spec() -> None:
    from dentpy.spec import parse_spec
    from dentpy.tasks.segmentation import SegmentationTask

    task = SegmentationTask(("pulp", "canal"), ((1,), (2,)))
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, 4)
    labels = torch.randint(0, 3, (2, 1, 4, 4, 4))
    weights = [0.5, 2.0, 1.0]
    spec = parse_spec({"loss": {"name": "ce", "label_smoothing": 0.1, "class_weights": weights}})
    torch.testing.assert_close(
        task.build_loss(spec)(logits, labels),
        F.cross_entropy(logits, labels[:, 0], weight=torch.tensor(weights), label_smoothing=0.1),
    )
    with pytest.raises(SpecError, match="class_weights"):
        task.build_loss(parse_spec({"loss": {"class_weights": [1.0, 2.0]}}))
    with pytest.raises(SpecError, match="binary"):
        task.build_loss(parse_spec({"loss": {"mode": "binary"}}))
    with pytest.raises(SpecError, match="did you mean"):
        task.build_loss(parse_spec({"loss": {"name": "dice+focl"}}))
    one = SegmentationTask(("pulp",), ((1,),))
    binary = one.build_loss(parse_spec({"loss": {"name": "bce", "mode": "binary"}}))
    two_logits, fg = torch.randn(2, 2, 4, 4, 4), torch.randint(0, 2, (2, 1, 4, 4, 4))
    torch.testing.assert_close(
        binary(two_logits, fg),
        F.binary_cross_entropy_with_logits(two_logits[:, 1:] - two_logits[:, :1], fg.float()),
    )


def test_classification_task_keeps_its_defaults_and_takes_spec_settings() -> None:
    from dentpy.spec import parse_spec
    from dentpy.tasks.classification import ClassificationTask

    task = ClassificationTask(("sound", "caries"), "binary", "caries", "weighted_loss", (30, 10))
    logits, labels = torch.randn(8, 2), torch.randint(0, 2, (8,))
    spec = parse_spec(
        {
            "objective": {"task": "classification", "output": "binary"},
            "input": {"dimensionality": "2d"},
        }
    )
    inverse = torch.tensor(task.class_weights() or [])
    torch.testing.assert_close(  # class_weights auto: the imbalance weights, 2-class softmax
        task.build_loss(spec)(logits, labels), F.cross_entropy(logits, labels, weight=inverse)
    )
    spec.loss.class_weights = "none"
    spec.loss.mode = "binary"
    sce = dict(sce_alpha=0.1, sce_beta=1.0)
    for name in ("gce", "sce"):
        spec.loss.name = name  # the task resolved its loss name from the spec
        task = replace(task, loss_name=name)
        reference = build_configured_classification_loss(name, 2, LossConfig(mode="binary", **sce))
        torch.testing.assert_close(task.build_loss(spec)(logits, labels), reference(logits, labels))
    coral_task = ClassificationTask(("a", "b", "c"), "ordinal", None, "none", (3, 3, 3), "coral")
    spec.loss.name = "coral"
    spec.loss.mode = "multilabel"
    with pytest.raises(SpecError, match="coral"):
        coral_task.build_loss(spec)


def test_loss_modules_follow_the_device_of_their_buffers() -> None:
    loss = build_loss("0.5*ce + 0.5*dice", LossConfig(class_weights=(1.0, 2.0, 3.0)))
    assert any(name.endswith("class_weight") for name, _ in loss.named_buffers())
    assert math.isfinite(float(loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 1, 4, 4).long())))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_every_loss_runs_under_deterministic_algorithms_on_cuda_and_matches_cpu() -> None:
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    device = torch.device("cuda")
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        for mode in MODES:
            target, signs = _case(mode, (8, 8, 8))
            target = _shaped_target(target, mode, (8, 8, 8))
            logits = torch.randn_like(signs)
            weights = (1.0, 2.0) if mode == "binary" else (1.0, 2.0, 0.5)
            config = LossConfig(mode=mode, label_smoothing=0.1, class_weights=weights)
            for name in LOSSES.names():
                cpu = build_loss(name, config)
                gpu = build_loss(name, config).to(device)
                on_gpu = logits.to(device).requires_grad_(True)
                value = gpu(on_gpu, target.to(device))
                value.backward()
                torch.testing.assert_close(value.cpu(), cpu(logits, target), atol=1e-5, rtol=1e-4)
    finally:
        torch.use_deterministic_algorithms(previous)
