"""The CenterNet detector library: letterbox geometry, box-aware augmentation, target
encoding/decoding, NMS, and a small overfit run that shows the pieces learn together."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from dentpy.detection import (
    BoxAugment2D,
    CenterNet,
    Letterbox,
    batched_nms,
    box_iou,
    centernet_loss,
    decode,
    encode_targets,
    flip_boxes,
    zoom_boxes,
    zoom_images,
)
from dentpy.spec import Augment

CPU = torch.device("cpu")


def _no_aug(**changes: object) -> Augment:
    base: dict[str, object] = {
        "flip_left_right": False,
        "rotate_degrees": 0.0,
        "scale_range": (1.0, 1.0),
        "intensity_scale": 0.0,
        "intensity_shift": 0.0,
        "gamma_range": (1.0, 1.0),
        "noise_std": 0.0,
        "probability": 1.0,
    }
    base.update(changes)
    return Augment(**base)  # type: ignore[arg-type]


def _extent(mask: np.ndarray | torch.Tensor) -> tuple[int, int, int, int]:
    """Pixel-edge bounding box (x0, y0, x1, y1) of the True pixels."""
    ys, xs = np.nonzero(np.asarray(mask))
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


# --- letterbox -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_hw", "out_hw"),
    [((37, 90), (64, 64)), ((90, 37), (64, 64)), ((300, 200), (96, 160)), ((50, 70), (256, 384))],
)
def test_letterbox_boxes_round_trip_exactly(
    in_hw: tuple[int, int], out_hw: tuple[int, int]
) -> None:
    lb = Letterbox.fit(*in_hw, *out_hw)
    assert lb.scale == pytest.approx(min(out_hw[0] / in_hw[0], out_hw[1] / in_hw[1]))
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1, size=(20, 4)) * [in_hw[1], in_hw[0], in_hw[1], in_hw[0]]
    boxes = np.concatenate([np.minimum(xy[:, :2], xy[:, 2:]), np.maximum(xy[:, :2], xy[:, 2:])], 1)
    before = boxes.copy()
    net = lb.boxes_to_network(boxes)
    np.testing.assert_array_equal(boxes, before)  # input untouched
    np.testing.assert_allclose(net, boxes * lb.scale + [lb.pad_x, lb.pad_y] * 2, atol=1e-12)
    np.testing.assert_allclose(lb.boxes_to_image(net), boxes, atol=1e-9)
    t = torch.tensor(boxes, dtype=torch.float64)
    torch.testing.assert_close(lb.boxes_to_image(lb.boxes_to_network(t)), t, atol=1e-9, rtol=0)
    # The whole image maps inside the canvas.
    whole = lb.boxes_to_network(np.array([0.0, 0.0, in_hw[1], in_hw[0]]))
    assert whole[0] >= 0 and whole[1] >= 0
    assert whole[2] <= out_hw[1] + 1e-9 and whole[3] <= out_hw[0] + 1e-9


@pytest.mark.parametrize(
    ("in_hw", "out_hw", "rect"),
    [
        ((60, 150), (64, 64), (30, 10, 95, 41)),  # wide image, shrunk, pad top/bottom
        ((150, 60), (64, 64), (10, 30, 41, 95)),  # tall image, shrunk, pad left/right
        ((40, 30), (96, 160), (5, 7, 21, 33)),  # enlarged, pad left/right
        ((30, 41), (128, 96), (3, 4, 37, 20)),  # enlarged, pad top/bottom
    ],
)
def test_letterbox_content_lands_in_mapped_box(
    in_hw: tuple[int, int], out_hw: tuple[int, int], rect: tuple[int, int, int, int]
) -> None:
    x0, y0, x1, y1 = rect
    for channels in (None, 3):
        shape = in_hw if channels is None else (*in_hw, channels)
        image = np.zeros(shape, dtype=np.float32)
        image[y0:y1, x0:x1] = 1.0
        before = image.copy()
        lb = Letterbox.fit(*in_hw, *out_hw)
        out = lb.apply_image(image, pad_value=-1.0)
        np.testing.assert_array_equal(image, before)
        assert out.shape == (out_hw if channels is None else (*out_hw, channels))
        plane = out if channels is None else out[..., 1]
        mapped = lb.boxes_to_network(np.array(rect, dtype=np.float64))
        got = _extent(plane > 0.5)
        for g, m in zip(got, mapped, strict=True):
            assert abs(g - m) <= 1.0, (got, mapped)
        # Padding is where the letterbox says and has the pad value.
        content = _extent(plane > -0.5)
        whole = lb.boxes_to_network(np.array([0.0, 0.0, in_hw[1], in_hw[0]]))
        for g, m in zip(content, whole, strict=True):
            assert abs(g - m) <= 1.0, (content, whole)
        assert plane.min() == -1.0 or (lb.pad_x == 0 and lb.pad_y == 0)


# --- augmentation ----------------------------------------------------------------------

SWAP = [0, 2, 1, 3]  # classes 1 and 2 are a left/right pair (like FDI 16 <-> 26)


def test_flip_boxes_mirrors_and_swaps_classes() -> None:
    boxes = torch.tensor([[1.5, 2.0, 10.25, 7.0], [40.0, 3.0, 64.0, 9.0]], dtype=torch.float64)
    labels = torch.tensor([1, 3])
    flipped, new_labels = flip_boxes(boxes, labels, 64, SWAP)
    expected = torch.tensor([[53.75, 2.0, 62.5, 7.0], [0.0, 3.0, 24.0, 9.0]], dtype=torch.float64)
    torch.testing.assert_close(flipped, expected, atol=0, rtol=0)
    assert new_labels.tolist() == [2, 3]
    back, back_labels = flip_boxes(flipped, new_labels, 64, SWAP)
    torch.testing.assert_close(back, boxes, atol=0, rtol=0)
    assert back_labels.tolist() == labels.tolist()


def test_augment_flip_matches_image_and_boxes() -> None:
    h, w = 32, 48
    images = torch.zeros(8, 1, h, w)
    images[:, :, 4:12, 5:17] = 1.0  # box [5, 4, 17, 12], class 1
    boxes = [torch.tensor([[5.0, 4.0, 17.0, 12.0]]) for _ in range(8)]
    labels = [torch.tensor([1]) for _ in range(8)]
    aug = BoxAugment2D(_no_aug(flip_left_right=True), SWAP, CPU, seed=3, translate=0.0)
    out, out_boxes, out_labels = aug(images, boxes, labels)
    assert images[:, :, 4:12, 5:17].eq(1).all() and images.sum() == 8 * 8 * 12  # untouched
    flipped = 0
    for i in range(8):
        got = _extent(out[i, 0] > 0.5)
        assert got == tuple(int(v) for v in out_boxes[i][0].tolist())
        if out_labels[i].item() == 2:
            flipped += 1
            assert got == (w - 17, 4, w - 5, 12)
        else:
            assert out_labels[i].item() == 1 and got == (5, 4, 17, 12)
    assert 0 < flipped < 8  # both outcomes occur with this seed

    none = BoxAugment2D(_no_aug(flip_left_right=True), None, CPU, seed=3, translate=0.0)
    out, out_boxes, out_labels = none(images, boxes, labels)
    torch.testing.assert_close(out, images)
    assert all(b.tolist() == [[5.0, 4.0, 17.0, 12.0]] for b in out_boxes)
    assert all(lab.tolist() == [1] for lab in out_labels)


def test_swap_table_must_be_an_involution() -> None:
    with pytest.raises(ValueError, match="own inverse"):
        BoxAugment2D(_no_aug(), [1, 2, 0], CPU, seed=0)


def test_zoom_keeps_content_inside_transformed_box() -> None:
    h, w = 48, 64
    images = torch.zeros(3, 1, h, w)
    rects = [(10, 8, 30, 20), (40, 25, 60, 44), (2, 30, 20, 46)]
    for i, (x0, y0, x1, y1) in enumerate(rects):
        images[i, 0, y0:y1, x0:x1] = 1.0
    scale = torch.tensor([1.1, 0.9, 1.07], dtype=torch.float64)
    sx = torch.tensor([3.3, -2.5, 0.0], dtype=torch.float64)
    sy = torch.tensor([-1.7, 2.2, 0.4], dtype=torch.float64)
    out = zoom_images(images, scale, sx, sy)
    for i, rect in enumerate(rects):
        box, _ = zoom_boxes(
            torch.tensor([rect], dtype=torch.float64),
            torch.tensor([0]),
            float(scale[i]),
            float(sx[i]),
            float(sy[i]),
            h,
            w,
        )
        got = _extent(out[i, 0] > 0.5)
        for g, m in zip(got, box[0].tolist(), strict=True):
            assert abs(g - m) <= 1.0, (i, got, box)
        # Uncovered pixels take the image minimum, not border copies.
        assert out[i].min() >= 0.0


def test_zoom_drops_boxes_mostly_outside() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    kept, labels = zoom_boxes(boxes, torch.tensor([0, 1]), 1.0, -6.0, 0.0, 40, 40)
    assert labels.tolist() == [1]  # the first lost 60% of its area
    torch.testing.assert_close(kept, torch.tensor([[14.0, 20.0, 24.0, 30.0]]))
    kept, labels = zoom_boxes(boxes, torch.tensor([0, 1]), 1.0, -4.0, 0.0, 40, 40)
    assert labels.tolist() == [0, 1]
    torch.testing.assert_close(kept[0], torch.tensor([0.0, 0.0, 6.0, 10.0]))


def test_augment_is_seeded_and_resumable() -> None:
    cfg = Augment(flip_left_right=True, rotate_degrees=10.0)  # rotation is ignored for boxes
    images = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    boxes = [torch.tensor([[4.0, 4.0, 20.0, 20.0]]) for _ in range(4)]
    labels = [torch.tensor([1]) for _ in range(4)]
    a = BoxAugment2D(cfg, SWAP, CPU, seed=7)
    b = BoxAugment2D(cfg, SWAP, CPU, seed=7)
    a(images, boxes, labels)
    b.load_state_dict(a.state_dict())
    out_a, boxes_a, _ = a(images, boxes, labels)
    out_b, boxes_b, _ = b(images, boxes, labels)
    torch.testing.assert_close(out_a, out_b, atol=0, rtol=0)
    for x, y in zip(boxes_a, boxes_b, strict=True):
        torch.testing.assert_close(x, y, atol=0, rtol=0)


# --- targets, decoding, NMS --------------------------------------------------------------


def _perfect_outputs(targets: torch.Tensor | tuple, n_classes: int) -> dict[str, torch.Tensor]:
    heat, size, offset, indices, mask = targets
    n, _, h, w = heat.shape
    logits = torch.logit(heat.clamp(1e-4, 1 - 1e-4))
    maps = {}
    for name, values in (("size", size), ("offset", offset)):
        flat = torch.zeros(n, 2, h * w)
        for i in range(n):
            for k in range(indices.shape[1]):
                if mask[i, k] > 0:
                    flat[i, :, indices[i, k]] = values[i, k]
        maps[name] = flat.reshape(n, 2, h, w)
    return {"heatmap": logits, **maps}


def test_encode_then_decode_perfect_outputs_recovers_boxes() -> None:
    boxes = [
        torch.tensor([[10.3, 12.7, 41.9, 30.2], [70.0, 5.5, 90.25, 60.0], [3.0, 50.0, 20.0, 90.0]]),
        torch.tensor([[33.3, 33.3, 60.6, 44.4]]),
    ]
    labels = [torch.tensor([0, 2, 1]), torch.tensor([1])]
    targets = encode_targets(boxes, labels, n_classes=3, out_h=24, out_w=32)
    assert targets.heatmap.shape == (2, 3, 24, 32)
    assert targets.heatmap.eq(1).sum() == 4  # one exact peak per object
    assert targets.mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    outputs = _perfect_outputs(targets, 3)
    loss = centernet_loss(outputs, targets)
    assert loss.size.item() < 1e-6 and loss.offset.item() < 1e-6
    detections = decode(outputs, score_threshold=0.5)
    for det, truth, truth_labels in zip(detections, boxes, labels, strict=True):
        order = torch.argsort(det.boxes[:, 0])
        truth_order = torch.argsort(truth[:, 0])
        assert det.labels[order].tolist() == truth_labels[truth_order].tolist()
        err = (det.boxes[order] - truth[truth_order]).abs().max().item()
        assert err < 0.5, err


def test_loss_prefers_the_truth() -> None:
    boxes = [torch.tensor([[8.0, 8.0, 40.0, 24.0]])]
    targets = encode_targets(boxes, [torch.tensor([1])], n_classes=2, out_h=16, out_w=16)
    good = _perfect_outputs(targets, 2)
    bad = {k: v.clone() for k, v in good.items()}
    bad["heatmap"] = bad["heatmap"].flip(1)  # right place, wrong class
    assert centernet_loss(good, targets).heatmap < 0.1 * centernet_loss(bad, targets).heatmap


def test_batched_nms_is_class_aware() -> None:
    boxes = torch.tensor(
        [[0, 0, 10, 10], [1, 1, 11, 11], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.0]]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95])
    labels = torch.tensor([0, 0, 1, 0, 2])
    assert box_iou(boxes[:1], boxes[1:2]).item() == pytest.approx(81 / 119)
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [4, 0, 2, 3]
    assert batched_nms(boxes, scores, labels, 0.7).tolist() == [4, 0, 1, 2, 3]
    same = torch.zeros(5, dtype=torch.long)
    assert batched_nms(boxes, scores, same, 0.5).tolist() == [4, 3]
    assert batched_nms(boxes[:0], scores[:0], labels[:0], 0.5).numel() == 0


# --- the model ---------------------------------------------------------------------------


def _devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


@pytest.mark.parametrize("device", _devices())
def test_model_shapes_and_device(device: str, one_thread: None) -> None:
    torch.manual_seed(0)
    model = CenterNet(in_channels=3, n_classes=4, width=8).to(device)
    x = torch.randn(2, 3, 64, 96, device=device)
    out = model(x)
    assert out["heatmap"].shape == (2, 4, 16, 24)
    assert out["size"].shape == out["offset"].shape == (2, 2, 16, 24)
    bias = model.heatmap[-1].bias
    assert isinstance(bias, torch.Tensor) and torch.allclose(bias, torch.full_like(bias, -2.19))
    boxes = [
        torch.tensor([[4.0, 4.0, 30.0, 20.0]], device=device),
        torch.zeros(0, 4, device=device),
    ]
    labels = [torch.tensor([3], device=device), torch.zeros(0, dtype=torch.long, device=device)]
    targets = encode_targets(boxes, labels, 4, 16, 24)
    assert all(t.device.type == device for t in targets)
    loss = centernet_loss(out, targets)
    loss.total.backward()
    assert loss.total.device.type == device and torch.isfinite(loss.total)
    dets = decode(out, top_k=10, nms_iou=0.5)
    assert all(d.boxes.device.type == device for d in dets)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.randn(1, 3, 60, 96, device=device))


def _synthetic(n: int, seed: int) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """64x64 images, one rectangle in each half; class 0 is dim (0.5), class 1 bright (1.0)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, 64, 64)
    boxes, labels = [], []
    for i in range(n):
        bs, ls = [], []
        for half in (0, 1):
            bw, bh = (int(v) for v in torch.randint(10, 22, (2,), generator=g))
            x0 = half * 32 + int(torch.randint(0, 32 - bw + 1, (1,), generator=g))
            y0 = int(torch.randint(0, 64 - bh + 1, (1,), generator=g))
            cls = int(torch.randint(0, 2, (1,), generator=g))
            images[i, 0, y0 : y0 + bh, x0 : x0 + bw] = 0.5 + 0.5 * cls
            bs.append([x0, y0, x0 + bw, y0 + bh])
            ls.append(cls)
        boxes.append(torch.tensor(bs, dtype=torch.float32))
        labels.append(torch.tensor(ls))
    return images, boxes, labels


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small convolutions on a busy 2-core machine run ~20x faster on one thread than on
    two fighting other processes; the result does not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield None
    torch.set_num_threads(before)


def test_centernet_overfits_tiny_synthetic_set(one_thread: None) -> None:
    torch.manual_seed(0)
    images, boxes, labels = _synthetic(6, seed=1)
    model = CenterNet(in_channels=1, n_classes=2, width=8)
    targets = encode_targets(boxes, labels, 2, 16, 16)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    # Decaying the rate lets the size head settle: at a constant rate its log-size error
    # plateaus near 5%, which leaves the IoU margin thin.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 200)
    first = None
    for _ in range(200):
        loss = centernet_loss(model(images), targets)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
        schedule.step()
        first = first if first is not None else loss.total.item()
    assert first is not None and loss.total.item() < 0.1 * first
    model.eval()
    with torch.no_grad():
        dets = decode(model(images), top_k=2)
    for det, truth, truth_labels in zip(dets, boxes, labels, strict=True):
        iou = box_iou(truth, det.boxes)
        best = iou.argmax(dim=1)
        assert iou.max(dim=1).values.min().item() > 0.8, iou
        assert det.labels[best].tolist() == truth_labels.tolist()
