"""Regression colorizers (ResNet, UNet, fusion): predict ab from L with an MSE, L1 or
Huber loss.

`config.model.backbone` (unet, resnet): a pretrained ImageNet network (VGG16 or
EfficientNet-Lite0, `colorjax.models.backbone`) reads the gray image and its feature maps
feed the network (the UNet's decoder levels, the ResNet's head). Frozen (the default), its
weights live in `model_state["backbone"]` and its taps are computed once per step outside
the gradient; with `config.model.backbone_trainable` they are `params["backbone"]`, trained
with their own learning rate `config.model.backbone_learning_rate` (`optax.multi_transform`;
BatchNorm statistics stay fixed).
"""

from __future__ import annotations

import copy

import jax
import optax

from colorjax import checks, models, registry
from colorjax.models import build_regression_model
from colorjax.models.backbone import BACKBONES, backbone_taps, load_backbone
from colorjax.models.blocks import NORMS
from colorjax.objectives.base import (LOSSES, Objective, TrainState, apply_gradients,
                                      apply_in_precision, compute_dtype, init_ema,
                                      make_optimizer, pixel_loss)
from colorjax.objectives.frozen_backbone import FROZEN_COLLECTIONS, init_taps, split_frozen
from colorjax.objectives.rebalance import rebalancing_weights



def validate(config) -> None:
    """ConfigError naming the first wrong field this family reads (builds nothing)."""
    checks.choice(config, "model.name", registry.names("regression"))
    checks.choice(config, "loss", LOSSES)
    checks.number(config, "loss_rebalance", low=0.0, high=1.0, high_open=True, default=0.0,
                  note="(0 = off, 0.5 = Zhang et al.'s λ = 1/2)")
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
        checks.choice(config, "model.backbone", ("none",), default="none",
                      note="(fusion reads its own classifier)")
    elif checks.choice(config, "model.backbone", BACKBONES, default="none") != "none":
        checks.integer(config, "model.backbone_width", low=1, default=64)
        if checks.boolean(config, "model.backbone_trainable", default=False):
            checks.number(config, "model.backbone_learning_rate", low=0.0, default=1e-5)


def backbone_labels(params):
    """multi_transform labels: "backbone" for the backbone's weights, "frozen" for its other
    collections (BatchNorm statistics), "network" for the rest."""
    def label(path, _):
        keys = [getattr(k, "key", None) for k in path]
        if keys[0] != "backbone":
            return "network"
        return "backbone" if keys[1] == "params" else "frozen"
    return jax.tree_util.tree_map_with_path(label, params)


def split_optimizer(opt_config, num_train_steps: int, backbone_learning_rate: float):
    """`make_optimizer` for the network, the same with peak `backbone_learning_rate` for the
    backbone's weights (labels: `backbone_labels`), gradients clipped by their global norm
    over both first."""
    def variant(**fields):
        c = copy.deepcopy(opt_config)
        for k, v in fields.items():
            setattr(c, k, v)
        return make_optimizer(c, num_train_steps)

    tx = optax.multi_transform(
        {"network": variant(grad_clip_norm=0.0),
         "backbone": variant(grad_clip_norm=0.0, learning_rate=backbone_learning_rate),
         "frozen": optax.set_to_zero()}, backbone_labels)
    if opt_config.grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(opt_config.grad_clip_norm), tx)
    return tx


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
        self.loss_rebalance = float(checks.get(config, "loss_rebalance", default=0.0))
        self.ema_decay = float(config.ema_decay)
        self.dtype = compute_dtype(config)
        self.backbone = checks.get(config, "model.backbone", default="none")
        self.backbone_trainable = self.backbone != "none" and bool(
            checks.get(config, "model.backbone_trainable", default=False))
        self.backbone_learning_rate = float(
            checks.get(config, "model.backbone_learning_rate", default=1e-5))

    def _optimizer(self, num_train_steps):
        if num_train_steps is None:  # a state for inference or shapes
            return None
        if self.backbone_trainable:
            return split_optimizer(self.opt_config, num_train_steps,
                                   self.backbone_learning_rate)
        return make_optimizer(self.opt_config, num_train_steps)

    def init(self, rng, batch, num_train_steps=None):
        kwargs = {}
        if self.backbone != "none":
            weights = load_backbone(self.backbone)
            kwargs["taps"] = init_taps(self.backbone, weights, batch["l"])
        variables = self.model.init(rng, batch["l"], train=False, **kwargs)
        load_pretrained = getattr(self.model, "load_pretrained", None)
        if load_pretrained is not None:  # a frozen pretrained part (fusion's classifier)
            variables = load_pretrained(variables)
        variables = dict(variables)
        params = variables.pop("params")
        if self.backbone_trainable:
            params = {**params, "backbone": weights}
        elif self.backbone != "none":
            # Frozen: state, not params (no optimizer, EMA or weight decay on it).
            variables["backbone"] = weights
        return TrainState.create(params, dict(variables), self._optimizer(num_train_steps),
                                 init_ema(params, self.ema_decay))

    def _network(self, params, model_state, gray_l, taps=None):
        """(the network's variables, its `taps` keyword) from params and model_state in
        either layout: the backbone in `params["backbone"]` (trainable) or in
        `model_state["backbone"]` (frozen). `taps` given: already computed."""
        if self.backbone == "none":
            return {"params": params, **model_state}, {}
        rest = split_frozen(model_state)[0]
        if "backbone" in params:  # trainable: the gradient reaches its weights
            weights = {k: v if k == "params" else jax.lax.stop_gradient(v)
                       for k, v in params["backbone"].items()}
            params = {k: v for k, v in params.items() if k != "backbone"}
            if taps is None:
                taps = backbone_taps(self.backbone, weights, gray_l, trainable=True)
        elif taps is None:
            taps = backbone_taps(self.backbone, model_state["backbone"], gray_l)
        return {"params": params, **rest}, {"taps": taps}

    def train_step(self, state, batch, rng):
        del rng  # deterministic networks
        # Frozen collections are read, never written back (not even through a bfloat16
        # round trip): they come back bit for bit.
        mutable = [c for c in state.model_state if c not in FROZEN_COLLECTIONS]
        taps = None
        if self.backbone != "none" and not self.backbone_trainable:
            # The frozen backbone runs once, outside the gradient.
            taps = backbone_taps(self.backbone, state.model_state["backbone"], batch["l"])
        weights = None
        if self.loss_rebalance > 0:
            weights = rebalancing_weights(batch["ab"], self.loss_rebalance)

        def loss_fn(params):
            variables, kwargs = self._network(params, state.model_state, batch["l"], taps)
            pred, new_model_state = apply_in_precision(
                self.model, variables, batch["l"], train=True, mutable=mutable,
                dtype=self.dtype, **kwargs)
            return pixel_loss(self.loss_kind, pred, batch["ab"], weights=weights), new_model_state

        (loss, new_model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return apply_gradients(state, grads, self.ema_decay, loss,
                               model_state={**state.model_state, **new_model_state})

    def predict_with(self, variables, gray_l, rng, sampling: bool = False):
        """Pure prediction from `inference_variables` alone (used by exports too)."""
        del rng, sampling  # deterministic
        variables = dict(variables)
        params = variables.pop("params")
        variables, kwargs = self._network(params, variables, gray_l)
        return apply_in_precision(self.model, variables, gray_l, train=False,
                                  dtype=self.dtype, **kwargs)


OBJECTIVE = RegressionObjective
