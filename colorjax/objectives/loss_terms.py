"""The regression family's loss terms beyond its per-pixel loss (`config.loss_terms`), for
fine-tuning the converted published colorizers as their authors trained them. Every term is
off where the group or its field is absent, so no other model changes:

    loss = pixel_weight * pixel loss (config.loss on ab, network units)
         + perceptual_weight * sum_k w_k mean|phi_k(rgb) - phi_k(target rgb)|
         + colorfulness_weight * mean over images of (1 - C)                 (DDColor's)
         + gan_weight * BCE(D(L, ab), real)                                  (a PatchGAN D)

`rgb` is the Lab -> sRGB composite of the true L and the predicted ab (clipped), as
DDColor's `tensor_lab2rgb(cat(lq, output_ab))` (basicsr/models/color_model.py,
`optimize_parameters`); the target is that of the true ab, optionally made more colourful
first (`target_enhance`, DDColor's `color_enhance`).

- Perceptual: colorjax's VGG16 (the LPIPS backbone, `adversarial_losses.feature_l1`), taps
  relu1_2, relu2_2, relu3_3, relu4_3, relu5_3. DDColor's PerceptualLoss reads conv1_1 ..
  conv5_1 of vgg16_bn (pre-activation, with BatchNorm), DeOldify's FeatureLoss relu3_3,
  relu4_3, relu5_3 of vgg16_bn (deoldify/loss.py: the layer before each of the last three
  max-pools); colorjax has neither network, so each weight goes on the tap of the same
  block here. The features' scales differ from vgg16_bn's: the weights balance the terms
  only roughly as in the papers.
- Colourfulness: DDColor's `ColorfulnessLoss` (basicsr/losses/losses.py), per image on
  the RGB composite in [0, 1]: rg = |R - G|, yb = |(R + G)/2 - B|, standard deviations with
  Bessel's correction (torch.std), C = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 +
  mean_yb^2), loss 1 - C. They sum it over a GPU's batch; here it is the mean over the
  batch (the preset's weight says how their sum over 4 images translates).
- GAN: colorjax's PatchGAN (`colorjax.models.discriminators`) judges (L, ab) pairs with
  pix2pix's BCE (`adversarial_losses`), with its own optimizer (`config.disc_optimizer`) in
  the state (`CriticState`); exports keep the colorizer alone. Each step updates the
  colorizer against the current D, then D once on that step's outputs, as DDColor's
  `optimize_parameters` does. DDColor's D is a fastai-style DynamicUNetDiscriminator on
  RGB, DeOldify's a spectral-norm critic on RGB trained in alternation (NoGAN, then
  `AdaptiveGANSwitcher`); neither is reproduced, only the GAN term's place and weight.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
from jax import lax

from colorjax import color
from colorjax.config import checks
from colorjax.metrics.image import safe_sqrt
from colorjax.models.blocks import NORMS
from colorjax.models.discriminators import build_discriminator, min_input_size
from colorjax.objectives.adversarial_losses import (_deinterleave, _interleave,
                                                    bce_discriminator_loss,
                                                    bce_generator_loss, feature_l1)
from colorjax.objectives.base import (TrainState, apply_in_precision, check_optimizer,
                                      init_opt_state, init_variables, is_finite,
                                      optimizer_for, optimizer_step, require_optimizer,
                                      tree_is_finite)

GROUP = "loss_terms"
TAPS = "relu1_2 .. relu5_3 of colorjax's VGG16"
# torchvision's rgb_to_grayscale (ITU-R 601 luma), which DDColor's color_enhance blends with.
_GRAY = (0.2989, 0.587, 0.114)
# D's metrics, and the terms' (logged only where the term is on).
D_METRICS = ("d_loss", "d_real", "d_fake", "d_grad_norm")


@dataclasses.dataclass(frozen=True)
class LossTerms:
    """The weights of `config.loss_terms` (the defaults: the pixel loss alone)."""

    pixel_weight: float = 1.0
    perceptual_weight: float = 0.0
    perceptual_layer_weights: tuple = (0.0, 0.0, 20.0, 70.0, 10.0)
    colorfulness_weight: float = 0.0
    target_enhance: float = 1.0
    gan_weight: float = 0.0
    disc_features: int = 64
    disc_layers: int = 3
    disc_norm: str = "batch"

    @property
    def perceptual(self) -> bool:
        return self.perceptual_weight > 0 and any(self.perceptual_layer_weights)

    @property
    def colorfulness(self) -> bool:
        return self.colorfulness_weight > 0

    @property
    def gan(self) -> bool:
        return self.gan_weight > 0

    @property
    def needs_rgb(self) -> bool:
        return self.perceptual or self.colorfulness


DEFAULTS = LossTerms()


def check(config) -> None:
    """ConfigError naming the first wrong field of `config.loss_terms` (and of
    `config.disc_optimizer`, which the GAN term needs); an absent field is its default."""
    d = DEFAULTS
    for name in ("pixel_weight", "perceptual_weight", "colorfulness_weight", "gan_weight"):
        checks.number(config, f"{GROUP}.{name}", low=0.0, default=getattr(d, name),
                      note="(0 = off)" if name != "pixel_weight" else "")
    checks.sequence(config, f"{GROUP}.perceptual_layer_weights", low=0.0, length=5,
                    default=d.perceptual_layer_weights, note=f"({TAPS})")
    checks.number(config, f"{GROUP}.target_enhance", low=0.0, default=d.target_enhance,
                  note="(1 = the true colours; DDColor's color_enhance_factor 1.2)")
    checks.integer(config, f"{GROUP}.disc_features", low=1, default=d.disc_features)
    # Each layer halves the image, and data.image_size is at most 4096 = 2**12.
    layers = checks.integer(config, f"{GROUP}.disc_layers", low=1, high=12,
                            default=d.disc_layers)
    checks.choice(config, f"{GROUP}.disc_norm", NORMS, default=d.disc_norm)
    gan = checks.number(config, f"{GROUP}.gan_weight", default=0.0) > 0
    if gan or checks.get(config, "disc_optimizer", default=None) is not None:
        check_optimizer(config, "disc_optimizer")
    size = checks.integer(config, "data.image_size", default=None)
    if gan and size is not None and size < min_input_size("patchgan", layers):
        raise checks.ConfigError(
            "config.data.image_size", f"{size} is too small for the GAN term's PatchGAN with "
            f"config.{GROUP}.disc_layers={layers}",
            f"integers >= {min_input_size('patchgan', layers)} (or fewer disc_layers)")


def read(config) -> LossTerms:
    """The checked `config.loss_terms` (call `check` first)."""
    def get(name):
        return checks.get(config, f"{GROUP}.{name}", default=getattr(DEFAULTS, name))

    return LossTerms(
        pixel_weight=float(get("pixel_weight")),
        perceptual_weight=float(get("perceptual_weight")),
        perceptual_layer_weights=tuple(float(w) for w in get("perceptual_layer_weights")),
        colorfulness_weight=float(get("colorfulness_weight")),
        target_enhance=float(get("target_enhance")), gan_weight=float(get("gan_weight")),
        disc_features=int(get("disc_features")), disc_layers=int(get("disc_layers")),
        disc_norm=str(get("disc_norm")))


# --- the terms -----------------------------------------------------------------------


def colorfulness_per_image(rgb) -> jax.Array:
    """DDColor's colourfulness C of each image (N,), sRGB (N, H, W, 3) in [0, 1]."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg = jnp.abs(r - g).reshape(rgb.shape[0], -1)
    yb = jnp.abs(0.5 * (r + g) - b).reshape(rgb.shape[0], -1)
    std2 = jnp.var(rg, axis=1, ddof=1) + jnp.var(yb, axis=1, ddof=1)  # torch.std: unbiased
    mean2 = jnp.mean(rg, axis=1) ** 2 + jnp.mean(yb, axis=1) ** 2
    # safe_sqrt: a zero gradient at 0, where torch's is NaN (a gray image has no spread).
    return safe_sqrt(std2) + 0.3 * safe_sqrt(mean2)


def colorfulness_loss(rgb) -> jax.Array:
    """DDColor's ColorfulnessLoss without its weight, averaged (not summed) over images."""
    return jnp.mean(1.0 - colorfulness_per_image(rgb))


def colour_enhance(rgb, factor: float):
    """DDColor's `color_enhacne_blend` (basicsr/utils/color_enhance.py): the image pushed
    away from its gray (torchvision's Grayscale) by `factor`, clipped to [0, 1]."""
    if factor == 1.0:
        return rgb
    gray = sum(w * rgb[..., i] for i, w in enumerate(_GRAY))[..., None]
    return jnp.clip(gray * (1.0 - factor) + rgb * factor, 0.0, 1.0)


def targets(terms: LossTerms, l, ab):
    """(target sRGB, target ab) of a batch: the truth, made more colourful by
    `target_enhance` (the ab of that RGB, for D's real pairs); constants of the step."""
    rgb = color.model_outputs_to_rgb(l, ab)
    if terms.target_enhance == 1.0:
        return lax.stop_gradient(rgb), ab
    rgb = lax.stop_gradient(colour_enhance(rgb, terms.target_enhance))
    return rgb, lax.stop_gradient(color.rgb_to_lab(rgb)[..., 1:] / color.AB_SCALE)


# --- the discriminator ---------------------------------------------------------------


@flax.struct.dataclass
class CriticState(TrainState):
    """A regression state with the GAN term's discriminator: its params, BatchNorm
    statistics and optimizer (`disc_tx`, static; None in a state built for inference).
    `inference_variables`, exports and `init_from` read the colorizer's fields alone."""

    disc_params: Any = None
    disc_model_state: Any = None
    disc_opt_state: Any = None
    disc_tx: Any = flax.struct.field(pytree_node=False, default=None)


class Critic:
    """The PatchGAN D of the GAN term and its pure functions."""

    def __init__(self, terms: LossTerms, dtype):
        self.net = build_discriminator("patchgan", terms.disc_features, terms.disc_layers,
                                       terms.disc_norm)
        self.dtype = dtype

    def init_fields(self, rng, batch, opt_config, num_train_steps):
        """CriticState's D fields (one D update per step)."""
        variables = dict(init_variables(self.net, rng, batch["l"], batch["ab"]))
        params = variables.pop("params")
        tx = optimizer_for(opt_config, num_train_steps)
        return dict(disc_params=params, disc_model_state=variables,
                    disc_opt_state=init_opt_state(tx, params), disc_tx=tx)

    def judge(self, params, model_state, l, ab_real, ab_fake):
        """D's logits for real and fake pairs from one call (BatchNorm statistics over both,
        the same in D's update and the colorizer's) and D's new statistics."""
        out, new = apply_in_precision(self.net, {"params": params, **model_state},
                                      _interleave(l, l), _interleave(ab_real, ab_fake),
                                      train=True, mutable=list(model_state), dtype=self.dtype)
        real, fake = _deinterleave(out)
        return real, fake, new

    def generator_loss(self, state, l, ab_real, ab_fake):
        """The colorizer's term: its outputs judged real by the current D (whose running
        statistics only D's own update advances)."""
        fake = self.judge(state.disc_params, state.disc_model_state, l,
                          lax.stop_gradient(ab_real), ab_fake)[1]
        return bce_generator_loss(fake)

    def update(self, state, l, ab_real, ab_fake):
        """One update of D on real pairs and the step's outputs (constants)."""
        ab_fake = lax.stop_gradient(ab_fake)

        def loss_fn(params):
            real, fake, new = self.judge(params, state.disc_model_state, l, ab_real, ab_fake)
            return bce_discriminator_loss(real, fake), (new, real, fake)

        (loss, (new, real, fake)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.disc_params)
        tx = require_optimizer(state.disc_tx, "this state's discriminator")
        params, opt_state, grad_norm = optimizer_step(tx, grads, state.disc_opt_state,
                                                      state.disc_params)
        metrics = {"d_loss": loss, "d_real": jnp.mean(jax.nn.sigmoid(real)),
                   "d_fake": jnp.mean(jax.nn.sigmoid(fake)), "d_grad_norm": grad_norm}
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
        metrics["finite"] = is_finite(*metrics.values()) & tree_is_finite(params)
        state = state.replace(disc_params=params, disc_opt_state=opt_state,
                              disc_model_state={**state.disc_model_state, **dict(new)})
        return state, metrics


def total_loss(terms: LossTerms, pixel, pred, batch, state, vgg_params=None, critic=None,
               target=None):
    """(the weighted sum, each term's value): `pixel` is the per-pixel loss of `pred`;
    `vgg_params` (a constant of the step) where the perceptual term is on, `critic` where
    the GAN term is; `target`: the batch's `targets` where the caller has them (the step
    computes them once, for D's update too)."""
    if not (terms.needs_rgb or terms.gan or terms.pixel_weight != 1.0):
        return pixel, {}
    l = batch["l"]
    values = {"loss_pixel": pixel}
    total = terms.pixel_weight * pixel
    if terms.needs_rgb or terms.gan:
        target_rgb, target_ab = target if target is not None else targets(terms, l,
                                                                          batch["ab"])
    if terms.needs_rgb:
        rgb = color.model_outputs_to_rgb(l, pred.astype(jnp.float32))
    if terms.perceptual:
        values["loss_perceptual"] = feature_l1(vgg_params, terms.perceptual_layer_weights,
                                               rgb, target_rgb)
        total = total + terms.perceptual_weight * values["loss_perceptual"]
    if terms.colorfulness:
        values["loss_colorfulness"] = colorfulness_loss(rgb)
        total = total + terms.colorfulness_weight * values["loss_colorfulness"]
    if terms.gan:
        values["loss_gan"] = critic.generator_loss(state, l, target_ab, pred)
        total = total + terms.gan_weight * values["loss_gan"]
    return total, values


__all__ = ["Critic", "CriticState", "DEFAULTS", "LossTerms", "check", "colorfulness_loss",
           "colorfulness_per_image", "colour_enhance", "read", "targets", "total_loss"]
