"""Registry of networks. Each factory takes (in_channels, out_channels, spatial_dims, spec
model section) and returns a torch module producing logits (N, C_out, *spatial)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dentpy.registry import Registry

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Model

ModelFactory = Callable[[int, int, int, "Model"], "torch.nn.Module"]
MODELS: Registry[ModelFactory] = Registry("model")


@MODELS.register("unet", help="MONAI residual UNet (strided convs, instance norm)")
def _unet(in_channels: int, out_channels: int, spatial_dims: int, cfg: Model) -> torch.nn.Module:
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=tuple(cfg.channels),
        strides=(2,) * (len(cfg.channels) - 1),
        num_res_units=cfg.num_res_units,
        dropout=cfg.dropout,
        norm="instance",
    )


@MODELS.register("basic_unet", help="MONAI BasicUNet (two convs per level, max-pool)")
def _basic_unet(
    in_channels: int, out_channels: int, spatial_dims: int, cfg: Model
) -> torch.nn.Module:
    from monai.networks.nets import BasicUNet

    features = [*cfg.channels[:5], *([cfg.channels[-1]] * max(0, 5 - len(cfg.channels)))]
    features.append(cfg.channels[0])
    return BasicUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        features=tuple(features[:6]),
        dropout=cfg.dropout,
    )


@MODELS.register("segresnet", help="MONAI SegResNet (residual encoder, light decoder)")
def _segresnet(
    in_channels: int, out_channels: int, spatial_dims: int, cfg: Model
) -> torch.nn.Module:
    from monai.networks.nets import SegResNet

    return SegResNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        init_filters=cfg.channels[0],
        blocks_down=tuple([1] + [2] * (len(cfg.channels) - 1)),
        blocks_up=tuple([1] * (len(cfg.channels) - 1)),
        dropout_prob=cfg.dropout or None,
    )


def downsampling_factor(cfg: Model) -> int:
    """How many times the network halves its input: patches must divide by this."""
    if cfg.name == "basic_unet":
        return 16  # BasicUNet always has four pooling levels
    return int(2 ** (len(cfg.channels) - 1))


def build_model(cfg: Model, in_channels: int, out_channels: int, spatial_dims: int = 3):
    """Build the network a spec names (raises SpecError with a suggestion if unknown).

    "auto" (a `Model` section used outside a resolved Spec) means the default, unet."""
    name = "unet" if cfg.name == "auto" else cfg.name
    return MODELS.get(name)(in_channels, out_channels, spatial_dims, cfg)
