"""The network as the task's own builder makes it, run once on torch's "meta" device to
learn its input/output shapes and parameter count (no memory, no arithmetic)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dentpy.describe.facts import Facts, class_count, classification_loss, input_size_2d

if TYPE_CHECKING:
    from dentpy.spec import Spec


@dataclass(frozen=True)
class Network:
    name: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int | str, ...]
    parameters: int
    channel_note: str


def _network_task(spec: Spec, n_classes: int, facts: Facts) -> Any:
    """The task object that builds the network (placeholder class names when unknown)."""
    names = tuple(f"class_{i}" for i in range(n_classes))
    task = spec.objective.task
    if task == "segmentation":
        from dentpy.tasks.segmentation import SegmentationTask

        return SegmentationTask(names, tuple((i + 1,) for i in range(n_classes)))
    if task == "classification":
        from dentpy.tasks.classification import ClassificationTask

        return ClassificationTask(
            names,
            spec.objective.output,
            None,
            "none",
            (1,) * n_classes,
            classification_loss(spec, facts),
        )
    from dentpy.tasks.detection import DetectionTask

    return DetectionTask(names)


def build_network(spec: Spec, facts: Facts) -> Network:
    import torch

    task = spec.objective.task
    known = class_count(spec, facts)
    # Unknown class count: build with a stand-in and show the channel axis as a symbol.
    n_classes = known if known is not None else (3 if spec.objective.output == "ordinal" else 2)
    builder = _network_task(spec, n_classes, facts)
    if task == "segmentation":
        in_shape: tuple[int, ...] = (spec.train.batch_size, 1, *spec.train.patch_size)
    else:
        in_shape = (spec.train.batch_size, 1, *input_size_2d(spec, facts))
    with torch.device("meta"):
        model = builder.build_model(spec)
    model.eval()
    with torch.no_grad():
        out = tuple(int(n) for n in model(torch.zeros(in_shape, device="meta")).shape)
    parameters = sum(int(p.numel()) for p in model.parameters())
    symbol = {"segmentation": "C+1", "classification": "C", "detection": "C+4"}[task]
    if task == "classification" and builder.cumulative:
        symbol = "C-1"
    shown: tuple[int | str, ...] = out if known is not None else (out[0], symbol, *out[2:])
    return Network(spec.model.name, in_shape, shown, parameters, _channel_note(builder, known))


def _channel_note(builder: Any, known: int | None) -> str:
    """What the output channels are, in numbers when the classes are known."""
    n = "C" if known is None else str(known)
    if hasattr(builder, "out_channels"):  # segmentation
        total = "C+1" if known is None else str(known + 1)
        return f"{total} channels = background + {n} class{'' if n == '1' else 'es'}"
    if hasattr(builder, "cumulative"):  # classification
        if builder.cumulative:
            total = "C-1" if known is None else str(known - 1)
            return f"{total} cumulative logits P(grade > k), {n} grades"
        return f"{n} logits, one per class"
    total = "C+4" if known is None else str(known + 4)
    return f"{total} channels = {n} class heatmaps + 2 log-sizes + 2 offsets"
