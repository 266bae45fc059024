"""Training families. `make_objective(config)` picks one from the model name.

Every objective subclasses `base.Objective`: `init(rng, batch, num_train_steps=None)`
(the optimizer comes with the step count), a pure
`train_step(state, batch, rng)`, a pure `predict_with(variables, gray_l, rng, sampling=False)`,
and from the base `inference_variables(state)`, `predict(state, gray_l, rng, sampling=False)`
and `downsample_factor` (what image_size must divide by).

Each family module (`regression`, `adversarial`, `vae`, `diffusion`) also defines
`validate(config)` and `downsample_factor(config)`, which build nothing but (at most) a
Flax module, and `OBJECTIVE`, its Objective class. Which family a model name belongs to is
`colorjax.config.registry.MODELS`.
"""

from __future__ import annotations

import types

from colorjax.config import registry

# Model name -> training family: a read-only view of colorjax.config.registry.MODELS.
MODEL_FAMILIES = types.MappingProxyType({name: spec.family
                                         for name, spec in registry.MODELS.items()})


def make_objective(config):
    """The objective that trains `config.model.name` (its config validated first)."""
    return registry.family_module(config.model.name).OBJECTIVE(config)
