"""Losses of the adversarial colorizers (`colorjax.objectives.adversarial`): pix2pix's BCE,
WGAN-GP's critic values and gradient penalty, DeOldify's VGG16 feature loss, and the
real/fake interleaving that lets D judge both in one call. The regression family's
`loss_terms` use the BCE, the feature loss and the interleaving too."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax import lax

from colorjax.color import model_outputs_to_rgb
from colorjax.models.pretrained import vgg16_features



def bce_discriminator_loss(real_logits, fake_logits) -> jax.Array:
    """Real -> 1, fake -> 0, halved as in pix2pix to slow D down (Isola et al. 2017, 3.3)."""
    real = optax.sigmoid_binary_cross_entropy(real_logits, jnp.ones_like(real_logits))
    fake = optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits))
    return 0.5 * (jnp.mean(real) + jnp.mean(fake))


def bce_generator_loss(fake_logits) -> jax.Array:
    """Non-saturating generator loss: fakes should be classified real."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits)))


def critic_values(out) -> jax.Array:
    """One critic value per image: the mean over patches (N, ...) -> (N,)."""
    return jnp.mean(out.reshape(out.shape[0], -1), axis=1)


def safe_norm(x, axis=-1) -> jax.Array:
    """Euclidean norm whose gradient at 0 is 0 rather than NaN (sqrt'(0) is infinite)."""
    sq = jnp.sum(jnp.square(x), axis=axis)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def gradient_penalty(critic_fn, l, ab_real, ab_fake, rng) -> jax.Array:
    """WGAN-GP penalty E[(||grad_ab D(L, ab_hat)||_2 - 1)^2] (Gulrajani et al. 2017, eq. 3).

    ab_hat = eps * real + (1 - eps) * fake with eps ~ U[0, 1] per image. L is the condition
    shared by real and fake, so only ab is interpolated and differentiated. `critic_fn(l, ab)`
    returns (N,) and must not couple samples (no BatchNorm): then the gradient of the sum
    is each image's own gradient.
    """
    n = ab_real.shape[0]
    eps = jax.random.uniform(rng, (n,) + (1,) * (ab_real.ndim - 1), ab_real.dtype)
    ab_hat = eps * ab_real + (1.0 - eps) * ab_fake
    grads = jax.grad(lambda ab: jnp.sum(critic_fn(l, ab)))(ab_hat)
    return jnp.mean(jnp.square(safe_norm(grads.reshape(n, -1)) - 1.0))


def feature_l1(vgg_params, layer_weights, rgb, target_rgb) -> jax.Array:
    """Sum_k w_k * mean|phi_k(rgb) - phi_k(target)| over the 5 VGG16 taps of the LPIPS
    backbone (relu1_2 .. relu5_3), sRGB in [0, 1]; the target is a constant."""
    pred = vgg16_features(vgg_params, rgb)
    true = vgg16_features(vgg_params, lax.stop_gradient(target_rgb))
    total = jnp.zeros((), jnp.float32)
    for w, fp, ft in zip(layer_weights, pred, true):
        if w:
            total = total + w * jnp.mean(jnp.abs(fp - lax.stop_gradient(ft)))
    return total


def perceptual_loss(vgg_params, layer_weights, l, ab_pred, ab_true) -> jax.Array:
    """`feature_l1` of the Lab -> sRGB composites (DeOldify's FeatureLoss: L1 on features)."""
    return feature_l1(vgg_params, layer_weights, model_outputs_to_rgb(l, ab_pred),
                      model_outputs_to_rgb(l, lax.stop_gradient(ab_true)))


def _interleave(a, b):
    """Rows a0, b0, a1, b1, ...: each device's shard of the result holds its own rows of
    a and b, so judging real and fake in one call needs no cross-device shuffle."""
    return jnp.stack([a, b], axis=1).reshape((2 * a.shape[0],) + a.shape[1:])


def _deinterleave(x):
    x = x.reshape((x.shape[0] // 2, 2) + x.shape[1:])
    return x[:, 0], x[:, 1]
