"""A compact CenterNet ("Objects as Points", Zhou et al. 2019) written in plain torch.

Each object is a peak in a per-class heatmap at stride 4, plus a sub-cell offset and a
(w, h) size read at that peak. No anchors, no torchvision (MONAI's RetinaNet needs it), and
NMS is optional because the 3x3 max-pool peak extraction already removes most duplicates.

Coordinates are pixel-edge in network pixels (after `Letterbox`): output cell `(i, j)` covers
network pixels `[4j, 4j + 4) x [4i, 4i + 4)`, so a box centre `c` lies in cell `floor(c / 4)`
with offset `c / 4 - floor(c / 4)` in `[0, 1)`, and decoding is `(cell + offset) * 4`.

Sizes are predicted as `log(w), log(h)` in network pixels: always positive when decoded,
and an L1 error in log space is a relative error, so a 10-pixel and a 200-pixel tooth weigh
the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 4
# Total down-sampling of the encoder: inputs must be multiples of it.
INPUT_MULTIPLE = 32
# Heatmap bias so the initial sigmoid is ~0.1 (the paper's -2.19): most cells are background
# and a 0.5 start would make the first steps of focal loss huge.
HEATMAP_BIAS = -2.19
# log-size is clamped before exp() so a diverging head cannot overflow to inf boxes.
_LOG_SIZE_RANGE = (-6.0, 12.0)


def _conv_bn(c_in: int, c_out: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _BasicBlock(nn.Module):
    """ResNet basic block; a 1x1 strided projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(c_in, c_out, stride), _conv_bn(c_out, c_out, relu=False))
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 as a broadcast: its backward is a plain sum, deterministic on
    CUDA (interpolate's backward uses atomic adds there)."""
    n, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)


def _head(c_in: int, c_out: int, bias: float) -> nn.Sequential:
    head = nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c_in, c_out, 1)
    )
    last = head[-1]
    if isinstance(last, nn.Conv2d) and last.bias is not None:
        nn.init.constant_(last.bias, bias)
    return head


class CenterNet(nn.Module):
    """(N, in_channels, H, W) with H, W multiples of 32 -> dict of stride-4 maps:

    - `heatmap`: (N, n_classes, H/4, W/4) logits (sigmoid gives the centre probability)
    - `size`: (N, 2, H/4, W/4) `log(w), log(h)` in network pixels
    - `offset`: (N, 2, H/4, W/4) sub-cell centre offset (x, y) in output cells

    Encoder: ResNet-style, stages at strides 4, 8, 16, 32 with width, 2w, 4w, 8w channels.
    Decoder: FPN-like top-down path (1x1 laterals added to the up-sampled coarser map) back to
    stride 4, so the heatmap sees both fine edges and the large context of a whole jaw.
    """

    def __init__(self, in_channels: int, n_classes: int, width: int = 32) -> None:
        super().__init__()
        if in_channels < 1 or n_classes < 1 or width < 1:
            raise ValueError(
                f"in_channels, n_classes and width must be >= 1, got "
                f"{in_channels}, {n_classes}, {width}"
            )
        self.n_classes = n_classes
        self.stem = _conv_bn(in_channels, width, stride=2)
        chans = [width, 2 * width, 4 * width, 8 * width]
        stages = []
        c_prev = width
        for c in chans:
            stages.append(nn.Sequential(_BasicBlock(c_prev, c, 2), _BasicBlock(c, c, 1)))
            c_prev = c
        self.stages = nn.ModuleList(stages)
        dec = 2 * width
        self.laterals = nn.ModuleList(nn.Conv2d(c, dec, 1) for c in chans)
        self.smooth = nn.ModuleList(_conv_bn(dec, dec) for _ in chans[:-1])
        self.heatmap = _head(dec, n_classes, HEATMAP_BIAS)
        self.size = _head(dec, 2, 0.0)
        self.offset = _head(dec, 2, 0.0)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
            raise ValueError(
                f"CenterNet input height and width must be multiples of {INPUT_MULTIPLE}, "
                f"got {h}x{w}; letterbox to such a size"
            )
        feats = []
        y = self.stem(x)
        for stage in self.stages:
            y = stage(y)
            feats.append(y)
        p = self.laterals[-1](feats[-1])
        for level in range(len(feats) - 2, -1, -1):
            p = self.smooth[level](_upsample2(p) + self.laterals[level](feats[level]))
        return {"heatmap": self.heatmap(p), "size": self.size(p), "offset": self.offset(p)}


class Targets(NamedTuple):
    """Training targets for one batch; K = most boxes in any image (at least 1).

    `heatmap` (N, C, h, w) Gaussian splats with exactly 1.0 at each centre cell; `size`
    (N, K, 2) log(w, h); `offset` (N, K, 2); `indices` (N, K) flat cell index `y * w + x`;
    `mask` (N, K) 1.0 for real boxes, 0.0 for padding slots.
    """

    heatmap: torch.Tensor
    size: torch.Tensor
    offset: torch.Tensor
    indices: torch.Tensor
    mask: torch.Tensor


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CornerNet/CenterNet's radius (in output cells) within which a shifted box still has
    IoU >= min_overlap with the truth. This is the widely used formula as published
    (including its known looseness), so results compare with other CenterNets."""
    a1, b1 = 1.0, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2 = 4.0, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def encode_targets(
    boxes_list: Sequence[torch.Tensor],
    labels_list: Sequence[torch.Tensor],
    n_classes: int,
    out_h: int,
    out_w: int,
    stride: int = STRIDE,
) -> Targets:
    """Per image (n_i, 4) xyxy boxes in network pixels and (n_i,) class indices -> `Targets`
    on the boxes' device. Boxes with no width or height are skipped (no centre to learn)."""
    if len(boxes_list) != len(labels_list):
        raise ValueError(f"{len(boxes_list)} box tensors but {len(labels_list)} label tensors")
    n = len(boxes_list)
    device = boxes_list[0].device if n else torch.device("cpu")
    k = max([1, *(len(b) for b in boxes_list)])
    heatmap = torch.zeros(n, n_classes, out_h, out_w, device=device)
    size = torch.zeros(n, k, 2, device=device)
    offset = torch.zeros(n, k, 2, device=device)
    index = torch.zeros(n, k, dtype=torch.long, device=device)
    mask = torch.zeros(n, k, device=device)
    ys = torch.arange(out_h, device=device, dtype=torch.float32)[:, None]
    xs = torch.arange(out_w, device=device, dtype=torch.float32)[None, :]
    for i, (boxes, labels) in enumerate(zip(boxes_list, labels_list, strict=True)):
        # One host transfer per image: the splat sizes are Python-side decisions.
        rows = boxes.detach().double().cpu().tolist()
        classes = labels.detach().cpu().tolist()
        for slot, ((x0, y0, x1, y1), cls) in enumerate(zip(rows, classes, strict=True)):
            if not 0 <= cls < n_classes:
                raise ValueError(f"label {cls} outside 0..{n_classes - 1}")
            bw, bh = x1 - x0, y1 - y0
            if bw <= 0 or bh <= 0:
                continue
            cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride
            col = min(max(math.floor(cx), 0), out_w - 1)
            row = min(max(math.floor(cy), 0), out_h - 1)
            radius = max(0, int(gaussian_radius(bh / stride, bw / stride)))
            sigma = (2 * radius + 1) / 6
            d2 = (xs - col) ** 2 + (ys - row) ** 2
            splat = torch.exp(-d2 / (2 * sigma**2))
            window = ((xs - col).abs() <= radius) & ((ys - row).abs() <= radius)
            splat = torch.where(window, splat, torch.zeros_like(splat))
            heatmap[i, cls] = torch.maximum(heatmap[i, cls], splat)
            size[i, slot, 0], size[i, slot, 1] = math.log(bw), math.log(bh)
            offset[i, slot, 0], offset[i, slot, 1] = cx - col, cy - row
            index[i, slot] = row * out_w + col
            mask[i, slot] = 1.0
    return Targets(heatmap, size, offset, index, mask)


def _gather(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(N, D, h, w) maps read at (N, K) flat indices -> (N, K, D)."""
    n, d = maps.shape[:2]
    flat = maps.reshape(n, d, -1)
    return flat.gather(2, index[:, None, :].expand(n, d, index.shape[1])).permute(0, 2, 1)


class LossParts(NamedTuple):
    total: torch.Tensor
    heatmap: torch.Tensor
    size: torch.Tensor
    offset: torch.Tensor


def centernet_loss(
    outputs: dict[str, torch.Tensor],
    targets: Targets,
    size_weight: float = 0.1,
    offset_weight: float = 1.0,
) -> LossParts:
    """Penalty-reduced pixel-wise focal loss (alpha 2, beta 4) normalised by the number of
    objects, plus L1 on log-size and offset at the true centres (averaged over objects)."""
    logits = outputs["heatmap"].float()
    gt = targets.heatmap
    prob = torch.sigmoid(logits)
    # log(p) and log(1 - p) from logsigmoid: exact far into the tails, no clamping needed.
    pos = gt.eq(1).float()
    pos_loss = F.logsigmoid(logits) * (1 - prob) ** 2 * pos
    neg_loss = F.logsigmoid(-logits) * prob**2 * (1 - gt) ** 4 * (1 - pos)
    n_pos = pos.sum()
    heat = -(pos_loss.sum() + neg_loss.sum()) / n_pos.clamp_min(1)
    mask = targets.mask[..., None]
    n_obj = mask.sum().clamp_min(1) * 2
    size_pred = _gather(outputs["size"].float(), targets.indices)
    off_pred = _gather(outputs["offset"].float(), targets.indices)
    size_l1 = ((size_pred - targets.size).abs() * mask).sum() / n_obj
    off_l1 = ((off_pred - targets.offset).abs() * mask).sum() / n_obj
    total = heat + size_weight * size_l1 + offset_weight * off_l1
    return LossParts(total, heat, size_l1, off_l1)


class Detections(NamedTuple):
    """One image's detections: boxes (n, 4) xyxy network pixels, scores (n,), labels (n,)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, 4) and (m, 4) xyxy -> (n, m) intersection over union (0 where both are empty)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(dim=2)
    area_a = (a[:, 2:] - a[:, :2]).clamp_min(0).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).clamp_min(0).prod(dim=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Greedy class-aware NMS: indices of kept boxes, highest score first.

    A box is suppressed by a higher-scoring kept box of the SAME label whose IoU with it is
    above `iou_threshold` (teeth of different classes overlap legitimately). The IoU matrix
    is computed on the boxes' device; the greedy sweep, inherently sequential, runs on a
    small boolean matrix on the host.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    b, lab = boxes[order], labels[order]
    over = (box_iou(b, b) > iou_threshold) & (lab[:, None] == lab[None, :])
    over_host = over.cpu()
    removed = torch.zeros(len(order), dtype=torch.bool)
    keep: list[int] = []
    for i in range(len(order)):
        if removed[i]:
            continue
        keep.append(i)
        removed |= over_host[i]
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def decode(
    outputs: dict[str, torch.Tensor],
    stride: int = STRIDE,
    top_k: int = 100,
    score_threshold: float = 0.0,
    nms_iou: float | None = None,
) -> list[Detections]:
    """Network outputs -> per image `Detections` in network pixels, best first.

    Peaks are cells equal to the 3x3 max of their neighbourhood (the paper's cheap NMS); the
    `top_k` best peaks over all classes are kept, then those above `score_threshold`, then
    (when `nms_iou` is given) class-aware NMS.
    """
    heat = torch.sigmoid(outputs["heatmap"].float())
    n, c, h, w = heat.shape
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    k = min(top_k, c * h * w)
    scores, flat = peaks.reshape(n, -1).topk(k, dim=1)
    labels = torch.div(flat, h * w, rounding_mode="floor")
    cell = flat % (h * w)
    ys = torch.div(cell, w, rounding_mode="floor").float()
    xs = (cell % w).float()
    off = _gather(outputs["offset"].float(), cell)
    size = _gather(outputs["size"].float(), cell).clamp(*_LOG_SIZE_RANGE).exp()
    cx, cy = (xs + off[..., 0]) * stride, (ys + off[..., 1]) * stride
    half_w, half_h = size[..., 0] / 2, size[..., 1] / 2
    boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)
    result = []
    for i in range(n):
        keep = scores[i] > score_threshold
        det = Detections(boxes[i][keep], scores[i][keep], labels[i][keep])
        if nms_iou is not None:
            kept = batched_nms(det.boxes, det.scores, det.labels, nms_iou)
            det = Detections(det.boxes[kept], det.scores[kept], det.labels[kept])
        result.append(det)
    return result
