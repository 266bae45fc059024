"""Colorizer networks (Flax Linen). `build_model` maps `config.model` to a module."""

from __future__ import annotations

from colorjax.models.resnet import ResNetColorizer
from colorjax.models.unet import UNet


def build_regression_model(model_config):
    """The L -> ab network of the regression family (also the GAN generators' base)."""
    name = model_config.name
    if name == "resnet":
        return ResNetColorizer(width=model_config.width, norm=model_config.norm)
    if name == "unet":
        return UNet(features=tuple(model_config.features), norm=model_config.norm)
    raise ValueError(f"config.model.name={name!r} is not a regression model")


def downsample_factor(model) -> int:
    """How many times the network halves the image: image_size must be a multiple of it."""
    return int(getattr(model, "downsample_factor", 1))
