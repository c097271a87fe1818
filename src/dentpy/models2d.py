"""Registry of 2D image classifiers: (N, 1, H, W) float images -> (N, n_outputs) logits.

Every network is built from MONAI (or plain torch) with random initial weights: nothing is
downloaded (no `pretrained=True`) and torchvision is never imported, so a run needs no
network access and its weights depend only on the seed. Radiographs are single-channel, so
every stem takes one input channel instead of replicating gray into RGB.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

from dentpy.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

ClassifierFactory = Callable[[int, float], "torch.nn.Module"]
CLASSIFIERS: Registry[ClassifierFactory] = Registry("classification model")


@cache
def _global_mean_pool_class() -> type[nn.Module]:
    """Defined lazily so importing the registry (e.g. for `--help`) does not import torch."""
    from torch import nn

    class GlobalMeanPool(nn.Module):
        """Global average pooling as `x.mean((2, 3), keepdim=True)`.

        Same output as `nn.AdaptiveAvgPool2d(1)`, but its backward is a plain broadcast:
        the CUDA backward of adaptive average pooling has no deterministic kernel, so with
        it `constraints.deterministic=true` would stop at the first training step on a GPU.
        """

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3), keepdim=True)

    return GlobalMeanPool


def global_mean_pool() -> nn.Module:
    return _global_mean_pool_class()()


def deterministic_pooling(model: nn.Module) -> nn.Module:
    """Replace every global `AdaptiveAvgPool2d` (head and squeeze-excitation) in place."""
    from torch import nn

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.AdaptiveAvgPool2d) and child.output_size in (1, (1, 1)):
                setattr(parent, name, global_mean_pool())
    return model


def _with_dropout_head(model: torch.nn.Module, dropout: float) -> torch.nn.Module:
    """MONAI's ResNet has no dropout option: put one in front of its final linear layer."""
    import torch

    if dropout > 0:
        fc = model.get_submodule("fc")
        model.fc = torch.nn.Sequential(torch.nn.Dropout(dropout), fc)
    return model


@CLASSIFIERS.register("resnet18", help="MONAI ResNet-18, 2D, 1 input channel (11.2M params)")
def _resnet18(n_outputs: int, dropout: float) -> torch.nn.Module:
    from monai.networks.nets import resnet18

    model = resnet18(pretrained=False, spatial_dims=2, n_input_channels=1, num_classes=n_outputs)
    return _with_dropout_head(model, dropout)


@CLASSIFIERS.register("resnet34", help="MONAI ResNet-34, 2D, 1 input channel (21.3M params)")
def _resnet34(n_outputs: int, dropout: float) -> torch.nn.Module:
    from monai.networks.nets import resnet34

    model = resnet34(pretrained=False, spatial_dims=2, n_input_channels=1, num_classes=n_outputs)
    return _with_dropout_head(model, dropout)


@CLASSIFIERS.register("densenet121", help="MONAI DenseNet-121, 2D, 1 input channel (7.0M params)")
def _densenet121(n_outputs: int, dropout: float) -> torch.nn.Module:
    from monai.networks.nets import DenseNet121

    return DenseNet121(
        spatial_dims=2,
        in_channels=1,
        out_channels=n_outputs,
        pretrained=False,
        dropout_prob=dropout,
    )


@CLASSIFIERS.register(
    "efficientnet_b0",
    help="MONAI EfficientNet-B0, 2D, 1 input channel (4.0M params; its own dropout 0.2)",
)
def _efficientnet_b0(n_outputs: int, dropout: float) -> torch.nn.Module:
    from monai.networks.nets import EfficientNetBN

    # EfficientNet's head dropout is fixed by the architecture's coefficients (0.2 for b0);
    # `model.dropout` is added in front of it only when asked for.
    model = EfficientNetBN(
        "efficientnet-b0",
        pretrained=False,
        progress=False,
        spatial_dims=2,
        in_channels=1,
        num_classes=n_outputs,
    )
    if dropout > 0:
        import torch

        model._fc = torch.nn.Sequential(torch.nn.Dropout(dropout), model._fc)  # type: ignore[assignment]
    return model


_TINY_CHANNELS = (16, 32, 48, 64)


@CLASSIFIERS.register(
    "tiny_cnn", help="4-block conv net (~48k params) for tests and CPU-budget runs"
)
def _tiny_cnn(n_outputs: int, dropout: float) -> torch.nn.Module:
    """Four conv-GroupNorm-ReLU blocks (the first three halve the image), global average
    pooling and a linear head. GroupNorm, not BatchNorm, so batches of 2 train the same as
    batches of 64 and evaluation needs no running statistics."""
    import torch
    from torch import nn

    layers: list[nn.Module] = []
    previous = 1
    for index, width in enumerate(_TINY_CHANNELS):
        layers += [
            nn.Conv2d(previous, width, kernel_size=3, padding=1, bias=False),
            nn.GroupNorm(8, width),
            nn.ReLU(inplace=True),
        ]
        if index < len(_TINY_CHANNELS) - 1:
            layers.append(nn.MaxPool2d(2))
        previous = width
    layers += [
        global_mean_pool(),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(previous, n_outputs),
    ]
    return torch.nn.Sequential(*layers)


def build_classifier(name: str, n_outputs: int, dropout: float = 0.0) -> torch.nn.Module:
    """Build the classifier a spec names (SpecError with a suggestion if unknown, e.g. a
    segmentation network such as 'unet')."""
    return deterministic_pooling(CLASSIFIERS.get(name)(n_outputs, dropout))


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters, for reports and for choosing a model that fits the data."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
