"""Measured peak memory of a planned configuration: a fresh Python process runs a few real
training steps and reports its peak (CPU: the process's peak resident memory, VmHWM; CUDA:
torch.cuda.max_memory_allocated). Run as `python -m dentpy.planning.measure CONFIG_JSON`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from dentpy.errors import DentpyError


def peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux VmHWM, else ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def measure_peak(
    spec_data: dict[str, Any], out_channels: int, device: str, steps: int = 3, timeout: int = 600
) -> dict[str, Any]:
    """Peak memory (bytes) of `steps` training steps of the spec in a new process."""
    config = {"spec": spec_data, "out_channels": out_channels, "device": device, "steps": steps}
    done = subprocess.run(
        [sys.executable, "-m", "dentpy.planning.measure", json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise DentpyError(
            "the memory measurement process failed",
            expected="a few training steps of the planned configuration to run",
            found=((done.stderr or done.stdout).strip().splitlines() or ["no output"])[-1],
            fix="run `dentpy plan` without --measure, or lower the memory limit",
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _main(raw: str) -> None:
    import torch

    from dentpy.engine.device import autocast_dtype
    from dentpy.planning.steps import training_steps
    from dentpy.spec import parse_spec

    config = json.loads(raw)
    spec = parse_spec(config["spec"])
    device = torch.device(config["device"])
    if spec.constraints.threads:
        torch.set_num_threads(spec.constraints.threads)
    if device.type == "cuda":  # as `dentpy train` runs (its autotuning workspaces count)
        torch.backends.cudnn.benchmark = not spec.constraints.deterministic
    amp_dtype = autocast_dtype(device, spec.constraints.precision)
    seconds = training_steps(spec, config["out_channels"], device, amp_dtype, config["steps"])
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss_bytes()
    print(json.dumps({"peak_bytes": int(peak), "seconds_per_step": seconds}))


if __name__ == "__main__":
    _main(sys.argv[1])
