"""Grad-CAM for 2D classifiers: where in the radiograph the network looked for its answer.

A prediction of "caries" that rests on the image border, a ruler or a crown instead of
the tooth is a shortcut the test-set numbers cannot reveal; a heat map can. Grad-CAM
(Selvaraju et al. 2017) weights a convolutional layer's feature maps by the spatial mean
of the class score's gradient, keeps the positive part and upsamples it to the image.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dentpy.errors import OutputError

if TYPE_CHECKING:
    import torch


def last_conv2d(model: torch.nn.Module) -> torch.nn.Module:
    """The last `nn.Conv2d` in module order: the deepest spatial features of a classifier."""
    import torch

    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise ValueError("the model has no Conv2d layer; pass `layer=` to grad_cam")
    return convs[-1]


def cam_target(chosen: int, cumulative: bool) -> int:
    """The network output that explains predicted class `chosen`. A cumulative (CORAL)
    head has C-1 outputs "grade > k": the evidence for grade g is that of "grade > g-1"
    (for the lowest grade, "grade > lowest")."""
    return max(chosen - 1, 0) if cumulative else chosen


def grad_cam(
    model: torch.nn.Module,
    image: torch.Tensor,
    target: int,
    layer: torch.nn.Module | None = None,
) -> np.ndarray:
    """Grad-CAM heat map (H, W) in [0, 1] for output `target` of `model` on one image.

    `image` is (1, 1, H, W) on the model's device. `target` is an index into the model's
    outputs (a class for softmax heads; a threshold "grade > k" for cumulative heads).
    The model is put in eval mode (and left there); gradients are taken with
    `torch.autograd.grad`, so no parameter `.grad` is touched, and the hook is removed
    even if the forward pass fails. An all-zero map (the class score does not depend
    positively on the layer) is returned as zeros.
    """
    import torch
    import torch.nn.functional as F

    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(
            f"grad_cam expects one image shaped (1, C, H, W), got {tuple(image.shape)}"
        )
    layer = layer if layer is not None else last_conv2d(model)
    model.eval()
    captured: list[torch.Tensor] = []

    def keep(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        captured.append(output)

    handle = layer.register_forward_hook(keep)
    # A heat map is a picture, not a training step: backward ops without a deterministic
    # CUDA kernel (e.g. a foreign model's adaptive pooling) may warn instead of failing.
    strict = torch.are_deterministic_algorithms_enabled() and not (
        torch.is_deterministic_algorithms_warn_only_enabled()
    )
    if strict:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with torch.enable_grad():
            x = image.detach().float().clone().requires_grad_(True)
            logits = model(x)
            if not captured:
                raise ValueError("the chosen layer was not used in the forward pass")
            activation = captured[-1]
            score = logits.reshape(logits.shape[0], -1)[0, int(target)]
            (gradient,) = torch.autograd.grad(score, activation)
    finally:
        handle.remove()
        if strict:
            torch.use_deterministic_algorithms(True)
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(dim=1, keepdim=True)).detach()
    cam = F.interpolate(
        cam.float(), size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False
    )
    heat = cam[0, 0].cpu().numpy().astype(np.float32)
    heat = np.clip(heat, 0.0, None)
    top = float(heat.max())
    if not np.isfinite(top) or top <= 0:
        return np.zeros_like(heat)
    return np.clip(heat / top, 0.0, 1.0)


def _resize(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if heatmap.shape == shape:
        return heatmap
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(heatmap, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()


def save_cam_overlay(
    path: str | Path, image: np.ndarray, heatmap: np.ndarray, title: str = ""
) -> Path:
    """Write a PNG: the plain image (left) and the image with the heat map (jet, alpha 0.4)
    on top (right). Gray values are windowed to the 1st-99.5th percentile, so one bright
    filling does not turn the rest of the radiograph black. Agg backend: no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    gray = np.asarray(image, dtype=np.float32)
    if gray.ndim != 2:
        raise ValueError(f"save_cam_overlay expects a 2D image, got shape {gray.shape}")
    heat = _resize(np.asarray(heatmap, dtype=np.float32), (gray.shape[0], gray.shape[1]))
    low, high = (float(v) for v in np.percentile(gray, (1, 99.5)))
    if high <= low:
        high = low + 1.0
    figure, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    try:
        for axis in axes:
            axis.imshow(gray, cmap="gray", vmin=low, vmax=high)
            axis.axis("off")
        axes[1].imshow(heat, cmap="jet", alpha=0.4, vmin=0.0, vmax=1.0)
        axes[0].set_title("image")
        axes[1].set_title("Grad-CAM")
        if title:
            figure.suptitle(title)
        figure.tight_layout()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(path, dpi=100)
        except OSError as exc:
            raise OutputError(
                f"could not write the Grad-CAM picture {path.name}",
                expected="a writable folder",
                found=str(exc),
                fix="check the output folder's permissions and free space",
            ) from None
    finally:
        plt.close(figure)
    return path
