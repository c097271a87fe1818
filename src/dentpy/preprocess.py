"""Preprocessing: canonical orientation, resampling to a target spacing, intensity
normalisation, and a cache of the results.

Network space is RAS-canonical (array axes point to the patient's Right, Anterior,
Superior, as in nibabel's `as_closest_canonical`),
resampled to the plan's spacing. Every step is invertible for predictions, so outputs are
written back in the exact geometry of the input.

Intensity: CBCT gray values are not calibrated HU; they drift with scanner and field of
view (scale ~0.85-1.15, offset ±150). A global HU window (nnU-Net's CT scheme) would carry
that drift into the network, so each case is clipped to its own percentiles and z-scored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from dentpy.data.volume import Volume

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class PreprocessPlan:
    """What turns a case into network input. Part of the cache key and of the checkpoint."""

    target_spacing_mm: tuple[float, float, float]
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    version: int = 1  # bump when the preprocessing code changes meaning

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> PreprocessPlan:
        spacing = tuple(float(v) for v in data["target_spacing_mm"])  # type: ignore[attr-defined]
        clip = tuple(float(v) for v in data["clip_percentiles"])  # type: ignore[attr-defined]
        return cls(spacing, clip, int(str(data.get("version", 1))))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Orientation:
    """How a file's voxel axes map to canonical axes: a permutation plus flips."""

    ornt: np.ndarray  # nibabel orientation transform (3, 2): target axis, flip
    original_shape: tuple[int, int, int]
    canonical_spacing_mm: tuple[float, float, float]


def orientation_of(volume: Volume) -> Orientation:
    import nibabel.orientations as nio

    current = nio.io_orientation(volume.affine)
    transform = nio.ornt_transform(current, nio.axcodes2ornt(("R", "A", "S")))
    spacing = np.asarray(volume.spacing_mm)
    canonical_spacing = np.empty(3)
    for axis in range(3):
        canonical_spacing[int(transform[axis, 0])] = spacing[axis]
    return Orientation(
        ornt=transform,
        original_shape=volume.shape[:3],  # type: ignore[arg-type]
        canonical_spacing_mm=tuple(float(s) for s in canonical_spacing),  # type: ignore[arg-type]
    )


def to_canonical(array: np.ndarray, orientation: Orientation) -> np.ndarray:
    """Permute/flip voxel axes (exact, no interpolation) into canonical order."""
    import nibabel.orientations as nio

    return np.ascontiguousarray(nio.apply_orientation(array, orientation.ornt))


def from_canonical(array: np.ndarray, orientation: Orientation) -> np.ndarray:
    """Inverse of `to_canonical` on the last three axes."""
    import nibabel.orientations as nio

    inverse = _invert(orientation.ornt)
    if array.ndim == 3:
        return np.ascontiguousarray(nio.apply_orientation(array, inverse))
    return np.stack([np.ascontiguousarray(nio.apply_orientation(a, inverse)) for a in array])


def _invert(ornt: np.ndarray) -> np.ndarray:
    inverse = np.zeros_like(ornt)
    for source, (target, flip) in enumerate(ornt):
        inverse[int(target)] = (source, flip)
    return inverse


def resampled_shape(
    shape: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...]
) -> tuple[int, int, int]:
    # Round half up after trimming float noise: spacing read from a float32 header
    # (0.6000000238) must give the same grid as the exact value.
    return tuple(  # type: ignore[return-value]
        max(1, int(np.floor(round(n * s / t, 4) + 0.5)))
        for n, s, t in zip(shape, spacing, target, strict=True)
    )


def resize(tensor: torch.Tensor, shape: tuple[int, int, int], label: bool) -> torch.Tensor:
    """Resize (C, I, J, K) to `shape`: trilinear for intensities/probabilities, nearest for
    labels (a label is never averaged into a value that is no class)."""
    import torch.nn.functional as F

    if tuple(tensor.shape[-3:]) == tuple(shape):
        return tensor
    mode = "nearest-exact" if label else "trilinear"
    kwargs = {} if label else {"align_corners": False}
    out = F.interpolate(tensor[None].float(), size=shape, mode=mode, **kwargs)[0]
    return out.to(tensor.dtype) if label else out


def normalize_intensity(array: np.ndarray, clip_percentiles: tuple[float, float]) -> np.ndarray:
    low, high = np.percentile(array, clip_percentiles)
    clipped = np.clip(array.astype(np.float32), low, high)
    std = float(clipped.std())
    return ((clipped - float(clipped.mean())) / max(std, 1e-6)).astype(np.float32)


def prepare_image(image: Volume, plan: PreprocessPlan) -> tuple[np.ndarray, Orientation]:
    """Image (I, J, K) in file order -> float32 network-space array (canonical, resampled)."""
    import torch

    orientation = orientation_of(image)
    canonical = to_canonical(np.asarray(image.array), orientation)
    normalized = normalize_intensity(canonical, plan.clip_percentiles)
    shape = resampled_shape(
        normalized.shape, orientation.canonical_spacing_mm, plan.target_spacing_mm
    )
    tensor = resize(torch.from_numpy(normalized)[None], shape, label=False)
    return tensor[0].numpy(), orientation


def prepare_label(
    label: np.ndarray, orientation: Orientation, shape: tuple[int, ...]
) -> np.ndarray:
    """Class-index label (I, J, K) in file order -> uint8 network-space array."""
    import torch

    canonical = to_canonical(label, orientation)
    tensor = resize(torch.from_numpy(canonical.astype(np.uint8))[None], shape[-3:], label=True)  # type: ignore[arg-type]
    return tensor[0].numpy().astype(np.uint8)


def map_classes(label: np.ndarray, class_label_ids: list[list[int]]) -> np.ndarray:
    """Dataset label ids -> class indices 1..C (0 = background, also for unlisted labels)."""
    lookup = np.zeros(int(label.max()) + 1 if label.size else 1, dtype=np.uint8)
    for index, ids in enumerate(class_label_ids, start=1):
        for label_id in ids:
            if label_id < lookup.size:
                lookup[label_id] = index
    return lookup[label]


def probabilities_to_original(probabilities: torch.Tensor, orientation: Orientation) -> np.ndarray:
    """(C, I', J', K') network-space probabilities -> (I, J, K) class indices in file order."""
    canonical_shape = tuple(
        int(orientation.original_shape[int(np.flatnonzero(orientation.ornt[:, 0] == axis)[0])])
        for axis in range(3)
    )
    resized = resize(probabilities, canonical_shape, label=False)  # type: ignore[arg-type]
    classes = resized.argmax(0).to("cpu").numpy().astype(np.uint8)
    return from_canonical(classes, orientation)
