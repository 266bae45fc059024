"""Generators and discriminators of the adversarial family: shapes, receptive field, norms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models.discriminators import (ConvDiscriminator, PatchDiscriminator,
                                            build_discriminator, patchgan_min_size,
                                            patchgan_receptive_field)
from colorjax.models.generators import GENERATORS, build_generator


@pytest.mark.slow
@pytest.mark.parametrize("name", ["encoder_decoder", "resnet_unet", "residual_unet"])
def test_generator_shapes_and_range(name):
    model = build_generator(name, (4, 8, 16), "batch")
    x = jax.random.uniform(jax.random.key(0), (2, 16, 24, 1), minval=-1, maxval=1)
    # Non-partitionable threefry compiles in seconds on XLA:CPU instead of ~40 s.
    with jax.threefry_partitionable(False):
        variables = jax.jit(model.init)(jax.random.key(1), x)
    y, _ = jax.jit(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables)
    assert y.shape == (2, 16, 24, 2)
    assert float(jnp.max(jnp.abs(y))) <= 1.0
    assert model.downsample_factor == 4
    assert "batch_stats" in variables


def test_encoder_decoder_has_no_skips():
    """No concatenation anywhere in the encoder-decoder's graph; the UNets have them."""
    x = jnp.zeros((1, 8, 8, 1))
    for name, has_skips in (("encoder_decoder", False), ("unet", True), ("resnet_unet", True),
                            ("residual_unet", True)):
        model = build_generator(name, (4, 8, 16), "none")
        variables = jax.eval_shape(model.init, jax.random.key(0), x)
        jaxpr = str(jax.make_jaxpr(lambda v: model.apply(v, x))(variables))
        assert ("concatenate" in jaxpr) == has_skips, name


def test_unknown_names_are_reported():
    with pytest.raises(ValueError, match="config.model.generator.*allowed"):
        build_generator("vit", (4, 8), "batch")
    with pytest.raises(ValueError, match="config.adversarial.discriminator.*allowed"):
        build_discriminator("stylegan", 8, 3, "batch")
    assert set(GENERATORS) == {"encoder_decoder", "unet", "resnet_unet", "residual_unet"}


def test_patchgan_sees_70x70_patches():
    """pix2pix's 70x70 PatchGAN: the formula, and the gradient support of one logit."""
    assert patchgan_receptive_field(3) == 70
    # The paper's other sizes: the 16x16 PatchGAN and the 286x286 "ImageGAN".
    assert patchgan_receptive_field(1) == 16
    assert patchgan_receptive_field(5) == 286
    model = PatchDiscriminator(features=2, n_layers=3, norm="none")
    size = 128
    l, ab = jnp.zeros((1, size, size, 1)), jnp.zeros((1, size, size, 2))
    with jax.threefry_partitionable(False):
        params = jax.jit(model.init)(jax.random.key(0), l, ab)
    assert jax.eval_shape(model.apply, params, l, ab).shape == (1, 14, 14, 1)
    grad = jax.jit(jax.grad(lambda ab: model.apply(params, l, ab)[0, 7, 7, 0]))(
        jax.random.normal(jax.random.key(1), ab.shape))
    rows = np.nonzero(np.abs(np.asarray(grad[0])).sum(axis=(1, 2)))[0]
    cols = np.nonzero(np.abs(np.asarray(grad[0])).sum(axis=(0, 2)))[0]
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70


def test_patchgan_minimum_size():
    for n_layers in (2, 3):
        s = patchgan_min_size(n_layers)
        model = PatchDiscriminator(features=2, n_layers=n_layers)
        l, ab = jnp.zeros((1, s, s, 1)), jnp.zeros((1, s, s, 2))
        params = jax.eval_shape(model.init, jax.random.key(0), l, ab)
        assert jax.eval_shape(model.apply, params, l, ab).shape == (1, 1, 1, 1)


def test_critic_with_instance_norm_has_no_batch_stats_and_conv_d_one_logit():
    l, ab = jnp.zeros((3, 32, 32, 1)), jnp.zeros((3, 32, 32, 2))
    critic = PatchDiscriminator(features=4, n_layers=3, norm="instance")
    assert set(jax.eval_shape(critic.init, jax.random.key(0), l, ab)) == {"params"}
    d = ConvDiscriminator(features=4, n_layers=4)
    v = jax.eval_shape(d.init, jax.random.key(0), l, ab)
    assert jax.eval_shape(d.apply, v, l, ab).shape == (3, 1)
