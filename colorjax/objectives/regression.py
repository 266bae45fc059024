"""Regression colorizers (ResNet, UNet, fusion): predict ab from L with an MSE, L1 or
Huber loss.

`config.model.backbone` (unet, resnet): a pretrained ImageNet network (VGG16 or
EfficientNet-Lite0, `colorjax.models.backbone`) reads the gray image and its feature maps
feed the network (the UNet's decoder levels, the ResNet's head). Frozen (the default), its
weights live in `model_state["backbone"]` and its taps are computed once per step outside
the gradient; with `config.model.backbone_trainable` they are `params["backbone"]`, trained
with their own learning rate `config.model.backbone_learning_rate` (`optax.multi_transform`;
BatchNorm statistics stay fixed).

`config.loss_terms` (`colorjax.objectives.loss_terms`; off unless a config sets them): a
VGG16 perceptual term, DDColor's colourfulness term and a GAN term with a PatchGAN
discriminator in the state, beside the per-pixel loss; the presets of the published
DDColor and DeOldify turn on their authors' terms.
"""

from __future__ import annotations

import jax

from colorjax import models
from colorjax.config import checks
from colorjax.config import registry
from colorjax.config.checks import ConfigError
from colorjax.config.registry import ModelSpec
from colorjax.models import build_regression_model
from colorjax.models.backbone import backbone_taps, load_backbone
from colorjax.models.blocks import NORMS
from colorjax.models.pretrained import load_params
from colorjax.objectives import loss_terms
from colorjax.objectives.base import (LOSSES, Objective, TrainState, apply_gradients,
                                      apply_in_precision, check_network_size, init_ema,
                                      init_variables, is_finite, pixel_loss)
# backbone_labels and split_optimizer are re-exported (classification imports them here).
from colorjax.objectives.frozen_backbone import (FROZEN_COLLECTIONS, backbone_labels,
                                                 backbone_optimizer, check_backbone,
                                                 init_taps, network_variables, place_weights,
                                                 split_optimizer)
from colorjax.objectives.rebalance import rebalancing_weights

__all__ = ["OBJECTIVE", "RegressionObjective", "backbone_labels", "downsample_factor",
           "split_optimizer", "validate"]


def validate(config) -> None:
    """ConfigError naming the first wrong field this family reads (builds nothing)."""
    checks.choice(config, "model.name", registry.names("regression"))
    checks.choice(config, "loss", LOSSES)
    checks.number(config, "loss_rebalance", low=0.0, high=1.0, high_open=True, default=0.0,
                  note="(0 = off, 0.5 = Zhang et al.'s λ = 1/2)")
    checks.choice(config, "model.norm", NORMS)
    loss_terms.check(config)
    network = registry.spec(config.model).network
    if network == "fusion":  # its output layer is the paper's
        checks.choice(config, "model.zero_output", (False,), default=False,
                      note="(fusion keeps the paper's output layer)")
    else:
        checks.boolean(config, "model.zero_output", default=False)
    check_network_size(config, network)
    if network == "fusion":
        checks.integer(config, "model.fusion_width", low=1)
        # EfficientNet-Lite0 halves its input five times (stride 32).
        checks.integer(config, "model.embed_size", low=32)
        # Classifier taps 0-4 (strides 2-32) fused beside the embedding; () = the paper's.
        checks.sequence(config, "model.fusion_taps", "integers", low=0, high=4, default=())
        checks.integer(config, "model.fusion_tap_width", low=1, default=32)
        checks.choice(config, "model.backbone", ("none",), default="none",
                      note="(fusion reads its own classifier)")
    else:
        check_backbone(config)


def check_published_fields(config, name: str, reads: str) -> None:
    """The fields a converted published network reads alike (DDColor's, DeOldify's): its
    BatchNorm's mode, no backbone of colorjax's (`reads`: what it reads the image through),
    the regression loss, and no hints (their networks read the gray image alone)."""
    checks.boolean(config, "model.freeze_norm",
                   note="(True: BatchNorm keeps its running statistics in training)")
    checks.choice(config, "model.backbone", ("none",), default="none",
                  note=f"({name} reads the image through {reads})")
    checks.choice(config, "loss", LOSSES)
    checks.number(config, "loss_rebalance", low=0.0, high=1.0, high_open=True, default=0.0,
                  note="(0 = off)")
    loss_terms.check(config)
    if checks.boolean(config, "model.hints", default=False):
        raise ConfigError("config.model.hints", f"True is not allowed for {name}, whose "
                          "network reads the gray image alone", "False")


def downsample_factor(config) -> int:
    """What image_size must be a multiple of, from the network alone."""
    return models.downsample_factor(build_regression_model(config.model))


class RegressionObjective(Objective):
    """ab = f(L), trained to minimise a per-pixel loss (and the `loss_terms` a config turns
    on); `predict` is one forward pass."""

    terms = loss_terms.DEFAULTS  # the per-pixel loss alone (classification's logits too)
    critic = None  # the GAN term's discriminator

    def __init__(self, config):
        validate(config)
        self.model = build_regression_model(config.model)
        self.downsample_factor = models.downsample_factor(self.model)
        self.read_shared_fields(config)
        self.read_loss_fields(config)

    def read_loss_fields(self, config) -> None:
        """`config.loss`, `loss_rebalance` and `loss_terms` (validated), and the GAN term's
        discriminator where it is on (after `read_shared_fields`: it computes in
        `self.dtype`)."""
        self.loss_kind = config.loss
        self.loss_rebalance = float(checks.get(config, "loss_rebalance", default=0.0))
        self.terms = loss_terms.read(config)
        self.critic = loss_terms.Critic(self.terms, self.dtype) if self.terms.gan else None
        self.disc_opt_config = checks.get(config, "disc_optimizer", default=None)

    @property
    def vgg_params(self):
        """The frozen VGG16 of the perceptual term: a constant of the jitted step, never in
        the state (not trained, not checkpointed), loaded when a train step is traced."""
        return load_params("vgg") if self.terms.perceptual else None

    def step_constants(self):
        return {"vgg": self.vgg_params} if self.terms.perceptual else None

    def _optimizer(self, num_train_steps):
        return backbone_optimizer(self.opt_config, num_train_steps, self.backbone_trainable,
                                  self.backbone_learning_rate)

    def init(self, rng, batch, num_train_steps=None):
        kwargs = {}
        if self.backbone != "none":
            weights = load_backbone(self.backbone)
            kwargs["taps"] = init_taps(self.backbone, weights, batch["l"])
        variables = init_variables(self.model, rng, self.batch_conditioning(batch), **kwargs)
        load_pretrained = getattr(self.model, "load_pretrained", None)
        if load_pretrained is not None:  # a frozen pretrained part (fusion's classifier)
            variables = load_pretrained(variables)
        variables = dict(variables)
        params = variables.pop("params")
        if self.backbone != "none":
            params, variables = place_weights(params, variables, weights,
                                              self.backbone_trainable)
        if self.critic is not None:  # the GAN term's discriminator, with its own optimizer
            fields = self.critic.init_fields(jax.random.fold_in(rng, 1), batch,
                                             self.disc_opt_config, num_train_steps)
            return loss_terms.CriticState.create(
                params, dict(variables), self._optimizer(num_train_steps),
                init_ema(params, self.ema_decay), **fields)
        return TrainState.create(params, dict(variables), self._optimizer(num_train_steps),
                                 init_ema(params, self.ema_decay))

    def _network(self, params, model_state, gray_l, taps=None):
        """(the network's variables, its `taps` keyword) from params and model_state in
        either layout: the backbone in `params["backbone"]` (trainable) or in
        `model_state["backbone"]` (frozen). `taps` given: already computed."""
        variables, taps = network_variables(self.backbone, params, model_state, gray_l, taps)
        return variables, ({} if taps is None else {"taps": taps})

    def _network_state(self, model_state):
        """The collections the network reads from a state's (or export's) model_state
        (a subclass may keep its own there, as classification's bins)."""
        return model_state

    def _loss(self, pred, batch, state):
        """The per-pixel loss of `pred` on `batch` (optionally colour-rebalanced)."""
        del state
        weights = None
        if self.loss_rebalance > 0:
            weights = rebalancing_weights(batch["ab"], self.loss_rebalance)
        return pixel_loss(self.loss_kind, pred, batch["ab"], weights=weights)

    def train_step(self, state, batch, rng, constants=None):
        del rng  # deterministic networks
        net_state = self._network_state(state.model_state)
        # Frozen collections are read, never written back (not even through a bfloat16
        # round trip): they come back bit for bit.
        mutable = [c for c in net_state if c not in FROZEN_COLLECTIONS]
        taps = None
        if self.backbone != "none" and not self.backbone_trainable:
            # The frozen backbone runs once, outside the gradient.
            taps = backbone_taps(self.backbone, net_state["backbone"], batch["l"])
        x = self.batch_conditioning(batch)

        vgg_params = constants["vgg"] if constants is not None else self.vgg_params
        # The truth as the perceptual and GAN terms see it: constants, computed once for
        # the network's loss and D's update.
        target = (loss_terms.targets(self.terms, batch["l"], batch["ab"])
                  if self.terms.needs_rgb or self.terms.gan else None)

        def loss_fn(params):
            variables, kwargs = self._network(params, net_state, batch["l"], taps)
            pred, new_model_state = apply_in_precision(
                self.model, variables, x, train=True, mutable=mutable,
                dtype=self.dtype, **kwargs)
            loss, terms = loss_terms.total_loss(self.terms, self._loss(pred, batch, state),
                                                pred, batch, state, vgg_params, self.critic,
                                                target)
            return loss, (new_model_state, pred, terms)

        (loss, (new_model_state, pred, terms)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(state.params)
        state, metrics = apply_gradients(state, grads, self.ema_decay, loss,
                                         model_state={**state.model_state, **new_model_state})
        if terms:
            metrics = {**metrics, **terms,
                       "finite": metrics["finite"] & is_finite(*terms.values())}
        if self.critic is not None:  # then D, on this step's outputs (DDColor's order)
            state, d_metrics = self.critic.update(state, batch["l"], target[1], pred)
            metrics = {**metrics, **d_metrics,
                       "finite": metrics["finite"] & d_metrics["finite"]}
        return state, metrics

    def predict_with(self, variables, gray_l, rng, sampling: bool = False, hints=None):
        """Pure prediction from `inference_variables` alone (used by exports too)."""
        del rng, sampling  # deterministic
        variables = dict(variables)
        params = variables.pop("params")
        variables, kwargs = self._network(params, self._network_state(variables), gray_l)
        return apply_in_precision(self.model, variables, self.conditioning(gray_l, hints),
                                  train=False,
                                  dtype=self.dtype, **kwargs)


# The model names this family trains, and their networks (colorjax.config.registry).
MODELS = {"resnet": ModelSpec("regression", "resnet"),
          "unet": ModelSpec("regression", "unet"),
          "fusion": ModelSpec("regression", "fusion")}

OBJECTIVE = RegressionObjective
