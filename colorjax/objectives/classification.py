"""Colorization as classification (Zhang, Isola and Efros 2016, "Colorful Image
Colorization"): the network predicts, per pixel, a distribution over the in-gamut ab bins
(`colorjax.color.ab_bins`); the loss is a class-rebalanced cross-entropy against soft targets;
ab is decoded by the annealed mean at temperature `config.classification.temperature`.

The bins and the rebalancing weights are the collection `model_state["colour_bins"]`
(`centers` (Q, 2) in Lab units, `weights` (Q,), `prior` (Q,)), so checkpoints and exports
carry them. The weights come from one pass over the training split before step 1
(`fit_data_statistics`, called by the loop; it also starts the output layer at the loss's
best constant prediction); until then they are 1.

The network is a UNet or a ResNet colorizer (`config.model.network`) with Q output
channels, optionally with a frozen pretrained backbone, exactly as in the regression
family, which this family extends.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from colorjax import models
from colorjax.color import ab_bins
from colorjax.config import checks
from colorjax.config import registry
from colorjax.config.registry import ModelSpec
from colorjax.color import AB_SCALE
from colorjax.models.blocks import NORMS
from colorjax.models.resnet import ResNetColorizer
from colorjax.models.unet import UNet
from colorjax.objectives.base import check_network_size
from colorjax.objectives.frozen_backbone import backbone_width, check_backbone
from colorjax.objectives.regression import RegressionObjective

BINS = "colour_bins"  # the model_state collection of bins and class weights
NETWORKS = ("unet", "resnet")


def validate(config) -> None:
    """ConfigError naming the first wrong field this family reads (builds nothing)."""
    checks.choice(config, "model.name", registry.names("classification"))
    network = checks.choice(config, "model.network", NETWORKS, default="unet")
    checks.choice(config, "model.norm", NORMS)
    check_network_size(config, network)
    check_backbone(config)
    check_bin_fields(config, "(1 = the mean, near 0 = the mode; the paper's 0.38)")


def check_bin_fields(config, temperature_note: str) -> None:
    """ConfigError for `config.classification`: the annealed mean's temperature and the
    rebalancing prior's mix and image count."""
    checks.number(config, "classification.temperature", low=0.0, low_open=True,
                  note=temperature_note)
    checks.number(config, "classification.prior_mix", low=0.0, high=1.0,
                  note="(lambda: 1 = no rebalancing, the paper's 0.5)")
    checks.integer(config, "classification.prior_images", low=0,
                   note="(0 = the whole training split)")


def build_network(config, num_bins: int):
    """The L -> per-bin logits network of `config.model.network`."""
    m, width = config.model, backbone_width(config)
    if m.get("network", "unet") == "resnet":
        return ResNetColorizer(width=m.width, norm=m.norm, backbone_width=width,
                               out_channels=num_bins, out_act="none")
    return UNet(features=tuple(m.features), norm=m.norm, backbone_width=width,
                out_channels=num_bins, out_act="none")


def downsample_factor(config) -> int:
    return models.downsample_factor(build_network(config, 1))


def soft_cross_entropy(logits, ab_lab, centers, class_weights):
    """Mean over pixels of w(q*) * -Σ_k z_k log p_k: the soft targets z over the 5 nearest
    bins of the true ab (Lab units), q* the nearest (Zhang et al. 2016, eq. 2 and 3)."""
    idx, z = ab_bins.soft_encode(ab_lab, centers)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    ce = -jnp.sum(z * jnp.take_along_axis(logp, idx, axis=-1), axis=-1)
    return jnp.mean(class_weights[idx[..., 0]] * ce)


def _with_output_bias(params, bias, head=None):
    """`params` with the output head's bias (one per bin) replaced by `bias`; `head` is the
    path to the layer holding it (default: the UNet's and ResNet's)."""
    head = (OUTPUT_HEAD, "Conv_0") if head is None else tuple(head)
    if not head:
        return {**params, "bias": bias.astype(params["bias"].dtype)}
    return {**params, head[0]: _with_output_bias(params[head[0]], bias, head[1:])}


OUTPUT_HEAD = "OutputHead_0"  # the networks' last module: a 1x1 conv to one logit per bin


class ClassificationObjective(RegressionObjective):
    """Per-pixel classification over ab bins; `predict` decodes by the annealed mean."""

    decodes_with_temperature = True
    runtime_fields = ("classification.temperature",)

    def __init__(self, config):
        validate(config)
        self.centers = ab_bins.in_gamut_centers()
        self.model = build_network(config, len(self.centers))
        self.downsample_factor = models.downsample_factor(self.model)
        self.read_shared_fields(config)
        self.temperature = float(config.classification.temperature)
        self.prior_mix = float(config.classification.prior_mix)
        self.prior_images = int(config.classification.prior_images)
        # Started from an export (`config.init_from`): its output layer is kept as it is.
        self.keep_output_layer = bool(checks.get(config, "init_from", default=""))

    def init(self, rng, batch, num_train_steps=None):
        state = super().init(rng, batch, num_train_steps)
        q = len(self.centers)
        bins = {"centers": jnp.asarray(self.centers), "weights": jnp.ones((q,), jnp.float32),
                "prior": jnp.full((q,), 1.0 / q, jnp.float32)}
        return state.replace(model_state={**state.model_state, BINS: bins})

    # -- the colour prior: one pass over the training split --

    needs_data_statistics = True

    def fit_data_statistics(self, state, batches, progress=None):
        """`state` with the class weights from the nearest-bin counts of every pixel of
        `batches` (sharded global training batches): the paper's empirical prior, smoothed
        and mixed with the uniform one. Returns (state, number of images seen)."""
        centers = state.model_state[BINS]["centers"]
        replicated = state.model_state[BINS]["weights"].sharding  # as the whole state
        count = jax.jit(lambda ab, c: ab_bins.bin_counts(ab * AB_SCALE, c),
                        out_shardings=replicated)
        total, images = None, 0
        for batch in batches:
            c = count(batch["ab"], centers)
            total = c if total is None else total + c
            images += int(batch["ab"].shape[0])
            if progress is not None:
                progress(int(batch["ab"].shape[0]))
        weights, prior = ab_bins.rebalancing_weights(np.asarray(jax.device_get(total)),
                                                     np.asarray(jax.device_get(centers)),
                                                     mix=self.prior_mix)
        place = lambda x: jax.device_put(x, replicated)
        bins = {**state.model_state[BINS], "weights": place(weights), "prior": place(prior)}
        if getattr(self, "keep_output_layer", False):  # started from an export's weights
            return state.replace(model_state={**state.model_state, BINS: bins}), images
        # The output layer starts at the best constant prediction of this loss, the
        # rebalanced marginal ∝ w(q) p̃(q) (its bias = the log of that; the prior
        # initialisation of Lin et al. 2017, "Focal Loss", for a weighted cross-entropy):
        # the first steps refine a calibrated distribution instead of climbing out of the
        # uniform one, and do not start from the gray-dominated plain prior either.
        start = np.log(weights * prior + 1e-12)
        set_bias = lambda p: _with_output_bias(p, place((start - start.max()).astype(np.float32)),
                                               getattr(self, "output_head", None))
        state = state.replace(params=set_bias(state.params),
                              ema_params=None if state.ema_params is None
                              else set_bias(state.ema_params))
        return state.replace(model_state={**state.model_state, BINS: bins}), images

    # -- training and prediction --

    def _network_state(self, model_state):
        return {k: v for k, v in model_state.items() if k != BINS}

    def _loss(self, logits, batch, state):
        bins = state.model_state[BINS]
        return soft_cross_entropy(logits, batch["ab"] * AB_SCALE, bins["centers"],
                                  bins["weights"])

    def logits_with(self, variables, gray_l, hints=None):
        """Per-bin logits (N, H, W, Q) from `inference_variables` alone."""
        return super().predict_with(variables, gray_l, None, hints=hints)

    def predict_with(self, variables, gray_l, rng, sampling: bool = False, temperature=None,
                     hints=None):
        """ab in network range by the annealed mean at `temperature` (default
        `config.classification.temperature`; may be traced)."""
        del rng, sampling
        t = self.temperature if temperature is None else temperature
        ab = ab_bins.annealed_mean(self.logits_with(variables, gray_l, hints),
                                   variables[BINS]["centers"], t)
        return ab / AB_SCALE


# The network is config.model.network's (unet by default), with one logit per ab bin.
MODELS = {"colorful": ModelSpec("classification", "unet")}

OBJECTIVE = ClassificationObjective
