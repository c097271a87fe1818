"""dentpy's 3D training step replayed as one CUDA graph: how much of an H100 step is the
CPU launching kernels? (A gpu_peak.py variant; CUDA only.)

The H100 session of 2026-11-27 measured 17.9 ms per bf16 step for the planned UNet
(32-320, 144x112x80, batch 2), 1.2% of the bf16 peak. The host's share of such a step
can be bounded on a CPU: the same layers with 2 channels each at a 16x16x32 patch (the
arithmetic small, the ~4000 aten calls per step the same) take 11.5-13.3 ms per step
(`gpu_peak.py --configs unet:2,2,2,2,2:16x16x32:1`, docs/performance.md). If launching
is the limit on the GPU, replaying the captured step removes it.

Captured: forward under autocast, the fp32 loss, backward, gradient clipping and the
optimizer step (the optimizer made `capturable`).
Left outside the graph, as eager work: the batch augmentation (its random draws are CPU
generator calls) and copying its result into the graph's static input.

Whole-step capture follows PyTorch's documented recipe (warm-up on a side stream, grads
set to None before capture so backward allocates them in the graph's pool, replay).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Spec


def graphed_training_steps(
    spec: Spec,
    out_channels: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    steps: int,
    warmup: int = 3,
) -> list[float]:
    """Seconds of each of `steps` replayed training steps (augmentation included), after
    `warmup` eager steps on a side stream and one capture."""
    import torch

    from dentpy.planning.steps import random_step_parts

    if device.type != "cuda":
        raise RuntimeError("CUDA graphs need a CUDA device")
    parts = random_step_parts(spec, out_channels, device)  # channels-first: CUDA's winner
    model, loss_fn, optimizer = parts.model.train(), parts.loss_fn, parts.optimizer
    augment, batch, labels = parts.augment, parts.batch, parts.labels
    for group in optimizer.param_groups:
        group["capturable"] = True  # step counts on the device: no host sync in step()
    image, label, _ = augment(batch, labels)
    static_image, static_label = image.clone(), label.clone()

    def step() -> torch.Tensor:
        # cache_enabled=False: autocast's weight-cast cache must not outlive the capture.
        with torch.autocast(
            "cuda", dtype=amp_dtype, enabled=amp_dtype is not None, cache_enabled=False
        ):
            logits = model(static_image)
        loss = loss_fn(logits.float(), static_label)
        loss.backward()
        if spec.optimizer.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec.optimizer.grad_clip_norm)
        optimizer.step()
        return loss.detach()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            optimizer.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        static_loss = step()

    seconds = []
    for _ in range(steps):
        torch.cuda.synchronize()
        started = time.perf_counter()
        image, label, _ = augment(batch, labels)
        static_image.copy_(image)
        static_label.copy_(label)
        graph.replay()
        float(static_loss)  # waits for the device, as the trainer's loss log does
        seconds.append(time.perf_counter() - started)
    return seconds
