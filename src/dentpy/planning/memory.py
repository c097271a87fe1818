"""Peak memory of training a planned configuration, as a sum of named parts.

Calibration (benchmarks/plan_memory.py, CPU, torch 2.13, MONAI UNet, fp32): a process
running training steps holds ~500 MiB before any tensor (Python, torch, MONAI, dentpy,
oneDNN), and each training sample costs ~2.8x the bytes of all layer outputs (autograd
keeps them, plus skip-connection concatenations, residual sums, gradient buffers and
channels-last reorders that have no module of their own).

CUDA (benchmarks/gpu_peak.py and plan_memory.py on an H100, torch 2.11, cuDNN autotuning
on, channels-first, as `dentpy train` runs there): torch.cuda.max_memory_allocated was
~1.05x the fp32 bytes of all layer outputs per sample under bf16 autocast (0.85-1.25 over
MONAI UNet and BasicUNet, 96^3 to 144x112x80 and 128^3, batch 2 and 4) and 1.6-3.8x in
fp32, where cuDNN's autotuning workspaces (which shrink to the memory that is free) make
the peak of small networks. The CUDA context is not in max_memory_allocated; it is counted
as a fixed overhead.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from dentpy.planning.network import NetworkSizes

MIB = 2**20
GIB = 2**30
# Measured: peak RSS of a process that ran a tiny training step (16^3 patch, 4/8 channels).
CPU_PROCESS_OVERHEAD = 500 * MIB
# Not in torch.cuda.max_memory_allocated, but taken from the GPU: context and kernels.
CUDA_CONTEXT_OVERHEAD = 600 * MIB
ACTIVATION_FACTOR = 2.8
# bf16 autocast on CPU: convolutions store 2-byte outputs, normalisations stay fp32.
# Measured on a CPU with avx512_bf16 (benchmarks/plan_memory.py --precision bf16):
# estimate / measured 0.91-1.02 over 6 configurations.
BF16_ACTIVATION_SHARE = 0.6
# CUDA, by precision: bytes kept per sample = factor x fp32 bytes of all layer outputs.
CUDA_ACTIVATION_FACTOR = {"bf16": 1.05, "fp32": 2.0}
# The loss works on fp32 logits: softmax, one-hot target, products and their gradients.
LOSS_TENSORS_PER_LOGIT = 4
# Optimizer state tensors per parameter (dentpy.optim names).
OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "rmsprop": 2, "momentum": 1, "nesterov": 1, "sgd": 0}
# A memory-mapped case is resident only where patches were read, and the OS can drop
# those pages under pressure; count this share of the training cache.
MAPPED_DATASET_SHARE = 0.25
# Batch copies alive at once: the sampler's numpy stack, the tensor, the augmented tensor.
BATCH_COPIES = 3
# A no-grad forward pass of a window larger than the patch (validation with sw_window
# auto): peak RSS grew by fixed oneDNN scratch (FORWARD_FIXED_BYTES, dentpy.inference_window)
# plus at most this share of the bytes of all layer outputs (CPU, MONAI UNet, windows 64^3
# to 192x192x128, 4-5 levels).
WINDOW_OUTPUT_SHARE = 0.6


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of each part of the peak; `training` is what a few training steps on random
    data hold (what benchmarks/plan_memory.py measures), `peak` adds the mapped dataset
    and what validation needs beyond training."""

    process_overhead: int
    weights_and_optimizer: int
    activations: int
    loss: int
    batch: int
    dataset_mapped: int
    validation_extra: int

    @property
    def training(self) -> int:
        return (
            self.process_overhead
            + self.weights_and_optimizer
            + self.activations
            + self.loss
            + self.batch
        )

    @property
    def peak(self) -> int:
        return self.training + self.dataset_mapped + self.validation_extra

    def to_dict(self) -> dict[str, Any]:
        parts = {name: round(value / MIB, 1) for name, value in asdict(self).items()}
        return {
            "unit": "MiB",
            **parts,
            "training_mib": round(self.training / MIB, 1),
            "peak_mib": round(self.peak / MIB, 1),
        }


@dataclass(frozen=True)
class MemoryInputs:
    """What the estimate needs besides the network's sizes."""

    device_type: str
    bf16: bool
    optimizer: str
    out_channels: int
    dataset_bytes: int  # the prepared training cases (image float32 + label uint8)
    largest_case_voxels: int  # a validation case is read and predicted whole
    sw_batch_size: int
    # train.sw_window ("auto": the whole case in one window when its forward pass fits
    # `window_budget_bytes`, dentpy.inference_window) and that budget.
    sw_window: str | tuple[int, ...] = "patch"
    window_budget_bytes: int = 0


def estimate_memory(
    sizes: NetworkSizes,
    patch: tuple[int, int, int],
    batch_size: int,
    inputs: MemoryInputs,
) -> MemoryEstimate:
    voxels = patch[0] * patch[1] * patch[2]
    if inputs.device_type == "cuda":
        factor = CUDA_ACTIVATION_FACTOR["bf16" if inputs.bf16 else "fp32"]
    else:
        factor = ACTIVATION_FACTOR * (BF16_ACTIVATION_SHARE if inputs.bf16 else 1.0)
    activations = int(factor * sizes.activation_elements * 4)
    states = OPTIMIZER_STATES.get(inputs.optimizer, 2)
    # Weights, their gradients and the optimizer state, all fp32.
    weights = sizes.parameters * 4 * (2 + states)
    loss = LOSS_TENSORS_PER_LOGIT * voxels * inputs.out_channels * 4
    batch = BATCH_COPIES * voxels * (4 + 1)
    case = inputs.largest_case_voxels
    # Sliding-window validation: fp32 logits and a weight map of the whole case, the case
    # itself, and the no-grad forward passes of its windows.
    validation = (
        case * (inputs.out_channels + 1) * 4
        + case * 5
        + window_forward_bytes(sizes, voxels, inputs)
    )
    training_part = batch_size * (activations + loss + batch)
    overhead = CUDA_CONTEXT_OVERHEAD if inputs.device_type == "cuda" else CPU_PROCESS_OVERHEAD
    mapped = 0 if inputs.device_type == "cuda" else int(MAPPED_DATASET_SHARE * inputs.dataset_bytes)
    return MemoryEstimate(
        process_overhead=overhead,
        weights_and_optimizer=weights,
        activations=batch_size * activations,
        loss=batch_size * loss,
        batch=batch_size * batch,
        dataset_mapped=mapped,
        validation_extra=max(0, validation - training_part),
    )


def window_forward_bytes(sizes: NetworkSizes, patch_voxels: int, inputs: MemoryInputs) -> int:
    """Memory of validation's forward passes. Patch windows: sw_batch_size patches with two
    layers alive. A larger window (`auto`: the whole largest case, shrunk to the budget as
    dentpy.inference_window chooses it; or a size in the spec): fixed oneDNN scratch plus
    WINDOW_OUTPUT_SHARE of all its layer outputs."""
    from dentpy.inference_window import FORWARD_FIXED_BYTES

    patch_windows = 2 * inputs.sw_batch_size * sizes.largest_output_elements * 4
    per_voxel = 4 * sizes.activation_elements / patch_voxels
    if inputs.sw_window == "patch":
        return patch_windows
    if isinstance(inputs.sw_window, str):  # auto
        fitting = (inputs.window_budget_bytes - FORWARD_FIXED_BYTES) / per_voxel
        window = min(inputs.largest_case_voxels, int(fitting))
        if window <= patch_voxels:
            return patch_windows  # no larger window fits: validation tiles with the patch
        return int(FORWARD_FIXED_BYTES + WINDOW_OUTPUT_SHARE * per_voxel * window)
    window = math.prod(inputs.sw_window) * inputs.sw_batch_size
    return int(FORWARD_FIXED_BYTES + WINDOW_OUTPUT_SHARE * per_voxel * window)
