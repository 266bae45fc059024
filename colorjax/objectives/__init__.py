"""Training families. `make_objective(config)` picks one from the model name.

Every objective subclasses `base.Objective`: `init(rng, batch, num_train_steps=None)`
(the optimizer comes with the step count), a pure
`train_step(state, batch, rng)`, a pure `predict_with(variables, gray_l, rng, sampling=False)`,
and from the base `inference_variables(state)`, `predict(state, gray_l, rng, sampling=False)`
and `downsample_factor` (what image_size must divide by).
"""

from __future__ import annotations

import importlib

# Model name -> training family; the loop never changes when a family is added.
MODEL_FAMILIES = {
    "resnet": "regression",
    "unet": "regression",
    "gan": "adversarial",
    "unetgan": "adversarial",
    "pix2pix_resnet": "adversarial",
    "wgan_gp": "adversarial",
    "basicvae": "vae",
    "unetvae": "vae",
    "unetddpm": "diffusion",
    "unetddim": "diffusion",
}

# Family -> (module, class). Imported lazily so a family's code loads only when used.
_FAMILY_CLASSES = {
    "regression": ("colorjax.objectives.regression", "RegressionObjective"),
    "adversarial": ("colorjax.objectives.adversarial", "AdversarialObjective"),
    "vae": ("colorjax.objectives.vae", "VAEObjective"),
    "diffusion": ("colorjax.objectives.diffusion", "DiffusionObjective"),
}


def make_objective(config):
    """The objective that trains `config.model.name`."""
    name = config.model.name
    if name not in MODEL_FAMILIES:
        raise ValueError(f"config.model.name={name!r} is unknown; allowed: {sorted(MODEL_FAMILIES)}")
    module, cls = _FAMILY_CLASSES[MODEL_FAMILIES[name]]
    return getattr(importlib.import_module(module), cls)(config)
