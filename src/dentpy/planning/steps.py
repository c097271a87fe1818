"""Real training steps of a planned configuration on random data: what timing and the
memory check run. They mirror dentpy.engine.trainer (the spec's batch augmentation on
the device, channels-last input, autocast, fp32 loss, gradient clipping, the spec's
optimizer); only cropping patches from the cache is left out."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dentpy.engine.device import memory_format_3d

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Spec


@dataclass
class RandomStepParts:
    """What one training step of a planned configuration needs, on random data."""

    model: torch.nn.Module
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    batch: torch.Tensor
    labels: torch.Tensor
    augment: Callable[..., tuple[torch.Tensor, torch.Tensor, object]]


def random_step_parts(spec: Spec, out_channels: int, device: torch.device) -> RandomStepParts:
    """The spec's network, loss and optimizer, a random batch of its patch and batch size,
    and its batch augmentation on the device (shared with benchmarks/graph_step.py)."""
    import torch

    from dentpy.augment import BatchAugment
    from dentpy.optim import build_optimizer
    from dentpy.tasks.segmentation import SegmentationTask

    names = tuple(f"class{i}" for i in range(1, out_channels))
    task = SegmentationTask(names, tuple((i,) for i in range(1, out_channels)))
    generator = torch.Generator().manual_seed(spec.train.seed)
    model = task.build_model(spec).to(device)
    shape = (spec.train.batch_size, 1, *spec.train.patch_size)
    batch = torch.randn(shape, generator=generator).to(device)
    labels = torch.randint(0, out_channels, shape, generator=generator, dtype=torch.uint8)
    return RandomStepParts(
        model=model,
        loss_fn=task.build_loss(spec),
        optimizer=build_optimizer(model.parameters(), spec.optimizer),
        batch=batch,
        labels=labels.to(device),
        # Augmentation runs inside every training step, as in the trainer.
        augment=BatchAugment(spec.augment, None, device, seed=spec.train.seed),
    )


def training_steps(
    spec: Spec,
    out_channels: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    steps: int,
    warmup: int = 1,
    channels_last: bool | None = None,
    compile_model: bool = False,
) -> list[float]:
    """Seconds of each of `steps` training steps, after `warmup` untimed ones.

    `channels_last` (None: the device's layout, as the trainer uses) and `compile_model`
    are what benchmarks/gpu_peak.py compares; the trainer runs in eager mode."""
    import contextlib

    import torch

    parts = random_step_parts(spec, out_channels, device)
    loss_fn, optimizer, augment = parts.loss_fn, parts.optimizer, parts.augment
    batch, labels = parts.batch, parts.labels
    if channels_last is None:
        layout = memory_format_3d(device)
    else:
        layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    model = parts.model.to(memory_format=layout)  # type: ignore[call-overload]
    network = torch.compile(model) if compile_model else model
    autocast = (
        (lambda: torch.autocast(device.type, dtype=amp_dtype))
        if amp_dtype
        else contextlib.nullcontext
    )
    seconds = []
    model.train()
    for index in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        image, label, _ = augment(batch, labels)
        image = image.contiguous(memory_format=layout)
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            logits = network(image)
        loss = loss_fn(logits.float(), label)
        loss.backward()
        if spec.optimizer.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec.optimizer.grad_clip_norm)
        optimizer.step()
        float(loss.detach())  # waits for the device, as the trainer's loss log does
        if index >= warmup:
            seconds.append(time.perf_counter() - started)
    return seconds
