"""Diffusion colorizer, DDIM sampling (Song et al. 2021; 50 steps, η = 0).

The same network, trained the same way, as `configs/unetddpm.py` ("the model is the same"):
only the sampler differs, so a unetddpm checkpoint can be evaluated with this config.
"""

from colorjax.presets import unetddpm

VARIANTS = unetddpm.VARIANTS  # the same network, trained the same way


def get_config(variant: str = ""):
    c = unetddpm.get_config(variant)
    c.model.name = "unetddim"
    c.sampler.name = "ddim"
    c.sampler.steps = 50
    c.sampler.eta = 0.0
    return c
