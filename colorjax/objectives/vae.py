"""Conditional VAE colorizers (`basicvae`, `unetvae`): one gray image, many colourings.

Training (Kingma and Welling 2014; conditional form of Sohn et al. 2015):

    mu, logvar = q(L, ab)                          the encoder sees the true colours
    z = mu + exp(logvar / 2) * eps, eps ~ N(0, I)  reparameterization, eps from the step's rng
    loss = recon(p(L, z), ab) + beta(step) * KL(q || N(0, I))

Scaling of the two terms, as in the original project whose beta = 0.001 we keep: the
reconstruction is the *per-pixel mean* squared error in network units (`config.loss`,
default mse), the KL is *summed over the latent dimensions* and averaged over the batch,
not divided by the number of pixels. So beta prices one nat of colour information against
a per-pixel error that does not depend on the image size, and beta keeps its meaning when
`image_size` changes. (Dividing the KL by H*W would make it nearly free at 64 px: the
encoder would then fill z with detail the prior cannot reproduce at test time.)

Prediction needs only the decoder: z is drawn from the prior N(0, I) (`sample_mode="prior"`,
a different colouring per rng) or set to its mode z = 0 (`"zero"`, deterministic: the
single most likely colouring, used by default for evaluation tables).

`config.model.backbone` (vgg16 | efficientnet_lite0): a pretrained ImageNet network reads L
and its feature maps feed the decoder (`colorjax.models.vae`); the encoder does not see
them. Frozen (the default), its weights are the decoder's collection
`model_state["decoder"]["backbone"]`, beside the decoder's BatchNorm statistics; the step
reads it, never writes it, and its taps are computed once per step outside the gradient.
With `config.model.backbone_trainable` they are the decoder's `params["decoder"]["backbone"]`,
fine-tuned by the reconstruction (and KL) loss with their own peak learning rate
`config.model.backbone_learning_rate` (`frozen_backbone.split_optimizer`; BatchNorm
statistics stay fixed) and in the decoder's EMA. Either way `inference_variables` (the
decoder's params and collections) carries it, so exports are self-contained, and `decode`
computes the taps from the variables.

`config.model.hints`: the decoder reads concat(L, hint planes) (`Objective.conditioning`);
the encoder q(z | L, ab) keeps L alone, since it already sees the true colours the hints
are drawn from.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from colorjax import models
from colorjax.config import checks
from colorjax.config import registry
from colorjax.config.registry import ModelSpec
from colorjax.models.blocks import NORMS
from colorjax.models.backbone import load_backbone
from colorjax.models.vae import CONDITIONS, build_vae
from colorjax.objectives.base import (LOSSES, Objective, TrainState, apply_gradients,
                                      apply_in_precision, init_ema, init_variables,
                                      pixel_loss)
from colorjax.objectives.frozen_backbone import (backbone_optimizer, check_backbone,
                                                 frozen_taps, init_taps, network_variables,
                                                 place_weights)

SAMPLE_MODES = ("prior", "zero")


def kl_divergence(mu, logvar) -> jax.Array:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per example, (N,): the closed form
    0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2) over the latent dimensions."""
    return 0.5 * jnp.sum(jnp.square(mu) + jnp.exp(logvar) - 1.0 - logvar, axis=-1)


def reparameterize(rng, mu, logvar) -> jax.Array:
    """z = mu + sigma * eps. `eps` is drawn over the global batch shape, so under jit with
    a sharded batch every example (and so every device) gets its own noise; the loop folds
    the step into `rng`, so every step draws afresh."""
    eps = jax.random.normal(rng, mu.shape, mu.dtype)
    return mu + jnp.exp(0.5 * logvar) * eps


def kl_weight(step, beta: float, warmup_steps: int) -> jax.Array:
    """beta, ramped linearly from 0 over the first `warmup_steps` (0 = no warm-up): the
    decoder first learns to use z before the KL pushes the posterior to the prior
    (Bowman et al. 2016, "Generating sentences from a continuous space")."""
    beta = jnp.float32(beta)
    if warmup_steps <= 0:
        return beta
    return beta * jnp.minimum(1.0, step.astype(jnp.float32) / warmup_steps)


def validate(config) -> None:
    """ConfigError naming the first wrong field this family reads (builds nothing)."""
    checks.choice(config, "model.name", registry.names("vae"))
    checks.choice(config, "loss", LOSSES)
    checks.choice(config, "model.norm", NORMS)
    checks.choice(config, "model.condition", CONDITIONS)
    checks.integer(config, "model.latent_dim", low=1)
    checks.sequence(config, "model.features", "integers", low=1, min_length=1)
    checks.sequence(config, "model.encoder_features", "integers", low=1, min_length=1)
    check_backbone(config)
    checks.choice(config, "vae.sample_mode", SAMPLE_MODES)
    checks.number(config, "vae.beta", low=0)
    checks.integer(config, "vae.kl_warmup_steps", low=0, note="(0 = no warm-up)")


def downsample_factor(config) -> int:
    """What image_size must be a multiple of: the decoder's, from the networks alone."""
    return models.downsample_factor(build_vae(config.model)[1])


class VAEObjective(Objective):
    """Encoder q(z | L, ab) and decoder p(ab | z, L), one optimizer over both.

    The state is a `TrainState` whose `params` and `model_state` are
    `{"encoder": ..., "decoder": ...}`; `ema_params` (when on) tracks the decoder alone,
    the only network prediction uses.
    """

    samples = True  # z is drawn: several colorizations of one photo differ
    runtime_fields = ("vae.sample_mode",)

    def __init__(self, config):
        validate(config)
        self.encoder, self.decoder = build_vae(config.model)
        self.latent_dim = int(config.model.latent_dim)
        self.downsample_factor = models.downsample_factor(self.decoder)
        # The networks compute in self.dtype (KL and loss in float32); the decoder reads
        # concat(L, hints), q(z|L,ab) L alone.
        self.read_shared_fields(config)
        self.loss_kind = config.loss
        self.beta = float(config.vae.beta)
        self.kl_warmup_steps = int(config.vae.kl_warmup_steps)
        self.sample_mode = config.vae.sample_mode

    def init(self, rng, batch, num_train_steps=None):
        enc_rng, dec_rng = jax.random.split(rng)
        l, ab = batch["l"], batch["ab"]
        enc = init_variables(self.encoder, enc_rng, l, ab)
        z = jnp.zeros((l.shape[0], self.latent_dim), l.dtype)
        cond = self.batch_conditioning(batch)
        if self.backbone == "none":
            dec = init_variables(self.decoder, dec_rng, cond, z)
        else:
            weights = load_backbone(self.backbone)
            dec = dict(init_variables(self.decoder, dec_rng, cond, z,
                                      taps=init_taps(self.backbone, weights, l)))
        dec = dict(dec)
        dec_params = dec.pop("params")
        if self.backbone != "none":
            # The decoder's (exported with it): its collection (frozen) or its params.
            dec_params, dec = place_weights(dec_params, dec, weights, self.backbone_trainable)
        params = {"encoder": enc.pop("params"), "decoder": dec_params}
        return TrainState.create(params, {"encoder": dict(enc), "decoder": dec},
                                 backbone_optimizer(self.opt_config, num_train_steps,
                                                    self.backbone_trainable,
                                                    self.backbone_learning_rate),
                                 init_ema(params["decoder"], self.ema_decay))

    def train_step(self, state, batch, rng):
        l, ab = batch["l"], batch["ab"]
        ms = state.model_state
        beta = kl_weight(state.step, self.beta, self.kl_warmup_steps)
        # The frozen backbone runs once, outside the gradient, and is not passed to (so not
        # cast or written back by) the decoder: it comes back bit for bit. A trainable one
        # runs inside the gradient (`network_variables`), from params["decoder"]["backbone"].
        taps = self._taps(ms["decoder"], l)
        cond = self.batch_conditioning(batch)

        def loss_fn(params):
            (mu, logvar), enc_state = apply_in_precision(
                self.encoder, {"params": params["encoder"], **ms["encoder"]}, l, ab,
                train=True, mutable=list(ms["encoder"]), dtype=self.dtype)
            z = reparameterize(rng, mu, logvar)
            dec_vars, dec_taps = network_variables(self.backbone, params["decoder"],
                                                   ms["decoder"], l, taps)
            pred, dec_state = apply_in_precision(
                self.decoder, dec_vars, cond, z, train=True,
                mutable=[c for c in dec_vars if c != "params"], dtype=self.dtype,
                **self._taps_kwargs(dec_taps))
            recon = pixel_loss(self.loss_kind, pred, ab)
            kl = jnp.mean(kl_divergence(mu, logvar))
            aux = {"recon": recon, "kl": kl, "mu_sq": jnp.mean(jnp.square(mu)),
                   "sigma_sq": jnp.mean(jnp.exp(logvar)),
                   "model_state": {"encoder": dict(enc_state),
                                   "decoder": {**ms["decoder"], **dict(dec_state)}}}
            return recon + beta * kl, aux

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_state, metrics = apply_gradients(
            state, grads, self.ema_decay, loss, model_state=aux.pop("model_state"),
            ema_of=lambda params: params["decoder"])
        return new_state, {**metrics, "beta": beta, **aux}

    # --- prediction: the decoder alone -------------------------------------------------

    def latent(self, rng, n: int, mode: str | None = None) -> jax.Array:
        """(n, latent_dim) latents: prior samples, or the prior's mode z = 0."""
        mode = mode or self.sample_mode
        if mode == "zero":
            return jnp.zeros((n, self.latent_dim), jnp.float32)
        if mode == "prior":
            return jax.random.normal(rng, (n, self.latent_dim), jnp.float32)
        raise ValueError(f"sample mode {mode!r}; allowed: {list(SAMPLE_MODES)}")

    def _taps(self, decoder_collections, gray_l):
        """The frozen backbone's taps of L, from the decoder's collections (None without
        one, or with a trainable one, whose taps `network_variables` computes)."""
        taps = frozen_taps(self.backbone, decoder_collections)
        return None if taps is None else taps(gray_l)

    def _taps_kwargs(self, taps):
        return {} if taps is None else {"taps": taps}

    def decode(self, variables, gray_l, z, hints=None) -> jax.Array:
        """ab for given latents, from the decoder's variables only (its backbone too, in
        either layout)."""
        variables = dict(variables)
        params = variables.pop("params")
        variables, taps = network_variables(self.backbone, params, variables, gray_l)
        return apply_in_precision(self.decoder, variables, self.conditioning(gray_l, hints), z,
                                  train=False,
                                  dtype=self.dtype, **self._taps_kwargs(taps))

    def inference_variables(self, state):
        """Decoder (EMA) params (a trainable backbone's among them), BatchNorm statistics
        and frozen backbone; nothing of the encoder."""
        params = state.params["decoder"] if state.ema_params is None else state.ema_params
        return {"params": params, **state.model_state["decoder"]}

    def predict_with(self, variables, gray_l, rng, sampling: bool = False, hints=None):
        """Pure prediction honoring `config.vae.sample_mode` (used by exports too); with
        `sampling`, z is drawn from the prior whatever the configured mode."""
        mode = "prior" if sampling else None
        return self.decode(variables, gray_l, self.latent(rng, gray_l.shape[0], mode), hints)


# The model names this family trains, and their decoders.
MODELS = {"basicvae": ModelSpec("vae", "decoder"),
          "unetvae": ModelSpec("vae", "unet_decoder")}

OBJECTIVE = VAEObjective
