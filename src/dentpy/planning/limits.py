"""The memory a plan may use: the spec's `constraints.memory_limit_gb`, or "auto".

"auto" (and null) is 70% of the machine's total RAM on CPU (or of a cgroup limit, when the
process runs in a smaller container) and 70% of the GPU's total memory on CUDA. Total, not
currently free, memory: the plan must not change with what else happens to be running."""

from __future__ import annotations

from pathlib import Path

from dentpy.errors import SpecError

AUTO_SHARE = 0.7
GB = 1e9


def _meminfo_total_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise OSError("MemTotal missing from /proc/meminfo")


def _cgroup_limit_bytes() -> int | None:
    for name in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(name).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 2**60:
            return int(raw)
    return None


def total_memory_bytes(device_type: str) -> int:
    """The device's total memory: GPU memory on CUDA, else RAM (capped by a cgroup)."""
    if device_type == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory)
    try:
        total = _meminfo_total_bytes()
    except OSError:
        import os

        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cgroup = _cgroup_limit_bytes()
    return min(total, cgroup) if cgroup else total


def memory_limit(
    limit_gb: float | str | None, device_type: str, processes_here: int = 1
) -> tuple[int, str]:
    """(bytes, the rule that gave them) for one training process. `processes_here`: the
    training processes on this machine; on CPU they share the RAM that "auto" allows (on
    CUDA each has its own GPU). A number in the spec is already per process."""
    if isinstance(limit_gb, int | float):
        return int(limit_gb * GB), f"constraints.memory_limit_gb = {limit_gb:g} GB"
    if limit_gb not in (None, "auto"):
        raise SpecError(
            "constraints.memory_limit_gb must be a number of GB, 'auto' or null",
            expected="e.g. 8, auto",
            found=repr(limit_gb),
        )
    total = total_memory_bytes(device_type)
    where = "the GPU's total memory" if device_type == "cuda" else "the machine's total RAM"
    rule = f"auto: 70% of {where} ({total / GB:.1f} GB)"
    if device_type == "cuda" or processes_here <= 1:
        return int(AUTO_SHARE * total), rule
    return int(AUTO_SHARE * total / processes_here), f"{rule} / {processes_here} processes"
