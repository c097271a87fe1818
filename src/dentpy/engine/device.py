"""Device and precision choice: CUDA when present, else CPU; bf16 only where it is native."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from dentpy.errors import SpecError

if TYPE_CHECKING:
    import torch


def choose_device(preference: str = "auto") -> torch.device:
    import torch

    if preference == "cuda" and not torch.cuda.is_available():
        raise SpecError(
            "constraints.device is 'cuda' but no CUDA GPU is available",
            expected="a visible NVIDIA GPU with a CUDA build of torch",
            found=f"torch {torch.__version__}, cuda available: False",
            fix="set constraints.device=auto (uses the GPU when there is one)",
        )
    if preference in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@functools.cache  # read once per process: every predicted volume asks for the layout
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none: macOS,
    Windows), so every choice below falls back to the portable default there."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def _cpu_has_native_bf16() -> bool:
    return not cpu_flags().isdisjoint({"avx512_bf16", "amx_bf16"})


def autocast_dtype(device: torch.device, preference: str = "auto") -> torch.dtype | None:
    """bf16 where the hardware computes it natively (emulated bf16 on CPU is slower)."""
    import torch

    if preference == "fp32":
        return None
    native = torch.cuda.is_bf16_supported() if device.type == "cuda" else _cpu_has_native_bf16()
    if preference == "bf16" or (preference == "auto" and native):
        return torch.bfloat16
    return None


def memory_format_3d(device: torch.device) -> torch.memory_format:
    """The layout 3D networks train in on this device, the measured winner of each:
    channels_last_3d on CPU (oneDNN's 3D convolutions ~10% faster, benchmarks/train_step.py),
    channels-first on CUDA (cuDNN's bf16 3D convolutions 5-41% slower in channels_last_3d
    on an H100, benchmarks/gpu_peak.py)."""
    import torch

    return torch.contiguous_format if device.type == "cuda" else torch.channels_last_3d


def inference_memory_format_3d(device: torch.device) -> torch.memory_format:
    """The layout 3D networks predict in on this device, the measured winner of each
    (benchmarks/inference_window.py, whole-volume and patch windows, same labels):
    channels_last_3d on CPUs with AVX-512 (oneDNN's kernels 1.07-1.15x faster there),
    channels-first on CPUs without it (0.89-1.05x: no gain) and on CUDA (as in training).
    Training keeps channels_last_3d on every CPU: its backward pass gains there too."""
    import torch

    if device.type == "cpu" and "avx512f" in cpu_flags():
        return torch.channels_last_3d
    return torch.contiguous_format
