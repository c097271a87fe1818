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
# bf16 autocast on CPU: convolutions store 2-byte outputs, normalisations stay fp32
# (an assumption: this project's CPUs have no native bf16, so it is not measured).
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
    # itself, and no-grad forward passes of sw_batch_size patches (two layers alive).
    validation = (
        case * (inputs.out_channels + 1) * 4
        + case * 5
        + 2 * inputs.sw_batch_size * sizes.largest_output_elements * 4
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
