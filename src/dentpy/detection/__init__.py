"""Anchor-free 2D box detection (CenterNet) in plain torch: letterboxing, box-aware
augmentation, the network, target encoding, loss, decoding and NMS. No torchvision."""

from dentpy.detection.box_augment import (
    MIN_KEPT_AREA,
    AugmentConfig,
    BoxAugment2D,
    check_swap_table,
    flip_boxes,
    zoom_boxes,
    zoom_images,
)
from dentpy.detection.centernet import (
    INPUT_MULTIPLE,
    STRIDE,
    CenterNet,
    Detections,
    LossParts,
    Targets,
    batched_nms,
    box_iou,
    centernet_loss,
    decode,
    encode_targets,
    gaussian_radius,
)
from dentpy.detection.letterbox import Letterbox
from dentpy.detection.packed import (
    PackedCenterNet,
    PackedCenterNetLoss,
    detect_packed,
    pack_targets,
)

__all__ = [
    "INPUT_MULTIPLE",
    "MIN_KEPT_AREA",
    "STRIDE",
    "AugmentConfig",
    "BoxAugment2D",
    "CenterNet",
    "Detections",
    "Letterbox",
    "LossParts",
    "PackedCenterNet",
    "PackedCenterNetLoss",
    "Targets",
    "batched_nms",
    "box_iou",
    "centernet_loss",
    "check_swap_table",
    "decode",
    "detect_packed",
    "encode_targets",
    "flip_boxes",
    "gaussian_radius",
    "pack_targets",
    "zoom_boxes",
    "zoom_images",
]
