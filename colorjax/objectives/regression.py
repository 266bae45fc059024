"""Regression colorizers (ResNet, UNet): predict ab from L with an MSE, L1 or Huber loss."""

from __future__ import annotations

import jax

from colorjax.models import build_regression_model, downsample_factor
from colorjax.objectives.base import (Objective, TrainState, apply_gradients, apply_in_precision,
                                      compute_dtype, init_ema, optimizer_for, pixel_loss)


class RegressionObjective(Objective):
    """ab = f(L), trained to minimise a per-pixel loss; `predict` is one forward pass."""

    def __init__(self, config):
        self.model = build_regression_model(config.model)
        self.downsample_factor = downsample_factor(self.model)
        self.opt_config = config.optimizer
        self.loss_kind = config.loss
        self.ema_decay = float(config.ema_decay)
        self.dtype = compute_dtype(config)

    def init(self, rng, batch, num_train_steps=None):
        variables = self.model.init(rng, batch["l"], train=False)
        params = variables.pop("params")
        return TrainState.create(params, dict(variables),
                                 optimizer_for(self.opt_config, num_train_steps),
                                 init_ema(params, self.ema_decay))

    def train_step(self, state, batch, rng):
        del rng  # deterministic networks
        def loss_fn(params):
            pred, new_model_state = apply_in_precision(
                self.model, {"params": params, **state.model_state}, batch["l"], train=True,
                mutable=list(state.model_state), dtype=self.dtype)
            return pixel_loss(self.loss_kind, pred, batch["ab"]), new_model_state

        (loss, new_model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return apply_gradients(state, grads, self.ema_decay, loss,
                               model_state=dict(new_model_state))

    def predict_with(self, variables, gray_l, rng, sampling: bool = False):
        """Pure prediction from `inference_variables` alone (used by exports too)."""
        del rng, sampling  # deterministic
        return apply_in_precision(self.model, variables, gray_l, train=False, dtype=self.dtype)
