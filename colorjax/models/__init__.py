"""Colorizer networks (Flax Linen). `build_regression_model` maps `config.model` to a module."""

from __future__ import annotations

from colorjax.config import registry
from colorjax.config.checks import ConfigError
from colorjax.models.backbone import projected_width
from colorjax.models.fusion import FusionColorizer
from colorjax.models.resnet import ResNetColorizer
from colorjax.models.unet import UNet


def build_regression_model(model_config):
    """The L -> ab network of the regression family (also the GAN generators' base): the
    registry's network of `config.model.name`."""
    spec = registry.spec(model_config)
    if spec.family != "regression":
        raise ConfigError("config.model.name", f"{model_config.name!r} is not a regression "
                          "model", str(list(registry.names("regression"))))
    # Width of the pretrained backbone's projected taps (colorjax.models.backbone); 0: none.
    backbone_width = projected_width(model_config)
    # The output conv starts at zero (an untrained network predicts gray); unet, resnet.
    zero_output = bool(model_config.get("zero_output", False))
    if spec.network == "resnet":
        return ResNetColorizer(width=model_config.width, norm=model_config.norm,
                               backbone_width=backbone_width, zero_output=zero_output)
    if spec.network == "fusion":
        return FusionColorizer(features=tuple(model_config.features), norm=model_config.norm,
                               fusion_width=model_config.fusion_width,
                               embed_size=model_config.embed_size,
                               fusion_taps=tuple(model_config.get("fusion_taps", ())),
                               tap_width=model_config.get("fusion_tap_width", 32))
    return UNet(features=tuple(model_config.features), norm=model_config.norm,
                backbone_width=backbone_width, zero_output=zero_output)


def downsample_factor(model) -> int:
    """How many times the network halves the image: image_size must be a multiple of it."""
    return int(getattr(model, "downsample_factor", 1))
