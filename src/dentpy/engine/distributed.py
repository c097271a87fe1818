"""Data-parallel training over several processes (GPUs, nodes) with PyTorch DDP.

Launched by torchrun (`dentpy train SPEC --nproc-per-node N` starts it for one machine;
docs/distributed.md shows several). Each process (rank) draws its own patches and
augmentations from seeds derived from (train.seed, rank), so a step sees
train.batch_size x world size samples; DDP averages the gradients, which makes a step the
same as one process with the whole global batch when the loss is a mean over samples.

The ranks share validation (dentpy.engine.validation: each predicts its share of the
cases, every rank scores all of them, so all take the same best-checkpoint and LR-plateau
decisions). Rank 0 alone writes the run folder (log, TensorBoard, checkpoints, summary) and
shows progress. Checkpoints hold every rank's sampler,
augmentation and RNG state, so a resume with the same number of processes continues each
rank's stream exactly.

Every function here is a no-op (or the identity) when the process was not launched with
WORLD_SIZE > 1: single-process training is unchanged and creates no process group.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from dentpy.errors import SpecError

if TYPE_CHECKING:
    import torch

    from dentpy.engine.trainer import Trainer
    from dentpy.spec import Spec

T = TypeVar("T")
# Ranks that finish their share of validation, or wait while rank 0 writes a checkpoint,
# sit in a collective; a long validation (many large CBCTs) must not trip the
# process-group timeout. Override in minutes with this variable.
TIMEOUT_ENV = "DENTPY_DIST_TIMEOUT_MINUTES"
DEFAULT_TIMEOUT_MINUTES = 60.0


def launched_world_size() -> int:
    """The number of processes torchrun started (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    """This process's rank as torchrun set it (0 when not launched by torchrun); usable
    before the process group exists."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def local_world_size() -> int:
    """Processes torchrun started on this machine (1 when not launched by torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def active() -> bool:
    """Whether this process is one of several in a process group."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if active() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if active() else 1


def position() -> tuple[int, int]:
    """(rank, world size): (0, 1) in one process."""
    return rank(), world_size()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper (`model` itself otherwise): to predict with, since
    the wrapper's forward takes part in collectives every rank must join."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def is_main() -> bool:
    """Rank 0: the one process that validates and writes the run folder."""
    return rank() == 0


def _timeout() -> timedelta:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        minutes = float(raw) if raw else DEFAULT_TIMEOUT_MINUTES
    except ValueError:
        raise SpecError(
            f"{TIMEOUT_ENV} is not a number",
            expected="minutes, e.g. 120",
            found=repr(raw),
            fix=f"set {TIMEOUT_ENV}=120 or unset it (default {DEFAULT_TIMEOUT_MINUTES:g})",
        ) from None
    return timedelta(minutes=minutes)


def join(spec: Spec) -> None:
    """Join the process group torchrun set up for training `spec`; does nothing when not
    launched with several processes, or when already joined."""
    if launched_world_size() <= 1 or active():
        return
    start(spec.constraints.device)


def start(device: str = "auto") -> None:
    """Join the process group torchrun set up: NCCL with one GPU per process when
    `device` (as constraints.device) resolves to CUDA, else gloo."""
    import torch
    import torch.distributed as dist

    from dentpy.engine.device import choose_device

    if launched_world_size() <= 1 or active():
        return
    cuda = choose_device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(local_rank())  # before NCCL starts: one GPU per process
    dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=_timeout())


def leave() -> None:
    import torch.distributed as dist

    if active():
        dist.destroy_process_group()


def end_process(code: int = 0) -> NoReturn:
    """End a process that was one of several, after `leave()`, skipping the interpreter's
    teardown: on the 2-core CPU the teardown of a gloo process aborted ("terminate called
    without an active exception", SIGABRT) in 2-3 of 16 two-process runs, after all its
    work was written, and torchrun then reported the whole run as failed. With this exit,
    0 of 36. Logging and the standard streams are flushed first; the caller has closed
    everything else it owns."""
    import logging
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _uses_cuda() -> bool:
    import torch.distributed as dist

    return dist.get_backend() == "nccl"


def _tensor_device() -> torch.device:
    import torch

    return torch.device("cuda", local_rank()) if _uses_cuda() else torch.device("cpu")


def device_for_rank(device: torch.device) -> torch.device:
    """The rank's own GPU (cuda:LOCAL_RANK) when distributed on CUDA, else `device`."""
    import torch

    if active() and device.type == "cuda":
        return torch.device("cuda", local_rank())
    return device


def barrier() -> None:
    import torch.distributed as dist

    if active():
        dist.barrier(device_ids=[local_rank()] if _uses_cuda() else None)


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. filling the preprocessing cache), then the others
    (who then find it filled). If rank 0 fails, torchrun stops the waiting ranks."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def rank_seed(seed: int) -> int:
    """A seed for this rank's own sample stream: `seed` itself on rank 0 (a single process
    draws exactly what it drew before), a well-separated seed from (seed, rank) elsewhere."""
    import numpy as np

    r = rank()
    return seed if r == 0 else int(np.random.SeedSequence([seed, r]).generate_state(1)[0])


def broadcast_weights(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers into `module` on every rank (e.g. a Mean Teacher's
    EMA copy, which DDP does not manage)."""
    import torch.distributed as dist

    if not active():
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)


def all_reduce_mean(value: float) -> float:
    """The mean of `value` over all ranks."""
    import torch
    import torch.distributed as dist

    if not active():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=_tensor_device())
    dist.all_reduce(tensor)
    return float(tensor.item()) / world_size()


def any_rank(flag: bool) -> bool:
    """True on every rank when it is True on at least one (e.g. the time budget is spent)."""
    import torch
    import torch.distributed as dist

    if not active():
        return flag
    tensor = torch.tensor([int(flag)], dtype=torch.int64, device=_tensor_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def broadcast_from_main(value: T) -> T:
    """Rank 0's `value` on every rank (any picklable object)."""
    import torch.distributed as dist

    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_all(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank."""
    import torch.distributed as dist

    if not active():
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def validated_on_main(
    validate: Callable[[torch.nn.Module], dict[str, float]],
) -> Callable[[torch.nn.Module], dict[str, float]]:
    """Validation on rank 0 only; every rank gets rank 0's scores, so all take the same
    best-checkpoint and LR-plateau decisions."""

    def run(network: torch.nn.Module) -> dict[str, float]:
        scores = validate(network) if is_main() else {}
        return broadcast_from_main(scores)

    return run


def prepare_trainer(trainer: Trainer) -> None:
    """Make `trainer` data-parallel: the model wrapped in DDP (weights broadcast from rank
    0 now, gradients averaged every step), the logged loss averaged over ranks. Validation
    is shared by the ranks when it is a ShardedValidation (every task's is), else run by
    rank 0 and broadcast. Checkpoints keep the plain module's weight names. No-op in one
    process."""
    from dentpy.engine.validation import ShardedValidation

    if not active():
        return
    module = trainer.model
    if trainer.export_model is None:
        trainer.export_model = lambda: module
    trainer.model = data_parallel(module)
    trainer.reduce_loss = all_reduce_mean
    if not isinstance(trainer.validate, ShardedValidation):
        trainer.validate = validated_on_main(trainer.validate)


def data_parallel(module: torch.nn.Module) -> torch.nn.Module:
    """`module` wrapped in DDP when this process is one of several (rank 0's weights are
    broadcast now, gradients averaged every backward); `module` itself otherwise."""
    import warnings

    from torch.nn.parallel import DistributedDataParallel

    if not active():
        return module
    # 1x1x1 kernels in channels_last_3d: their strides differ from the gradient's but the
    # bytes are laid out the same, so DDP's copy into its bucket is a plain (tiny) memcpy.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    on_gpu = next(module.parameters()).device.type == "cuda"
    return DistributedDataParallel(module, device_ids=[local_rank()] if on_gpu else None)


def under_torchrun() -> bool:
    """Whether torchrun (torch.distributed.run) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch(arguments: list[str], processes: int) -> int:
    """Run `dentpy ARGUMENTS` in `processes` processes on this machine under torchrun
    (`--standalone`: a free local port, no rendezvous server); its output streams through.
    Returns torchrun's exit code."""
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "dentpy.cli",
        *arguments,
    ]
    return subprocess.run(command, check=False).returncode
