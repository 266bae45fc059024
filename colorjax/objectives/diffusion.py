"""Diffusion colorizers (`unetddpm`, `unetddim`): one network, one training, two samplers.

Training (Ho et al. 2020, "L_simple"): draw t and ε, form x_t = sqrt(ᾱ_t) x_0 + sqrt(1-ᾱ_t) ε
from the true ab, and regress the network's output on ε (or on v) given x_t, L and t.
Prediction: start from x_T ~ N(0, I) and run the configured sampler (DDPM ancestral or
DDIM) with the EMA parameters, one compiled `lax.scan` over the steps.

The diffusion runs on x_0 = ab · `config.diffusion.data_scale`. ab in network range has a
standard deviation of only ~0.12 on natural photographs, so with unit-variance noise the
signal-to-noise ratio would exceed 1 only in the first ~3% of a linear schedule's
timesteps, and DDIM-50 would spend one or two steps where colour is decided. Scaling to a
standard deviation of ~0.5 (the range of the images the published schedules were tuned on)
puts those noise levels back where the schedules expect them (cf. Chen 2023, "On the
importance of noise scheduling for diffusion models", on input scaling).

`config.model.backbone` (vgg16 | efficientnet_lite0): a pretrained ImageNet network's
features of L condition the denoiser (`semantic`). Frozen (the default), its weights are the
collection `model_state["backbone"]` and its taps are computed once per step outside the
gradient. With `config.model.backbone_trainable` they are `params["backbone"]`, fine-tuned
by the diffusion loss with their own peak learning rate `config.model.backbone_learning_rate`
(`frozen_backbone.split_optimizer`; BatchNorm statistics stay fixed) and in the EMA. Either
way the sampler computes the taps once per image, outside its loop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from colorjax import models
from colorjax.config import checks
from colorjax.config import registry
from colorjax.config.registry import ModelSpec
from colorjax.diffusion import (PREDICTIONS, SAMPLERS, SCHEDULES, make_schedule, q_sample,
                                sample, training_target)
from colorjax.models.backbone import load_backbone
from colorjax.models.diffusion_unet import DiffusionUNet
from colorjax.objectives.frozen_backbone import (backbone_optimizer, backbone_width,
                                                 check_backbone, frozen_taps, init_taps,
                                                 network_variables, place_weights)
from colorjax.objectives.base import (Objective, TrainState, apply_gradients,
                                      apply_in_precision, init_ema, init_variables, rbg_key)

LOSSES = ("l1", "mse")
# The sampler used when config.sampler.name is not set (or '') is the model name's in
# colorjax.config.registry.MODELS.


def _sampler_name(config) -> str:
    return (checks.get(config, "sampler.name", default="")
            or registry.spec(config.model).sampler or "ddim")


def validate(config) -> None:
    """ConfigError naming the first wrong field this family reads (builds nothing)."""
    checks.choice(config, "model.name", registry.names("diffusion"))
    checks.get(config, "diffusion")
    checks.choice(config, "diffusion.schedule", SCHEDULES)
    timesteps = checks.integer(config, "diffusion.timesteps", low=2)
    checks.choice(config, "diffusion.prediction", PREDICTIONS)
    checks.choice(config, "diffusion.loss", LOSSES)
    checks.integer(config, "diffusion.timestep_buckets", low=1, high=timesteps)
    checks.number(config, "diffusion.data_scale", low=0, low_open=True)
    if checks.get(config, "sampler.name", default=""):  # unset or '': the model name's
        checks.choice(config, "sampler.name", SAMPLERS)
    checks.integer(config, "sampler.steps", low=1, high=timesteps)
    checks.number(config, "sampler.eta", low=0.0)
    checks.number(config, "sampler.temperature", low=0.0, default=1.0)
    checks.number(config, "ema_decay", low=0.0, high=1.0, high_open=True)
    features = checks.sequence(config, "model.features", "integers", low=1, min_length=1,
                               note="(widths per level)")
    checks.sequence(config, "model.attention_levels", "integers", low=0, high=len(features),
                    high_open=True)
    # ImageNet features of L as extra conditioning (colorjax/models/backbone.py), frozen
    # or fine-tuned (model.backbone_trainable, model.backbone_learning_rate).
    check_backbone(config)
    checks.integer(config, "model.num_res_blocks", low=1)
    checks.number(config, "model.dropout", low=0.0, high=1.0, high_open=True)


def build_model(config) -> DiffusionUNet:
    """The denoising UNet of a validated config (a Flax module: nothing is initialised)."""
    m = config.model
    return DiffusionUNet(
        features=tuple(int(f) for f in m.features),
        attention_levels=tuple(int(a) for a in m.attention_levels),
        num_res_blocks=int(m.num_res_blocks), dropout=float(m.dropout),
        backbone_width=backbone_width(config))


def downsample_factor(config) -> int:
    """What image_size must be a multiple of, from the network alone."""
    return models.downsample_factor(build_model(config))


def stratified_timesteps(rng, n: int, num_timesteps: int) -> jax.Array:
    """n timesteps, each uniform on 0..T-1, spread evenly: t_i = ⌊T·((u + i/n) mod 1)⌋.

    The low-discrepancy sampler of Kingma et al. 2021 (VDM, Appendix I.1): unbiased for
    the loss, with lower variance than i.i.d. draws, and every timestep bucket holds
    n/B examples (± 1) in every batch, so the per-bucket losses are never empty once n ≥ B.
    """
    u = jax.random.uniform(rng, ())
    frac = jnp.mod(u + jnp.arange(n, dtype=jnp.float32) / n, 1.0)
    return jnp.minimum((frac * num_timesteps).astype(jnp.int32), num_timesteps - 1)


def bucket_losses(per_example, t, num_timesteps: int, buckets: int) -> dict:
    """Mean loss per timestep bucket: bucket k holds t in [k·T/B, (k+1)·T/B).

    Fixed shapes (one-hot sums), so it runs inside the jitted step. An empty bucket (only
    possible when the batch is smaller than B) reports 0, not NaN.
    """
    which = (t * buckets) // num_timesteps
    onehot = jax.nn.one_hot(which, buckets, dtype=per_example.dtype)     # (N, B)
    sums, counts = per_example @ onehot, jnp.sum(onehot, axis=0)
    means = sums / jnp.maximum(counts, 1.0)
    return {f"loss_t{k}": means[k] for k in range(buckets)}


class DiffusionObjective(Objective):
    """ε- (or v-) prediction training; `predict` runs the configured sampler from pure noise."""

    samples = True  # every colorization is a draw
    runtime_fields = ("sampler",)

    def __init__(self, config):
        validate(config)
        d, s = config.diffusion, config.sampler
        self.schedule_kind = d.schedule
        self.num_timesteps = int(d.timesteps)
        self.prediction = d.prediction
        self.loss_kind = d.loss
        self.buckets = int(d.timestep_buckets)
        self.data_scale = float(d.data_scale)
        self.sampler = _sampler_name(config)
        self.sampler_steps = int(s.steps)
        self.eta = float(s.eta)
        self.temperature = float(s.get("temperature", 1.0))
        self.read_shared_fields(config)  # the denoiser's condition is concat(L, hints)
        self.model = build_model(config)
        self.downsample_factor = models.downsample_factor(self.model)
        self.schedule = make_schedule(self.schedule_kind, self.num_timesteps)
        # The network computes in self.dtype (config.precision); the diffusion arithmetic
        # (x_t, the sampler's updates, the loss) always in float32.

    # --- training -------------------------------------------------------------------

    def init(self, rng, batch, num_train_steps=None):
        l = batch["l"]
        x = jnp.zeros(l.shape[:-1] + (2,), l.dtype)
        t = jnp.zeros((l.shape[0],), jnp.int32)
        # The frozen backbone is state, not params: no optimizer, EMA or weight decay on it.
        model_state = {} if self.backbone == "none" else {"backbone": load_backbone(self.backbone)}
        # Zeros shaped like the taps: init needs their shapes, not a backbone forward.
        semantic = (None if self.backbone == "none"
                    else init_taps(self.backbone, model_state["backbone"], l))
        params = init_variables(self.model, rng, x, self.batch_conditioning(batch), t,
                                semantic=semantic)["params"]
        if self.backbone_trainable:  # params["backbone"]: optimised, EMA'd, checkpointed
            params, model_state = place_weights(params, {}, model_state["backbone"], True)
        return TrainState.create(params, model_state,
                                 backbone_optimizer(self.opt_config, num_train_steps,
                                                    self.backbone_trainable,
                                                    self.backbone_learning_rate),
                                 init_ema(params, self.ema_decay))

    def _semantic(self, model_state, gray_l):
        """Frozen backbone taps of L (None without a backbone, or with a trainable one):
        computed once per image, outside the loss's gradient and outside the sampler's
        loop."""
        taps = frozen_taps(self.backbone, model_state)
        return None if taps is None else taps(gray_l)

    def _ema_decay_at(self, step):
        """`ema_decay`, warmed up as min(decay, (1+step)/(10+step)) (TensorFlow's
        ExponentialMovingAverage with num_updates): early EMA weights are not stuck near
        the random initialisation, which matters for short runs."""
        step = step.astype(jnp.float32)
        return jnp.minimum(self.ema_decay, (1.0 + step) / (10.0 + step))

    def train_step(self, state, batch, rng):
        t_rng, noise_rng, dropout_rng = jax.random.split(rbg_key(rng), 3)
        x0 = batch["ab"] * self.data_scale
        n, T = x0.shape[0], self.num_timesteps
        t = stratified_timesteps(t_rng, n, T)
        noise = jax.random.normal(noise_rng, x0.shape, x0.dtype)
        x_t = q_sample(self.schedule, x0, t, noise)
        target = training_target(self.prediction, self.schedule, x0, t, noise)
        semantic = self._semantic(state.model_state, batch["l"])
        cond = self.batch_conditioning(batch)

        def loss_fn(params):
            # A trainable backbone's taps are computed here, inside the gradient.
            variables, taps = network_variables(self.backbone, params, {}, batch["l"],
                                                semantic)
            out = apply_in_precision(self.model, variables, x_t, cond, t,
                                     train=True, semantic=taps,
                                     rngs={"dropout": dropout_rng}, dtype=self.dtype)
            err = out - target
            per_example = jnp.mean(err**2 if self.loss_kind == "mse" else jnp.abs(err),
                                   axis=tuple(range(1, err.ndim)))
            return jnp.mean(per_example), per_example

        (loss, per_example), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_state, metrics = apply_gradients(state, grads, self._ema_decay_at(state.step),
                                             loss)
        metrics.update(bucket_losses(jax.lax.stop_gradient(per_example), t, T, self.buckets))
        return new_state, metrics

    # --- sampling -------------------------------------------------------------------

    def model_fn(self, params, gray_l, model_state=None, hints=None):
        """The network as the samplers see it: (x_t, t) -> ε or v, conditioned on L (and its
        hint planes, for a hint model; and on the backbone's features of L, computed here
        once, when `model_state` holds a frozen one or `params` a trainable one)."""
        semantic = self._semantic(model_state, gray_l)
        variables, semantic = network_variables(self.backbone, params, {}, gray_l, semantic)
        cond = self.conditioning(gray_l, hints)
        return lambda x_t, t: apply_in_precision(self.model, variables, x_t, cond, t,
                                                 train=False, semantic=semantic,
                                                 dtype=self.dtype)

    def sample(self, params, gray_l, rng, sampler: str | None = None,
               steps: int | None = None, eta: float | None = None, model_state=None,
               hints=None):
        """ab (N,H,W,2) in network range drawn with a sampler (config's unless overridden).
        `model_state` is the train state's (the frozen backbone, if the model has one; a
        trainable one is in `params`)."""
        noise_rng, sampler_rng = jax.random.split(rbg_key(rng))
        # Reduced temperature (< 1) starts from, and adds, less noise: samples move from a
        # draw of the model's distribution towards its most likely colouring (cf. Glow's
        # reduced-temperature sampling, Kingma and Dhariwal 2018).
        x_T = self.temperature * jax.random.normal(noise_rng, gray_l.shape[:-1] + (2,),
                                                   jnp.float32)
        x0 = sample(sampler or self.sampler, self.model_fn(params, gray_l, model_state, hints),
                    self.schedule, x_T,
                    sampler_rng, steps=steps or self.sampler_steps,
                    eta=self.eta if eta is None else eta, prediction=self.prediction,
                    clip=self.data_scale,  # x̂_0 clipped to ab in [-1, 1]
                    temperature=self.temperature)
        return jnp.clip(x0 / self.data_scale, -1.0, 1.0)

    def predict_with(self, variables, gray_l, rng, sampling: bool = False, hints=None):
        """Pure sampling from `inference_variables` alone (used by exports too); it always
        samples, so `sampling` changes nothing."""
        del sampling
        model_state = {k: v for k, v in variables.items() if k != "params"}
        return self.sample(variables["params"], gray_l, rng, model_state=model_state,
                           hints=hints)


# The model names this family trains: one network, two default samplers.
MODELS = {"unetddpm": ModelSpec("diffusion", "diffusion_unet", sampler="ddpm"),
          "unetddim": ModelSpec("diffusion", "diffusion_unet", sampler="ddim")}

OBJECTIVE = DiffusionObjective
