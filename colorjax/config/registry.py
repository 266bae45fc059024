"""The one table of model names: `config.model.name` -> its training family and network.

The bottom layer: it imports no objective and no model at module level, so everything
(objectives, models, config checks, exports) can read it without cycles.
"""

from __future__ import annotations

import dataclasses
import importlib
import types

from colorjax.config.checks import ConfigError


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a model name means.

    family: the training family, `colorjax.objectives.<family>`.
    network: the network the family builds for this name: the regression network, the
        GAN generator used when `config.model.generator` is not set, the VAE decoder, the
        diffusion UNet.
    sampler: the sampler used when `config.sampler.name` is not set (diffusion only).
    module: the objective module, `colorjax.objectives.<module>`, where it is not the
        family's own (a published network that trains as its family does, with its own
        network and pre/post-processing: `zhang`).
    """

    family: str
    network: str
    sampler: str | None = None
    module: str | None = None


MODELS = types.MappingProxyType({
    "resnet": ModelSpec("regression", "resnet"),
    "unet": ModelSpec("regression", "unet"),
    "fusion": ModelSpec("regression", "fusion"),
    "gan": ModelSpec("adversarial", "encoder_decoder"),
    "unetgan": ModelSpec("adversarial", "unet"),
    "pix2pix_resnet": ModelSpec("adversarial", "resnet_unet"),
    "wgan_gp": ModelSpec("adversarial", "residual_unet"),
    "basicvae": ModelSpec("vae", "decoder"),
    "unetvae": ModelSpec("vae", "unet_decoder"),
    "unetddpm": ModelSpec("diffusion", "diffusion_unet", sampler="ddpm"),
    "unetddim": ModelSpec("diffusion", "diffusion_unet", sampler="ddim"),
    # The network is config.model.network's (unet by default), with one logit per ab bin.
    "colorful": ModelSpec("classification", "unet"),
    # Zhang et al.'s published networks (colorjax.convert converts their released weights).
    "eccv16": ModelSpec("classification", "eccv16", module="zhang"),
    "siggraph17": ModelSpec("regression", "siggraph17", module="zhang"),
})

FAMILIES = ("regression", "adversarial", "vae", "diffusion", "classification")


def spec(name: str) -> ModelSpec:
    """The ModelSpec of a model name; a ConfigError listing the known names otherwise."""
    if name not in MODELS:
        raise ConfigError("config.model.name", f"{name!r} is not allowed", MODELS)
    return MODELS[name]


def names(family: str | None = None) -> tuple[str, ...]:
    """The model names (of one family), sorted."""
    return tuple(sorted(n for n, s in MODELS.items() if family in (None, s.family)))


def family_module(name: str) -> types.ModuleType:
    """`colorjax.objectives.<family>` of a model name (or its spec's `module`), imported on
    first use. Each defines `validate(config)`, `downsample_factor(config)` and `OBJECTIVE`,
    its Objective class (or a function of the config that builds one)."""
    s = spec(name)
    return importlib.import_module(f"colorjax.objectives.{s.module or s.family}")
