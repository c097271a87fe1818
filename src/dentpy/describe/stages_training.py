"""The network stage (architecture, parameters, tensor shapes) and the training stage
(loss, optimizer, schedule, checkpoint selection)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dentpy.describe.facts import Facts, classification_loss
from dentpy.describe.formatting import number, tuple_text
from dentpy.describe.model import Stage
from dentpy.describe.network import Network

if TYPE_CHECKING:
    from dentpy.spec import Spec


def model_stage(spec: Spec, network: Network) -> Stage:
    m = spec.model
    task = spec.objective.task
    details: list[str] = []
    if task == "segmentation":
        details.append(f"{m.name} 3D, channels {list(m.channels)}")
        if m.name == "unet":
            details.append(f"{m.num_res_units} residual unit(s) per level")
    elif task == "detection":
        from dentpy.tasks.detection import STRIDE

        details.append(f"{m.name} (anchor-free), base width {m.channels[0]}")
        details.append(f"output grid: 1/{STRIDE} of the input")
    else:
        details.append(f"{m.name} 2D classifier")
    details.append(f"{network.parameters / 1e6:.2f} M parameters")
    if m.dropout:
        details.append(f"dropout {number(m.dropout)}")
    if m.pretrained:
        details.append("starts from a pretrained encoder")
    details.append(network.channel_note)
    shape = f"{tuple_text(network.in_shape)} → {tuple_text(network.out_shape)}"
    return Stage("model", f"Network: {m.name}", tuple(details), shape)


def training_stage(spec: Spec, facts: Facts) -> Stage:
    task = spec.objective.task
    loss = classification_loss(spec, facts) if task == "classification" else spec.loss.name
    o, s, t = spec.optimizer, spec.schedule, spec.train
    lr = o.lr if o.lr == "auto" else f"{o.lr:g}"
    details = [
        f"loss: {loss}",
        f"{o.name}, lr {lr}, weight decay {o.weight_decay:g}",
        f"{s.name} schedule, {s.warmup_iterations} warm-up its",
        f"{t.iterations} iterations, validate every {t.validate_every}",
        f"best checkpoint by {spec.metrics.select_by}",
    ]
    if spec.constraints.time_budget_minutes:
        details.append(f"time budget {number(spec.constraints.time_budget_minutes)} min")
    return Stage("training", "Training", tuple(details), "scalar loss", training_only=True)
