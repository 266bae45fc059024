"""Adversarial colorizers: `gan`, `unetgan` (pix2pix), `pix2pix_resnet` (NoGAN, then GAN) and
`wgan_gp`. One generator G: L -> ab and one discriminator/critic D: (L, ab) -> score, each
with its own optax optimizer, trained in one jitted step:

    fake = G(L)                                   one forward; its VJP is kept for G's update
    D update(s) on (L, ab) vs (L, stop_grad(fake)) n_critic times (skipped in the NoGAN phase)
    G update: adv_weight * adv(D(L, fake)) + l1_weight * |fake - ab| + perceptual term

G's update sees the freshly updated D, as in pix2pix. The phase is a function of the
checkpointed `state.step`, so a resumed run continues in the right phase.

`config.model.backbone` (vgg16 | efficientnet_lite0): a pretrained ImageNet network reads L
and its feature maps feed G (`colorjax.models.generators`: the UNet-shaped generators'
decoder skips, the encoder-decoder's bottleneck). Frozen (the default), its weights are G's
collection `model_state["backbone"]`, read but never written by the step (not mutable, not
optimised, not in the EMA); its taps are computed once per step, outside G's VJP. With
`config.model.backbone_trainable` they are G's `params["backbone"]`, fine-tuned through G's
VJP by G's optimizer with their own peak learning rate `config.model.backbone_learning_rate`
(`frozen_backbone.split_optimizer`; BatchNorm statistics stay fixed) and in G's EMA. Either
way `predict_with` computes the taps from the variables, so exports carry the backbone.
D never sees it.

`config.model.hints`: G reads concat(L, hint planes) (`Objective.conditioning`); D still
judges (L, ab) pairs alone: whether colours look real does not depend on where a user
clicked, and the L1 term already ties G's output to the truth the hints came from.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
from jax import lax

from colorjax import models
from colorjax.config import checks
from colorjax.config import registry
from colorjax.config.registry import ModelSpec
from colorjax.models.backbone import load_backbone
from colorjax.models.blocks import NORMS
from colorjax.models.discriminators import DISCRIMINATORS, build_discriminator, min_input_size
from colorjax.models.generators import GENERATORS, build_generator
from colorjax.models.pretrained import load_params
from colorjax.objectives.adversarial_losses import (_deinterleave, _interleave,
                                                    bce_discriminator_loss, bce_generator_loss,
                                                    critic_values, gradient_penalty,
                                                    perceptual_loss)
from colorjax.objectives.base import (Objective, apply_gradients, apply_in_precision,
                                      check_optimizer, init_ema, init_opt_state,
                                      init_variables, is_finite, optimizer_for,
                                      optimizer_step, require_optimizer, tree_is_finite)
from colorjax.objectives.frozen_backbone import (backbone_optimizer, backbone_width,
                                                 check_backbone, frozen_taps, init_taps,
                                                 network_variables, place_weights)

ADV_LOSSES = ("bce", "wgan_gp")
# The generator used when `config.model.generator` is not set is the model name's
# network in colorjax.config.registry.MODELS.
# Discriminator metrics (zeros while D is idle in the NoGAN phase).
D_METRICS = ("d_loss", "d_real", "d_fake", "gp", "d_grad_norm")


@flax.struct.dataclass
class GANState:
    """Generator fields carry the names of `TrainState`'s (params, model_state, opt_state,
    ema_params, tx), so code that reads a generator from any state works unchanged. The
    optimizers `tx` and `disc_tx` are static, None in a state built for inference."""

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    ema_params: Any
    disc_params: Any
    disc_model_state: Any
    disc_opt_state: Any
    tx: Any = flax.struct.field(pytree_node=False, default=None)
    disc_tx: Any = flax.struct.field(pytree_node=False, default=None)


# --- config checks -------------------------------------------------------------------


def _generator_name(config) -> str:
    """`config.model.generator`, or the model name's generator in the registry."""
    return checks.get(config, "model.generator",
                      default=registry.spec(config.model).network)


def validate(config) -> None:
    """ConfigError naming the first wrong field this family reads (no compilation)."""
    checks.choice(config, "model.name", registry.names("adversarial"))
    checks.choice(config, "model.generator", GENERATORS, default=_generator_name(config))
    checks.choice(config, "model.norm", NORMS)
    checks.sequence(config, "model.features", "integers", low=1, min_length=1)
    check_backbone(config)
    checks.get(config, "adversarial")
    checks.get(config, "disc_optimizer")
    loss = checks.choice(config, "adversarial.loss", ADV_LOSSES)
    discriminator = checks.choice(config, "adversarial.discriminator", DISCRIMINATORS)
    checks.choice(config, "adversarial.disc_norm", NORMS)
    if loss == "wgan_gp":
        # The penalty is per sample; BatchNorm mixes samples (Gulrajani et al. 2017, 4).
        checks.choice(config, "adversarial.disc_norm", ("instance", "group", "none"),
                      note="(with config.adversarial.loss='wgan_gp')")
    for field in ("adv_weight", "l1_weight", "gp_weight", "perceptual_weight"):
        checks.number(config, f"adversarial.{field}", low=0)
    for field, low in (("n_critic", 1), ("nogan_steps", 0), ("disc_features", 1)):
        checks.integer(config, f"adversarial.{field}", low=low)
    # Each layer halves the image, and data.image_size is at most 4096 = 2**12.
    checks.integer(config, "adversarial.disc_layers", low=1, high=12)
    checks.sequence(config, "adversarial.perceptual_layer_weights", low=0, length=5,
                    note="(relu1_2 .. relu5_3 of VGG16)")
    check_optimizer(config, "disc_optimizer")
    size = checks.integer(config, "data.image_size", default=None)
    layers = config.adversarial.disc_layers
    low = min_input_size(discriminator, layers)
    if size is not None and size < low:
        raise checks.ConfigError(
            "config.data.image_size", f"{size} is too small for a {discriminator!r} "
            f"discriminator with config.adversarial.disc_layers={layers}",
            f"integers >= {low} (or fewer disc_layers)")


def _build_generator(config):
    return build_generator(_generator_name(config), config.model.features, config.model.norm,
                           backbone_width(config))


def downsample_factor(config) -> int:
    """What image_size must be a multiple of: the generator's, from the network alone."""
    return models.downsample_factor(_build_generator(config))


# --- the objective -------------------------------------------------------------------


class AdversarialObjective(Objective):
    """G and D, each with its own optimizer, in one `GANState`; `predict` runs G (its EMA)."""

    def __init__(self, config):
        validate(config)
        adv = config.adversarial
        self.generator = _build_generator(config)
        self.discriminator = build_discriminator(adv.discriminator, adv.disc_features,
                                                 adv.disc_layers, adv.disc_norm)
        self.downsample_factor = models.downsample_factor(self.generator)
        self.loss_kind = adv.loss
        self.adv_weight = float(adv.adv_weight)
        self.l1_weight = float(adv.l1_weight)
        self.gp_weight = float(adv.gp_weight)
        self.n_critic = int(adv.n_critic)
        self.nogan_steps = int(adv.nogan_steps)
        self.perceptual_weight = float(adv.perceptual_weight)
        self.layer_weights = tuple(float(w) for w in adv.perceptual_layer_weights)
        # G and D compute in self.dtype (VGG16 stays float32); G reads concat(L, hints),
        # D judges (L, ab) alone.
        self.read_shared_fields(config)
        self.gen_opt_config, self.disc_opt_config = self.opt_config, config.disc_optimizer
        self.disc_batchnorm = adv.disc_norm == "batch"
        self.use_perceptual = self.perceptual_weight > 0 and any(self.layer_weights)

    @property
    def vgg_params(self):
        """The frozen VGG16 of the perceptual loss: a constant of the jitted step, never in
        the state (not trained, not checkpointed). Loaded when a train step is first traced,
        so exports and inference never read it."""
        return load_params("vgg")  # cached per process by lpips

    def step_constants(self):
        return {"vgg": self.vgg_params} if self.use_perceptual else None

    # -- state ------------------------------------------------------------------------

    def init(self, rng, batch, num_train_steps=None):
        g_rng, d_rng = jax.random.split(rng)
        g_in = self.batch_conditioning(batch)
        if self.backbone == "none":
            g_vars = dict(init_variables(self.generator, g_rng, g_in))
        else:
            weights = load_backbone(self.backbone)
            g_vars = dict(init_variables(self.generator, g_rng, g_in,
                                         taps=init_taps(self.backbone, weights, batch["l"])))
        d_vars = dict(init_variables(self.discriminator, d_rng, batch["l"], batch["ab"]))
        params, disc_params = g_vars.pop("params"), d_vars.pop("params")
        if self.backbone != "none":
            # Frozen: G's collection, state, never params; trainable: G's params["backbone"].
            params, g_vars = place_weights(params, g_vars, weights, self.backbone_trainable)
        tx = backbone_optimizer(self.gen_opt_config, num_train_steps, self.backbone_trainable,
                                self.backbone_learning_rate)
        # D's optimizer counts D updates: n_critic per step, none in the NoGAN phase.
        disc_tx = optimizer_for(self.disc_opt_config, None if num_train_steps is None else
                                max(1, num_train_steps - self.nogan_steps) * self.n_critic)
        return GANState(
            step=jnp.zeros((), jnp.int32), params=params, model_state=g_vars,
            opt_state=init_opt_state(tx, params), ema_params=init_ema(params, self.ema_decay),
            disc_params=disc_params, disc_model_state=d_vars,
            disc_opt_state=init_opt_state(disc_tx, disc_params), tx=tx, disc_tx=disc_tx)

    # -- networks ---------------------------------------------------------------------

    def _taps(self, model_state, l):
        """The frozen backbone's taps of L, from G's collections (None without one, or with
        a trainable one: those are computed inside G's VJP)."""
        taps = frozen_taps(self.backbone, model_state)
        return None if taps is None else taps(l)

    def _taps_kwargs(self, taps):
        return {} if taps is None else {"taps": taps}

    def _generate(self, params, model_state, l, taps=None, hints=None):
        """G in train mode: (ab, new BatchNorm statistics). The backbone is not passed to G
        (it reads the precomputed frozen `taps`, or those of its trainable weights in
        `params["backbone"]`, computed here), so it is neither cast nor written back."""
        variables, taps = network_variables(self.backbone, params, model_state, l, taps)
        own = [c for c in variables if c != "params"]
        return apply_in_precision(self.generator, variables, self.conditioning(l, hints),
                                  train=True,
                                  mutable=own, dtype=self.dtype, **self._taps_kwargs(taps))

    def _discriminate(self, disc_params, disc_state, l, ab):
        """D in train mode (batch statistics): (outputs, new BatchNorm statistics)."""
        return apply_in_precision(self.discriminator, {"params": disc_params, **disc_state},
                                  l, ab, train=True, mutable=list(disc_state), dtype=self.dtype)

    def _judge(self, disc_params, disc_state, l, ab_real, ab_fake):
        """D's outputs for real and fake (L, ab) pairs from one call, so BatchNorm statistics
        are over real and fake together, the same in D's and G's updates."""
        out, new_state = self._discriminate(disc_params, disc_state, _interleave(l, l),
                                            _interleave(ab_real, ab_fake))
        real, fake = _deinterleave(out)
        return real, fake, new_state

    def _critic(self, disc_params, disc_state):
        """Per-image critic value (N,); no BatchNorm (checked), so samples do not mix."""
        def fn(l, ab):
            return critic_values(self._discriminate(disc_params, disc_state, l, ab)[0])
        return fn

    def _gan_phase(self, step):
        """True from step `nogan_steps` on (a traced bool, or the constant True)."""
        return True if self.nogan_steps == 0 else step >= self.nogan_steps

    # -- discriminator ----------------------------------------------------------------

    def _disc_loss(self, disc_params, disc_state, l, ab_real, ab_fake, rng):
        real, fake, new_state = self._judge(disc_params, disc_state, l, ab_real, ab_fake)
        if self.loss_kind == "bce":
            loss = bce_discriminator_loss(real, fake)
            gp = jnp.zeros((), jnp.float32)
            d_real, d_fake = jnp.mean(jax.nn.sigmoid(real)), jnp.mean(jax.nn.sigmoid(fake))
        else:
            d_real, d_fake = jnp.mean(critic_values(real)), jnp.mean(critic_values(fake))
            gp = gradient_penalty(self._critic(disc_params, disc_state), l, ab_real, ab_fake,
                                  rng)
            loss = d_fake - d_real + self.gp_weight * gp
        return loss, (new_state, {"d_loss": loss, "d_real": d_real, "d_fake": d_fake, "gp": gp})

    def _disc_update(self, disc_tx, disc, l, ab_real, ab_fake, rng):
        params, model_state, opt_state = disc
        (_, (model_state, metrics)), grads = jax.value_and_grad(self._disc_loss, has_aux=True)(
            params, model_state, l, ab_real, ab_fake, rng)
        params, opt_state, grad_norm = optimizer_step(disc_tx, grads, opt_state, params)
        metrics = {**metrics, "d_grad_norm": grad_norm}
        return (params, dict(model_state), opt_state), {
            k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}

    def _disc_updates(self, disc_tx, disc, l, ab_real, ab_fake, rng):
        """`n_critic` updates of D on the same batch and the same (fixed-G) fakes; only the
        gradient-penalty interpolation changes between them (rng folded with the index).
        Metrics are those of the last update."""
        disc, metrics = self._disc_update(disc_tx, disc, l, ab_real, ab_fake,
                                          jax.random.fold_in(rng, 0))
        if self.n_critic > 1:
            def body(i, carry):
                return self._disc_update(disc_tx, carry[0], l, ab_real, ab_fake,
                                         jax.random.fold_in(rng, i))
            disc, metrics = lax.fori_loop(1, self.n_critic, body, (disc, metrics))
        return disc, metrics

    def discriminator_step(self, state, batch, ab_fake, rng):
        """D's n_critic updates against fixed fakes; G's fields are returned untouched."""
        disc = (state.disc_params, state.disc_model_state, state.disc_opt_state)
        disc_tx = require_optimizer(state.disc_tx, "this GAN state's discriminator")
        disc, metrics = self._disc_updates(disc_tx, disc, batch["l"], batch["ab"],
                                           lax.stop_gradient(ab_fake), rng)
        return state.replace(disc_params=disc[0], disc_model_state=disc[1],
                             disc_opt_state=disc[2]), metrics

    # -- generator --------------------------------------------------------------------

    def _gen_adv_loss(self, state, l, ab_real, ab_fake):
        if self.disc_batchnorm:
            # Judge fakes next to reals for the same BatchNorm statistics as in D's update;
            # D's running statistics are only advanced by D's own update.
            fake = self._judge(state.disc_params, state.disc_model_state, l,
                               lax.stop_gradient(ab_real), ab_fake)[1]
        else:
            fake = self._discriminate(state.disc_params, state.disc_model_state, l, ab_fake)[0]
        if self.loss_kind == "bce":
            return bce_generator_loss(fake)
        return -jnp.mean(critic_values(fake))

    def _gen_loss(self, ab_fake, state, batch, gan_on, vgg=None):
        """G's total loss as a function of its output (the VJP carries it to G's params);
        `vgg`: the perceptual term's weights (None: `vgg_params`, a constant)."""
        l, ab = batch["l"], batch["ab"]
        l1 = jnp.mean(jnp.abs(ab_fake - ab))
        zero = jnp.zeros((), jnp.float32)
        perc = zero
        if self.use_perceptual:
            perc = perceptual_loss(self.vgg_params if vgg is None else vgg,
                                   self.layer_weights, l, ab_fake, ab)
        if gan_on is True:
            adv = self._gen_adv_loss(state, l, ab, ab_fake)
        else:  # NoGAN phase: D is not even run
            adv = lax.cond(gan_on, lambda f: self._gen_adv_loss(state, l, ab, f),
                           lambda f: zero, ab_fake)
        total = self.adv_weight * adv + self.l1_weight * l1 + self.perceptual_weight * perc
        return total, {"g_adv": adv, "g_l1": l1, "g_perceptual": perc}

    def _forward(self, state, l, hints=None):
        """G's output, its VJP and its new BatchNorm statistics: one forward for both
        D's update (as a constant) and G's (through the VJP). The frozen backbone runs once,
        outside the VJP, and comes back in the statistics unchanged (bit for bit)."""
        taps = self._taps(state.model_state, l)
        fake, vjp_fn, model_state = jax.vjp(
            lambda p: self._generate(p, state.model_state, l, taps, hints), state.params,
            has_aux=True)
        return fake, vjp_fn, {**state.model_state, **dict(model_state)}

    def _gen_update(self, state, batch, fake, vjp_fn, model_state, gan_on, vgg=None):
        (loss, metrics), d_fake = jax.value_and_grad(
            lambda f: self._gen_loss(f, state, batch, gan_on, vgg), has_aux=True)(fake)
        (grads,) = vjp_fn(d_fake)
        # train_step counts the step once, after D's and G's updates.
        state, step_metrics = apply_gradients(state, grads, self.ema_decay, loss,
                                              advance_step=False, model_state=model_state)
        # step_metrics["finite"]: G's loss, gradients, parameters and EMA; train_step adds
        # D's terms and parameters.
        return state, {**step_metrics, **metrics}

    def generator_step(self, state, batch, rng):
        """One G update against the current D; D's fields are returned untouched."""
        del rng
        gan_on = self._gan_phase(state.step)
        fake, vjp_fn, model_state = self._forward(state, batch["l"], self.batch_hints(batch))
        return self._gen_update(state, batch, fake, vjp_fn, model_state, gan_on)

    # -- the step ---------------------------------------------------------------------

    def train_step(self, state, batch, rng, constants=None):
        gan_on = self._gan_phase(state.step)
        fake, vjp_fn, model_state = self._forward(state, batch["l"], self.batch_hints(batch))
        if gan_on is True:
            state, d_metrics = self.discriminator_step(state, batch, fake, rng)
        else:
            zeros = {k: jnp.zeros((), jnp.float32) for k in D_METRICS}
            state, d_metrics = lax.cond(
                gan_on, lambda s: self.discriminator_step(s, batch, fake, rng),
                lambda s: (s, zeros), state)
        state, g_metrics = self._gen_update(state, batch, fake, vjp_fn, model_state, gan_on,
                                            None if constants is None else constants["vgg"])
        metrics = {**g_metrics, **d_metrics,
                   "gan_phase": jnp.asarray(gan_on, jnp.float32)}
        metrics["finite"] = g_metrics["finite"] & tree_is_finite(state.disc_params) & is_finite(
            *(metrics[k] for k in ("g_adv", "g_l1", "g_perceptual", "d_loss", "gp",
                                   "d_grad_norm")))
        return state.replace(step=state.step + 1), metrics

    # -- prediction: the generator alone ----------------------------------------------
    # `inference_variables` is the base's: G's fields carry TrainState's names, so it keeps
    # G's (EMA) params and BN statistics (and its frozen backbone), no discriminator and no
    # optimizer states.

    def predict_with(self, variables, gray_l, rng, sampling: bool = False, hints=None):
        del rng, sampling  # deterministic generator
        variables = dict(variables)
        params = variables.pop("params")
        variables, taps = network_variables(self.backbone, params, variables, gray_l)
        return apply_in_precision(self.generator, variables, self.conditioning(gray_l, hints),
                                  train=False,
                                  dtype=self.dtype, **self._taps_kwargs(taps))


# The model names this family trains, and their default generators.
MODELS = {"gan": ModelSpec("adversarial", "encoder_decoder"),
          "unetgan": ModelSpec("adversarial", "unet"),
          "pix2pix_resnet": ModelSpec("adversarial", "resnet_unet"),
          "wgan_gp": ModelSpec("adversarial", "residual_unet")}

OBJECTIVE = AdversarialObjective
