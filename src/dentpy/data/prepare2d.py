"""2D images in network space: one gray channel, resized to the spec's image size,
per-image percentile clipping and z-score.

The resize is a declared input transform of classification (`preprocess.image_size`), done
on a copy; the files are never changed. X-ray gray values are not calibrated (exposure and
processing vary by sensor), so each image is normalised on its own, as CBCT volumes are.
RGB images with three equal channels are gray images saved as RGB and are accepted; true
colour where a grayscale X-ray is expected is refused (RELIABILITY.md A9).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dentpy.data.image2d import Image2D
from dentpy.data.samples2d import ImageRecord
from dentpy.errors import InputDataError


@dataclass(frozen=True)
class Prepared2D:
    """Network-space images (N, 1, H, W) float32 with their case ids and patients."""

    images: np.ndarray
    case_ids: tuple[str, ...]
    patients: tuple[str, ...]
    class_labels: tuple[str | None, ...]

    def labels(self, classes: Sequence[str]) -> np.ndarray:
        index = {name: i for i, name in enumerate(classes)}
        return np.array([index[c] for c in self.class_labels if c is not None], dtype=np.int64)


def to_network(
    image: Image2D,
    size: tuple[int, int],
    clip_percentiles: tuple[float, float],
    where: str,
) -> np.ndarray:
    """(1, H, W) float32 for the network from one image (see module docstring)."""
    import torch

    gray = normalized_gray(image, clip_percentiles, where)
    tensor = torch.from_numpy(np.ascontiguousarray(gray))[None, None]
    if tuple(gray.shape) != tuple(size):
        tensor = torch.nn.functional.interpolate(
            tensor, size=size, mode="bilinear", align_corners=False, antialias=True
        )
    return tensor[0].numpy().astype(np.float32)


def normalized_gray(
    image: Image2D, clip_percentiles: tuple[float, float], where: str
) -> np.ndarray:
    """(H, W) float32: the image's gray values clipped at its own percentiles, z-scored."""
    pixels = image.array
    if pixels.ndim == 3:
        if not (
            np.array_equal(pixels[..., 0], pixels[..., 1])
            and np.array_equal(pixels[..., 0], pixels[..., 2])
        ):
            raise InputDataError(
                f"{where}: a colour (RGB) image where a grayscale X-ray was expected",
                expected="one gray channel (or three equal channels)",
                found=f"{image.width} x {image.height} pixels with 3 different colour channels",
                fix="export the radiograph as grayscale, or remove colour photos from the dataset",
            )
        pixels = pixels[..., 0]
    gray = pixels.astype(np.float32)
    low, high = np.percentile(gray, clip_percentiles)
    gray = np.clip(gray, low, high)
    std = float(gray.std())
    return ((gray - float(gray.mean())) / (std if std > 1e-6 else 1.0)).astype(np.float32)


def prepare_records(
    records: Sequence[ImageRecord],
    size: tuple[int, int],
    clip_percentiles: tuple[float, float],
) -> Prepared2D:
    """Load, check and convert records; any unreadable image stops with its error."""
    arrays = []
    for record in records:
        sample = record.load()
        where = f"case {record.case_id} ({record.name_of(record.image_path)})"
        arrays.append(to_network(sample.image, size, clip_percentiles, where))
    images = (
        np.stack(arrays).astype(np.float32) if arrays else np.zeros((0, 1, *size), dtype=np.float32)
    )
    return Prepared2D(
        images=images,
        case_ids=tuple(r.case_id for r in records),
        patients=tuple(r.patient_id for r in records),
        class_labels=tuple(r.class_label for r in records),
    )
