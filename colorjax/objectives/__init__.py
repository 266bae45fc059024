"""Training families. `make_objective(config, num_train_steps)` picks one from the model name."""

from __future__ import annotations

# Model name -> training family. Later families register here; the loop never changes.
MODEL_FAMILIES = {
    "resnet": "regression",
    "unet": "regression",
}


def make_objective(config, num_train_steps: int):
    """The objective that trains `config.model.name`."""
    name = config.model.name
    family = MODEL_FAMILIES.get(name)
    if family == "regression":
        from colorjax.objectives.regression import RegressionObjective
        return RegressionObjective(config, num_train_steps)
    raise ValueError(f"config.model.name={name!r} is unknown; allowed: {sorted(MODEL_FAMILIES)}")
