"""Regression colorizers (ResNet, UNet): predict ab from L with an MSE, L1 or Huber loss."""

from __future__ import annotations

import jax

from colorjax import checks, models, registry
from colorjax.models import build_regression_model
from colorjax.objectives.base import (LOSSES, Objective, TrainState, apply_gradients,
                                      apply_in_precision, compute_dtype, init_ema,
                                      optimizer_for, pixel_loss)

# Variable collections of frozen pretrained weights (colorjax/models/fusion.py's classifier).
FROZEN_COLLECTIONS = ("backbone",)


def validate(config) -> None:
    """ConfigError naming the first wrong field this family reads (builds nothing)."""
    from colorjax.models.blocks import NORMS

    checks.choice(config, "model.name", registry.names("regression"))
    checks.choice(config, "loss", LOSSES)
    checks.choice(config, "model.norm", NORMS)
    network = registry.spec(config.model.name).network
    if network == "resnet":
        checks.integer(config, "model.width", low=1)
    else:
        checks.sequence(config, "model.features", "integers", low=1, min_length=1)
    if network == "fusion":
        checks.integer(config, "model.fusion_width", low=1)
        # EfficientNet-Lite0 halves its input five times (stride 32).
        checks.integer(config, "model.embed_size", low=32)


def downsample_factor(config) -> int:
    """What image_size must be a multiple of, from the network alone."""
    return models.downsample_factor(build_regression_model(config.model))


class RegressionObjective(Objective):
    """ab = f(L), trained to minimise a per-pixel loss; `predict` is one forward pass."""

    def __init__(self, config):
        validate(config)
        self.model = build_regression_model(config.model)
        self.downsample_factor = models.downsample_factor(self.model)
        self.opt_config = config.optimizer
        self.loss_kind = config.loss
        self.ema_decay = float(config.ema_decay)
        self.dtype = compute_dtype(config)

    def init(self, rng, batch, num_train_steps=None):
        variables = self.model.init(rng, batch["l"], train=False)
        load_pretrained = getattr(self.model, "load_pretrained", None)
        if load_pretrained is not None:  # a frozen pretrained part (fusion's classifier)
            variables = load_pretrained(variables)
        variables = dict(variables)
        params = variables.pop("params")
        return TrainState.create(params, dict(variables),
                                 optimizer_for(self.opt_config, num_train_steps),
                                 init_ema(params, self.ema_decay))

    def train_step(self, state, batch, rng):
        del rng  # deterministic networks
        # Frozen collections are read, never written back (not even through a bfloat16
        # round trip): they come back bit for bit.
        mutable = [c for c in state.model_state if c not in FROZEN_COLLECTIONS]

        def loss_fn(params):
            pred, new_model_state = apply_in_precision(
                self.model, {"params": params, **state.model_state}, batch["l"], train=True,
                mutable=mutable, dtype=self.dtype)
            return pixel_loss(self.loss_kind, pred, batch["ab"]), new_model_state

        (loss, new_model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return apply_gradients(state, grads, self.ema_decay, loss,
                               model_state={**state.model_state, **new_model_state})

    def predict_with(self, variables, gray_l, rng, sampling: bool = False):
        """Pure prediction from `inference_variables` alone (used by exports too)."""
        del rng, sampling  # deterministic
        return apply_in_precision(self.model, variables, gray_l, train=False, dtype=self.dtype)


OBJECTIVE = RegressionObjective
