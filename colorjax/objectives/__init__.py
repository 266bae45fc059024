"""Training families. `make_objective(config)` picks one from the model name.

Every objective subclasses `base.Objective`: `init(rng, batch, num_train_steps=None)`
(the optimizer comes with the step count), a pure `train_step(state, batch, rng)`, a pure
`predict_with(variables, gray_l, rng, sampling=False, hints=None)`, and from the base
`inference_variables(state)`, `predict(state, gray_l, rng, sampling=False, hints=None)` and
`downsample_factor` (what image_size must divide by).

Each family module (`regression`, `classification`, `adversarial`, `vae`, `diffusion`,
`zhang`) also defines `MODELS` (the model names it trains: `colorjax.config.registry`
reads them), `validate(config)` and `downsample_factor(config)`, which build nothing but
(at most) a Flax module, and `OBJECTIVE`, its Objective class. The Objective class declares
what the rest needs to know (`family`, `samples`, `hints`, `photo_io`, ...: `base.Objective`).
A family of your own is such a module anywhere, named by `config.model.objective`.
"""

from __future__ import annotations

from colorjax.config import registry


def objective_class(config) -> type:
    """The Objective class that trains `config.model` (what it declares, without building
    one where its module names the class)."""
    made = registry.family_module(config.model).OBJECTIVE
    return made if isinstance(made, type) else type(made(config))


def make_objective(config):
    """The objective that trains `config.model.name` (its config validated first)."""
    return registry.family_module(config.model).OBJECTIVE(config)
