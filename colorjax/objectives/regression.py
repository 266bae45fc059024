"""Regression colorizers (ResNet, UNet): predict ab from L with an MSE, L1 or Huber loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from colorjax.models import build_regression_model, downsample_factor
from colorjax.objectives.base import (Objective, TrainState, apply_gradients, apply_in_precision,
                                      compute_dtype, init_ema, make_optimizer, pixel_loss)


class RegressionObjective(Objective):
    """ab = f(L), trained to minimise a per-pixel loss; `predict` is one forward pass."""

    def __init__(self, config, num_train_steps: int):
        self.model = build_regression_model(config.model)
        self.downsample_factor = downsample_factor(self.model)
        self.tx = make_optimizer(config.optimizer, num_train_steps)
        self.loss_kind = config.loss
        self.ema_decay = float(config.ema_decay)
        self.dtype = compute_dtype(config)

    def init(self, rng, batch):
        variables = self.model.init(rng, batch["l"], train=False)
        params = variables.pop("params")
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          model_state=dict(variables), opt_state=self.tx.init(params),
                          ema_params=init_ema(params, self.ema_decay))

    def train_step(self, state, batch, rng):
        del rng  # deterministic networks
        def loss_fn(params):
            pred, new_model_state = apply_in_precision(
                self.model, {"params": params, **state.model_state}, batch["l"], train=True,
                mutable=list(state.model_state), dtype=self.dtype)
            return pixel_loss(self.loss_kind, pred, batch["ab"]), new_model_state

        (loss, new_model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return apply_gradients(state, grads, self.tx, self.ema_decay, loss,
                               model_state=dict(new_model_state))

    def predict_with(self, variables, gray_l, rng, sampling: bool = False):
        """Pure prediction from `inference_variables` alone (used by exports too)."""
        del rng, sampling  # deterministic
        return apply_in_precision(self.model, variables, gray_l, train=False, dtype=self.dtype)
